//! An auditor's access is history too (issue 5, item 6): every read of the audit routes is
//! recorded as `gatehouse.admin.audit_accessed.v1` in the reader's own stream, with what was read
//! and the parameters that shaped it, before the answer is given; a role that may not read the
//! history is refused and nothing is recorded.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use axum::http::StatusCode;
use gatehouse_domain::Role;
use serde_json::{Value, json};
use support::Api;

const ACCESSED: &str = "gatehouse.admin.audit_accessed.v1";

/// The audit-access events of the organisation, oldest first, read back over `GET /events`.
async fn accesses(api: &Api) -> Vec<Value> {
    let head = api.event_count().await;
    let events = api
        .get("/api/v1/events?after=0&limit=1000", &api.org.key)
        .await;
    events.expect(StatusCode::OK);
    let all = events.json.as_array().expect("a batch").clone();
    assert!(all.len() as i64 <= head);
    all.into_iter().filter(|e| e["type"] == ACCESSED).collect()
}

#[tokio::test]
async fn every_audit_read_is_recorded_with_its_reader_action_and_parameters() {
    let api = Api::start().await;
    let (reader, key, _) = api.admin_with_key(Role::ReadOnly).await;
    let reads = [
        (
            "/api/v1/audit/events?sort=desc&limit=5",
            "events",
            json!({"sort": "desc", "limit": "5"}),
        ),
        (
            "/api/v1/audit/export?format=ndjson",
            "export",
            json!({"format": "ndjson"}),
        ),
        ("/api/v1/audit/verify", "verify", json!({})),
        (
            "/api/v1/audit/admins-without-mfa-required?as_of=2026-01-01T00:00:00Z",
            "admins_without_mfa_required",
            json!({"as_of": "2026-01-01T00:00:00Z"}),
        ),
        ("/api/v1/audit/mfa-coverage", "mfa_coverage", json!({})),
    ];
    for (path, _, _) in &reads {
        api.get(path, &key).await.expect(StatusCode::OK);
    }

    let recorded = accesses(&api).await;
    assert_eq!(
        recorded.len(),
        reads.len(),
        "one record a read: {recorded:#?}"
    );
    for (event, (path, action, query)) in recorded.iter().zip(&reads) {
        assert_eq!(event["actorid"], reader.to_string(), "{path}");
        assert_eq!(event["subject"], format!("admins/{reader}"), "{path}");
        assert_eq!(event["authmethod"], "api-key", "{path}");
        assert_eq!(event["data"]["admin_id"], reader.to_string(), "{path}");
        assert_eq!(event["data"]["action"], *action, "{path}");
        assert_eq!(event["data"]["query"], *query, "{path}");
    }
}

#[tokio::test]
async fn a_command_runner_is_refused_every_audit_read_and_nothing_is_recorded() {
    let api = Api::start().await;
    let (_, key, _) = api.admin_with_key(Role::CommandRunner).await;
    let before = api.event_count().await;
    for path in [
        "/api/v1/audit/events",
        "/api/v1/audit/export?format=ndjson",
        "/api/v1/audit/export?format=csv",
        "/api/v1/audit/verify",
        "/api/v1/audit/admins-without-mfa-required?as_of=2026-01-01T00:00:00Z",
        "/api/v1/audit/mfa-coverage",
    ] {
        api.get(path, &key)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(api.event_count().await, before, "nothing was recorded");
    assert!(accesses(&api).await.is_empty());
}
