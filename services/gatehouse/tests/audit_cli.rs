//! `gatehouse audit export` and `gatehouse audit verify` as an operator runs them, against real
//! Postgres: the export holds one organisation's events in position order; the chain verifies
//! against the database, offline against the export (a file or stdin) and with the independent
//! scripts/verify_export.py, with one head; after a superuser changes a stored event, all three
//! name its position and exit 1.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use gatehouse_tests::TestEnv;
use serde_json::{Value, json};

fn gatehouse(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.env("DATABASE_URL", &env.db_url)
        .env("GATEHOUSE_NATS_PREFIX", &env.prefix)
        .env("GATEHOUSE_NATS_STREAM", &env.stream)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the gatehouse binary runs")
}

/// Runs with `input` on stdin.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("a stdin")
        .write_all(input)
        .expect("stdin is written");
    child.wait_with_output().expect("the command ends")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

fn org_create(env: &TestEnv, email: &str) -> String {
    let mut gatehouse = gatehouse(env);
    gatehouse.env(
        "GATEHOUSE_SECRET_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    let created = common::org_create(gatehouse, email);
    created["org_id"].as_str().expect("an org id").to_owned()
}

fn export(env: &TestEnv, org: &str, extra: &[&str]) -> Vec<u8> {
    let out = run(gatehouse(env)
        .args(["audit", "export", "--org", org])
        .args(extra));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn lines(export: &[u8]) -> Vec<Value> {
    std::str::from_utf8(export)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn script(export: &[u8], json: bool) -> Output {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/verify_export.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(path);
    if json {
        cmd.arg("--json");
    }
    run_with_stdin(cmd.arg("-"), export)
}

/// A file of the test's own, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report: {} {}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn export_and_verify_agree_online_offline_and_with_the_script_then_all_name_a_change() {
    let env = TestEnv::new().await;
    let org = org_create(&env, "owner@acme.example");
    let other = org_create(&env, "owner@globex.example");

    let exported = export(&env, &org, &[]);
    let lines = lines(&exported);
    assert!(lines.len() >= 3, "{lines:?}");
    assert_eq!(lines[0]["event"]["type"], "gatehouse.org.created.v1");
    assert!(lines.iter().all(|l| l["event"]["orgid"] == org.as_str()));
    let positions: Vec<i64> = lines
        .iter()
        .map(|l| l["event"]["position"].as_i64().expect("a position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(
        lines_of_other(&env, &other)
            .iter()
            .all(|l| !positions.contains(l))
    );
    let head = lines.last().expect("lines")["chain"]
        .as_str()
        .expect("a chain")
        .to_owned();

    // Offline from a file, one line for people.
    let file = TempFile(std::env::temp_dir().join(format!("{}-export.ndjson", env.prefix)));
    std::fs::write(&file.0, &exported).expect("the export is saved");
    let path = file.0.to_str().expect("a UTF-8 path");
    let out = run(gatehouse(&env).args(["audit", "verify", "--file", path]));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("verified: {} events, head {head}", lines.len())
    );
    // The script prints the same line.
    let py = script(&exported, false);
    assert!(py.status.success());
    assert_eq!(stdout(&py), stdout(&out));

    // The same report from stdin, from the database and from the script.
    let expected = json!({
        "verified": true, "events": lines.len(), "head": head, "first_bad_position": null
    });
    let out = run_with_stdin(
        gatehouse(&env).args(["audit", "verify", "--file", "-", "--json"]),
        &exported,
    );
    assert_eq!(json_of(&out), expected);
    let out = run(gatehouse(&env).args(["audit", "verify", "--org", &org, "--json"]));
    assert!(out.status.success());
    assert_eq!(json_of(&out), expected);
    assert_eq!(json_of(&script(&exported, true)), expected);

    // --until keeps the events at or before an instant: here the first event's.
    let first_time = lines[0]["event"]["time"].as_str().expect("a time");
    let until = self::lines(&export(&env, &org, &["--until", first_time]));
    assert!(!until.is_empty() && until.len() < lines.len());
    assert!(
        until
            .iter()
            .all(|l| l["event"]["time"].as_str() <= Some(first_time))
    );
    assert_eq!(until[..], lines[..until.len()]);

    // A superuser changes the owner's name in a stored event.
    let target = lines
        .iter()
        .find(|l| l["event"]["type"] == "gatehouse.admin.created.v1")
        .and_then(|l| l["event"]["position"].as_i64())
        .expect("the owner's creation");
    let client = env.db.pool.get().await.expect("a connection");
    client
        .batch_execute(&format!(
            "ALTER TABLE events DISABLE TRIGGER USER;
             UPDATE events SET envelope = jsonb_set(envelope, '{{data,last_name}}', '\"Mallory\"')
             WHERE position = {target};
             ALTER TABLE events ENABLE TRIGGER USER;"
        ))
        .await
        .expect("the tampering");
    let bad = format!("NOT VERIFIED: first bad position {target} (");
    let online = run(gatehouse(&env).args(["audit", "verify", "--org", &org]));
    assert_eq!(online.status.code(), Some(1));
    assert!(stdout(&online).starts_with(&bad), "{}", stdout(&online));
    let tampered = export(&env, &org, &[]);
    let offline = run_with_stdin(
        gatehouse(&env).args(["audit", "verify", "--file", "-"]),
        &tampered,
    );
    assert_eq!(offline.status.code(), Some(1));
    assert_eq!(stdout(&offline), stdout(&online));
    let py = script(&tampered, false);
    assert_eq!(py.status.code(), Some(1));
    assert_eq!(stdout(&py), stdout(&online));
}

/// The positions of another organisation's export.
fn lines_of_other(env: &TestEnv, org: &str) -> Vec<i64> {
    let lines = lines(&export(env, org, &[]));
    assert!(lines.iter().all(|l| l["event"]["orgid"] == org));
    lines
        .iter()
        .filter_map(|l| l["event"]["position"].as_i64())
        .collect()
}

#[tokio::test]
async fn a_malformed_export_is_refused_naming_the_line_and_unknown_organisations_are_errors() {
    let env = TestEnv::new().await;
    let org = org_create(&env, "owner@initech.example");
    let mut exported = export(&env, &org, &[]);
    exported.extend_from_slice(b"{\"chain\": \"00\", \"event\": {}}\n");
    let count = lines_of_text(&exported);
    let out = run_with_stdin(
        gatehouse(&env).args(["audit", "verify", "--file", "-"]),
        &exported,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("line {count}:")), "{stderr}");
    let py = script(&exported, false);
    assert_eq!(py.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&py.stderr).contains(&format!("line {count}:")));

    let unknown = uuid::Uuid::now_v7().to_string();
    for args in [
        ["audit", "verify", "--org", unknown.as_str()],
        ["audit", "export", "--org", unknown.as_str()],
    ] {
        let out = run(gatehouse(&env).args(args));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("is the id right?"));
    }
    let out = run(gatehouse(&env).args(["audit", "export", "--org", &org, "--until", "soon"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

fn lines_of_text(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

#[tokio::test]
async fn csv_export_has_a_header_and_one_row_per_event_once_the_audit_model_is_built() {
    let env = TestEnv::new().await;
    let org = org_create(&env, "owner@hooli.example");
    let rebuilt = run(gatehouse(&env).args(["projections", "rebuild"]));
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let csv = String::from_utf8(export(&env, &org, &["--format", "csv"])).expect("UTF-8");
    let mut rows = csv.lines();
    let header = rows.next().expect("a header row");
    assert!(header.starts_with("id,event_type,timestamp,"), "{header}");
    // The position is the sixth column; the five before it never hold a comma.
    let positions: Vec<i64> = rows
        .map(|r| {
            r.split(',')
                .nth(5)
                .and_then(|p| p.parse().ok())
                .expect("a position")
        })
        .collect();
    let ndjson: Vec<i64> = lines(&export(&env, &org, &[]))
        .iter()
        .filter_map(|l| l["event"]["position"].as_i64())
        .collect();
    assert_eq!(positions, ndjson);
}
