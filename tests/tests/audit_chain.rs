//! The audit export and the hash-chain verification (issue 5, items 2 and 3), through the API
//! against real Postgres and real NATS: the export holds the organisation's events exactly, in
//! position order; the chain verifies online (`GET /audit/verify`, the store's check that
//! `gatehouse audit verify --org` runs), offline (`gatehouse_events::verify`, which
//! `gatehouse audit verify --file` runs) and with the independent script
//! scripts/verify_export.py, all with the same head; and when a superuser alters the store
//! behind Gatehouse's back (a changed payload, a deleted event, a swapped pair), all three name
//! the same first bad position. The binary itself is exercised in
//! services/gatehouse/tests/audit_cli.rs.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use axum::http::{Method, StatusCode, header};
use gatehouse_domain::Role;
use gatehouse_events::verify::{Start, verify_export};
use serde_json::{Value, json};
use support::{Answer, Api};
use uuid::Uuid;

const EXPORT: &str = "/api/v1/audit/export";
const VERIFY: &str = "/api/v1/audit/verify";
const ACCESSED: &str = "gatehouse.admin.audit_accessed.v1";

/// A few changes of every kind: admins created, MFA required and removed, the Global MFA
/// Requirement on and off, a widget hidden. Answers the last position written.
async fn scenario(api: &Api) -> i64 {
    let key = &api.org.key;
    let mut ids = Vec::new();
    for role in ["administrator", "read_only", "help_desk"] {
        ids.push(api.create_admin(key, role, Some(false)).await.id());
    }
    let mfa = |id: Uuid| format!("/api/v1/admins/{id}/mfa");
    api.json(
        Method::PUT,
        &mfa(ids[0]),
        key,
        Some(json!({"required": true})),
    )
    .await
    .expect(StatusCode::OK);
    api.json(
        Method::PUT,
        &mfa(ids[0]),
        key,
        Some(json!({"required": false})),
    )
    .await
    .expect(StatusCode::OK);
    for on in [true, false] {
        api.json(
            Method::PUT,
            "/api/v1/settings/security",
            key,
            Some(json!({"global_mfa_required": on})),
        )
        .await
        .expect(StatusCode::OK);
    }
    let hidden = api
        .json(
            Method::PUT,
            "/api/v1/home/widgets/admins-without-mfa-required",
            key,
            Some(json!({"visible": false})),
        )
        .await;
    hidden.expect(StatusCode::NO_CONTENT);
    hidden.position()
}

/// The export's lines as JSON values.
fn lines_of(answer: &Answer) -> Vec<Value> {
    String::from_utf8(answer.bytes.clone())
        .expect("an export is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn position(line: &Value) -> i64 {
    line["event"]["position"].as_i64().expect("a position")
}

async fn export(api: &Api, query: &str) -> Answer {
    let answer = api.get(&format!("{EXPORT}{query}"), &api.org.key).await;
    answer.expect(StatusCode::OK);
    answer
}

/// The offline verifier's report (what `gatehouse audit verify --file --json` prints).
fn offline(export: &[u8]) -> Value {
    let report = verify_export(export, Start::Auto).expect("a well-formed export");
    serde_json::to_value(report).expect("a report serialises")
}

/// The independent script's report.
fn script(export: &[u8]) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/verify_export.py");
    let mut child = Command::new("python3")
        .args([path, "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("a stdin")
        .write_all(export)
        .expect("the export is written to the script");
    let output = child.wait_with_output().expect("the script ends");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "verify_export.py printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let verified = report["verified"] == json!(true);
    assert_eq!(output.status.success(), verified, "exit status: {report}");
    report
}

/// The store's check, as `gatehouse audit verify --org` runs it (no access is recorded).
async fn online(api: &Api) -> Value {
    let report = api
        .env
        .db
        .verify_org(api.org.id.0)
        .await
        .expect("the store's check runs");
    serde_json::to_value(report).expect("a report serialises")
}

#[tokio::test]
async fn an_untouched_history_verifies_online_offline_and_with_the_script_with_the_same_head() {
    let api = Api::start().await;
    scenario(&api).await;
    let other = api.other_org().await;
    api.create_admin(&other.key, "manager", None).await;

    let answer = export(&api, "?format=ndjson").await;
    assert_eq!(answer.content_type(), "application/x-ndjson");
    let disposition = answer
        .headers
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        disposition.starts_with("attachment;") && disposition.contains(".ndjson"),
        "{disposition}"
    );
    let lines = lines_of(&answer);

    // Exactly the organisation's events, in position order, each line `{"chain", "event"}`.
    let client = api.env.db.pool.get().await.expect("a connection");
    let stored: Vec<i64> = client
        .query(
            "SELECT position FROM events WHERE org_id = $1 ORDER BY position",
            &[&api.org.id.0],
        )
        .await
        .expect("the organisation's positions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let exported: Vec<i64> = lines.iter().map(position).collect();
    assert_eq!(exported, stored);
    for line in &lines {
        let keys: Vec<&String> = line.as_object().expect("an object").keys().collect();
        assert_eq!(keys.len(), 2, "{line}");
        assert_eq!(line["event"]["orgid"], api.org.id.0.to_string());
    }
    assert_eq!(lines[0]["event"]["type"], "gatehouse.org.created.v1");
    // The export's own access record is part of the history it exports.
    let last = lines.last().expect("lines");
    assert_eq!(last["event"]["type"], ACCESSED);
    assert_eq!(last["event"]["data"]["action"], "export");
    let head = last["chain"].clone();

    let expected = json!({
        "verified": true, "events": lines.len(), "head": head, "first_bad_position": null
    });
    assert_eq!(offline(&answer.bytes), expected);
    assert_eq!(script(&answer.bytes), expected);
    assert_eq!(online(&api).await, expected);

    // Over HTTP the check covers the history up to its own access record: its head is the
    // chain link a later export shows on that record's line.
    let verified = api.get(VERIFY, &api.org.key).await;
    verified.expect(StatusCode::OK);
    assert_eq!(verified.json["verified"], true);
    assert_eq!(verified.json["first_bad_position"], Value::Null);
    assert_eq!(verified.json["events"], json!(lines.len() + 1));
    let later = lines_of(&export(&api, "").await);
    let access = &later[lines.len()];
    assert_eq!(access["event"]["data"]["action"], "verify");
    assert_eq!(verified.json["head"], access["chain"]);
    assert_eq!(later[..lines.len()], lines[..]);
}

#[tokio::test]
async fn another_organisations_events_never_appear_in_an_export_or_its_check() {
    let api = Api::start().await;
    scenario(&api).await;
    let other = api.other_org().await;
    api.create_admin(&other.key, "manager", None).await;
    let ours = export(&api, "").await;
    let theirs = api.get(EXPORT, &other.key).await;
    theirs.expect(StatusCode::OK);
    for (answer, org) in [(&ours, api.org.id.0), (&theirs, other.id.0)] {
        let lines = lines_of(answer);
        assert!(!lines.is_empty());
        assert!(
            lines.iter().all(|l| l["event"]["orgid"] == org.to_string()),
            "only {org}'s events"
        );
        assert_eq!(offline(&answer.bytes)["verified"], true);
    }
}

#[tokio::test]
async fn start_and_end_times_bound_the_export_and_a_partial_export_verifies_from_its_anchor() {
    let api = Api::start().await;
    scenario(&api).await;
    let full = lines_of(&export(&api, "").await);
    let time = |l: &Value| l["event"]["time"].as_str().expect("a time").to_owned();
    // Bounds taken from the history's own times: the third event's and the second to last's.
    let start = time(&full[2]);
    let end = time(&full[full.len() - 2]);
    let query = format!("?start_time={start}&end_time={end}");
    let answer = export(&api, &query).await;
    let bounded = lines_of(&answer);
    let expected: Vec<i64> = full
        .iter()
        .filter(|l| time(l) >= start && time(l) < end)
        .map(position)
        .collect();
    assert!(!expected.is_empty() && expected.len() < full.len() - 2);
    assert_eq!(bounded.iter().map(position).collect::<Vec<_>>(), expected);

    let report = offline(&answer.bytes);
    assert_eq!(report["verified"], true);
    if bounded[0]["event"]["type"] != "gatehouse.org.created.v1" {
        assert_eq!(
            report["anchor"],
            json!({"position": position(&bounded[0]), "chain": bounded[0]["chain"]})
        );
    }
    assert_eq!(report["head"], bounded.last().expect("lines")["chain"]);
    assert_eq!(script(&answer.bytes), report);

    // Only a start: everything from it, the export's own access record included.
    let answer = export(&api, &format!("?start_time={start}")).await;
    let from = lines_of(&answer);
    assert!(from.iter().all(|l| time(l) >= start));
    assert_eq!(from.last().expect("lines")["event"]["type"], ACCESSED);
}

#[tokio::test]
async fn csv_has_a_header_and_one_row_per_event_in_position_order() {
    let api = Api::start().await;
    let written = scenario(&api).await;
    let answer = api
        .get_at(&format!("{EXPORT}?format=csv"), &api.org.key, written)
        .await;
    answer.expect(StatusCode::OK);
    assert_eq!(answer.content_type(), "text/csv; charset=utf-8");
    let text = String::from_utf8(answer.bytes.clone()).expect("UTF-8");
    let mut rows = text.lines();
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
    let ndjson: Vec<i64> = lines_of(&export(&api, "").await)
        .iter()
        .map(position)
        .collect();
    // The NDJSON export came after: it holds one more access record.
    assert_eq!(positions[..], ndjson[..ndjson.len() - 1]);
}

#[tokio::test]
async fn bad_parameters_are_400_and_a_command_runner_is_refused() {
    let api = Api::start().await;
    for query in [
        "?format=xml",
        "?start_time=yesterday",
        "?end_time=2026-13-01T00:00:00Z",
        "?start_time=2026-02-01T00:00:00Z&end_time=2026-01-01T00:00:00Z",
    ] {
        let answer = api.get(&format!("{EXPORT}{query}"), &api.org.key).await;
        answer.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    let (_, runner, _) = api.admin_with_key(Role::CommandRunner).await;
    for path in [EXPORT, VERIFY] {
        api.get(path, &runner)
            .await
            .expect_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

/// Runs `sql` as the superuser with the immutability triggers off (as an attacker with the
/// database's keys would), then puts them back.
async fn tamper(api: &Api, sql: &str, positions: &[i64]) {
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .batch_execute("ALTER TABLE events DISABLE TRIGGER USER")
        .await
        .expect("the superuser turns the triggers off");
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = positions
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let changed = client.execute(sql, &params).await.expect("the tampering");
    assert!(changed > 0, "{sql} changed nothing");
    client
        .batch_execute("ALTER TABLE events ENABLE TRIGGER USER")
        .await
        .expect("the triggers back on");
}

/// The positions of the organisation's admin-created events (changing their names is a
/// plausible forgery), and every position.
async fn history(api: &Api) -> (Vec<i64>, Vec<i64>) {
    let all = lines_of(&export(api, "").await);
    let created = all
        .iter()
        .filter(|l| l["event"]["type"] == "gatehouse.admin.created.v1")
        .map(position)
        .collect();
    (created, all.iter().map(position).collect())
}

/// Online (the store's check and `GET /audit/verify`), offline on a fresh export and the
/// script on it: all refuse the history and name `bad`.
async fn all_name(api: &Api, bad: i64) {
    let answer = export(api, "").await;
    let offline = offline(&answer.bytes);
    assert_eq!(offline["verified"], false, "{offline}");
    assert_eq!(offline["first_bad_position"], bad, "offline: {offline}");
    assert_eq!(script(&answer.bytes), offline, "the script agrees");
    let online = online(api).await;
    assert_eq!(online["verified"], false, "{online}");
    assert_eq!(online["first_bad_position"], bad, "online: {online}");
    let http = api.get(VERIFY, &api.org.key).await;
    http.expect(StatusCode::OK);
    assert_eq!(http.json["verified"], false);
    assert_eq!(http.json["first_bad_position"], bad, "HTTP: {}", http.json);
}

#[tokio::test]
async fn a_changed_payload_is_named_by_its_position_everywhere() {
    let api = Api::start().await;
    scenario(&api).await;
    let (created, _) = history(&api).await;
    let target = created[1];
    tamper(
        &api,
        "UPDATE events SET envelope = jsonb_set(envelope, '{data,first_name}', '\"Mallory\"')
         WHERE position = $1",
        &[target],
    )
    .await;
    all_name(&api, target).await;
}

#[tokio::test]
async fn a_deleted_event_is_named_by_the_position_after_the_hole_everywhere() {
    let api = Api::start().await;
    scenario(&api).await;
    let (created, all) = history(&api).await;
    let target = created[1];
    let after = all[all.iter().position(|p| *p == target).expect("there") + 1];
    tamper(&api, "DELETE FROM events WHERE position = $1", &[target]).await;
    all_name(&api, after).await;
}

#[tokio::test]
async fn a_deleted_last_event_is_named_by_the_recorded_head_online() {
    let api = Api::start().await;
    scenario(&api).await;
    let (_, all) = history(&api).await;
    let last = *all.last().expect("events");
    tamper(&api, "DELETE FROM events WHERE position = $1", &[last]).await;
    let report = online(&api).await;
    assert_eq!(report["verified"], false);
    assert_eq!(report["first_bad_position"], last);
}

#[tokio::test]
async fn a_swapped_pair_is_named_by_the_first_of_the_two_everywhere() {
    let api = Api::start().await;
    scenario(&api).await;
    let (created, _) = history(&api).await;
    // Two admins other than the owner, whose stream the checks' own access records extend.
    let (first, second) = (created[1], created[3]);
    tamper(
        &api,
        "UPDATE events e SET envelope = o.envelope
         FROM events o
         WHERE (e.position, o.position) IN (($1, $2), ($2, $1))",
        &[first, second],
    )
    .await;
    all_name(&api, first).await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_export_and_the_verification() {
    let api = Api::start().await;
    let answer = api.get("/api/openapi.json", "").await;
    answer.expect(StatusCode::OK);
    let paths = &answer.json["paths"];
    let export = &paths[EXPORT]["get"];
    let params: Vec<&str> = export["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, ["format", "start_time", "end_time"]);
    assert!(export["responses"]["400"].is_object());
    assert!(paths[VERIFY]["get"]["responses"]["200"].is_object());
    let schema = &answer.json["components"]["schemas"]["VerifyAnswer"]["properties"];
    for field in ["verified", "events", "head", "first_bad_position"] {
        assert!(schema[field].is_object(), "{field}");
    }
}

#[tokio::test]
async fn the_history_reads_the_same_across_batch_boundaries() {
    let api = Api::start().await;
    scenario(&api).await;
    let exported = lines_of(&export(&api, "").await);
    for rows in [1, 2, 3, 1000] {
        let mut cursor = api
            .env
            .db
            .history(api.org.id.0, Default::default())
            .await
            .expect("a cursor")
            .with_batch(rows);
        let mut read = Vec::new();
        loop {
            let batch = cursor.next_batch().await.expect("a batch");
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() as i64 <= rows);
            read.extend(
                batch
                    .into_iter()
                    .map(|r| json!({"chain": r.chain.to_hex(), "event": r.envelope})),
            );
        }
        assert_eq!(read, exported, "{rows} rows a batch");
    }
}
