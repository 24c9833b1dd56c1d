//! What the binary's test suites share (each suite is its own crate and uses part of it).
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use gatehouse_tests::eventually;
use serde_json::Value;

/// Runs `gatehouse org create --name Acme --owner-email <owner_email> --print-api-key --json`
/// on `gatehouse` (the binary with the suite's environment) and answers the object it printed
/// (`org_id`, `owner_id`, `api_key`, …); fails the test with its errors otherwise.
pub fn org_create(mut gatehouse: Command, owner_email: &str) -> Value {
    let out = gatehouse
        .args(["org", "create", "--name", "Acme", "--owner-email"])
        .arg(owner_email)
        .args(["--print-api-key", "--json"])
        .output()
        .expect("gatehouse org create runs");
    assert!(
        out.status.success(),
        "org create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("org create --json prints one JSON object")
}

/// Waits until `GET url` answers 2xx (a starting `serve`'s `/readyz` or `/healthz`).
pub async fn await_success(url: &str, limit: Duration) {
    eventually(limit, &format!("{url} to answer 2xx"), || async {
        match reqwest::get(url).await {
            Ok(r) if r.status().is_success() => Some(()),
            _ => None,
        }
    })
    .await;
}
