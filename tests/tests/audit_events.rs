//! `GET /audit/events` (SPEC §5, issue 5 item 1) through the real API, with the relay and the
//! projections running: the AuditRecords an auditor reads after a scenario touching most event
//! types, with the initiator's and resource's emails; every filter; both sorts; `search_after`
//! pages that neither skip nor repeat a record while events keep arriving; organisation
//! isolation; refusals. Reads send `Gatehouse-Min-Position` instead of sleeping.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use gatehouse_domain::Role;
use serde_json::{Value, json};
use support::{Answer, Api};
use uuid::Uuid;

const AUDIT: &str = "/api/v1/audit/events";
const ACCESS: &str = "admin_audit_access";

/// One page: the records (without the auditors' own reads, which every GET adds) and
/// `search_after`.
async fn page(api: &Api, key: &str, query: &str, position: i64) -> (Vec<Value>, Value) {
    let answer = api.get_at(&format!("{AUDIT}?{query}"), key, position).await;
    answer.expect(StatusCode::OK);
    let events = answer.json["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {}", answer.json))
        .iter()
        .filter(|r| r["event_type"] != ACCESS)
        .cloned()
        .collect();
    (events, answer.json["search_after"].clone())
}

/// Every record matching `query` (one page of up to 1000), oldest first.
async fn all(api: &Api, key: &str, query: &str, position: i64) -> Vec<Value> {
    let (records, search_after) = page(api, key, &format!("limit=1000&{query}"), position).await;
    assert_eq!(search_after, Value::Null, "one page holds them all");
    records
}

fn positions(records: &[Value]) -> Vec<i64> {
    records
        .iter()
        .map(|r| r["position"].as_i64().expect("a position"))
        .collect()
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// An admin made by the scenario.
struct Person {
    id: Uuid,
    email: String,
}

async fn create(api: &Api, role: &str, mfa_required: Option<bool>) -> (Person, i64) {
    let created = api.create_admin(&api.org.key, role, mfa_required).await;
    let person = Person {
        id: created.id(),
        email: str_of(&created.json["email"]),
    };
    (person, created.position())
}

/// A login with a wrong password from a given address and browser.
async fn failed_login(api: &Api, email: &str) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "AuditBrowser/1.0 (\"quoted\", comma)")
        .body(Body::from(
            json!({"email": email, "password": "not the password at all"}).to_string(),
        ))
        .expect("request");
    request.extensions_mut().insert(ConnectInfo(
        "203.0.113.9:5555"
            .parse::<SocketAddr>()
            .expect("an address"),
    ));
    api.send(request).await
}

/// What the scenario did, and to whom.
struct Scenario {
    ada: Person,
    bob: Person,
    reader: Person,
    reader_key: String,
    owner_email: String,
    last: i64,
}

/// Creates Ada (MFA not required) and Bob; requires Ada's MFA and removes the requirement;
/// turns the Global MFA Requirement on (which requires Ada again) and off; the owner hides
/// the widget; a wrong password for Ada; removes Bob; then a read-only auditor with an API key.
async fn scenario(api: &Api) -> Scenario {
    let key = api.org.key.clone();
    let (ada, _) = create(api, "administrator", Some(false)).await;
    let (bob, _) = create(api, "manager", None).await;
    let path = format!("/api/v1/admins/{}/mfa", ada.id);
    for required in [true, false] {
        api.json(
            Method::PUT,
            &path,
            &key,
            Some(json!({"required": required})),
        )
        .await
        .expect(StatusCode::OK);
    }
    for on in [true, false] {
        api.json(
            Method::PUT,
            "/api/v1/settings/security",
            &key,
            Some(json!({"global_mfa_required": on})),
        )
        .await
        .expect(StatusCode::OK);
    }
    api.json(
        Method::PUT,
        "/api/v1/home/widgets/admins-without-mfa-required",
        &key,
        Some(json!({"visible": false})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    failed_login(api, &ada.email)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    api.json(
        Method::DELETE,
        &format!("/api/v1/admins/{}", bob.id),
        &key,
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let (reader_id, reader_key, last) = api.admin_with_key(Role::ReadOnly).await;
    let me = api.get_at("/api/v1/me", &reader_key, last).await;
    me.expect(StatusCode::OK);
    let owner = api
        .get_at(&format!("/api/v1/admins/{}", api.org.owner.0), &key, last)
        .await;
    Scenario {
        ada,
        bob,
        reader: Person {
            id: reader_id,
            email: str_of(&me.json["email"]),
        },
        reader_key,
        owner_email: str_of(&owner.json["email"]),
        last,
    }
}

/// A record's gist: its type, who did it (email, or `system`), and to what (email, or
/// `organization`).
fn gist(record: &Value) -> (String, String, String) {
    let who = match record["initiated_by"]["type"].as_str() {
        Some("system") => "system".to_owned(),
        _ => str_of(&record["initiated_by"]["email"]),
    };
    let what = match record["resource"]["type"].as_str() {
        Some("organization") => "organization".to_owned(),
        _ => str_of(&record["resource"]["email"]),
    };
    (str_of(&record["event_type"]), who, what)
}

#[tokio::test]
async fn the_history_shows_who_did_what_to_whom_with_their_emails() {
    let api = Api::start().await;
    let s = scenario(&api).await;
    let records = all(&api, &s.reader_key, "", s.last).await;

    let owner = s.owner_email.as_str();
    let (ada, bob, reader) = (
        s.ada.email.as_str(),
        s.bob.email.as_str(),
        s.reader.email.as_str(),
    );
    let expected: Vec<(&str, &str, &str)> = vec![
        ("organization_update", "system", "organization"),
        ("admin_create", "system", owner),
        ("admin_api_key_create", owner, owner),
        ("admin_create", owner, ada),
        ("admin_create", owner, bob),
        ("admin_update", owner, ada),
        ("admin_update", owner, ada),
        ("organization_update", owner, "organization"),
        ("admin_update", owner, ada),
        ("organization_update", owner, "organization"),
        ("admin_home_widget_update", owner, owner),
        ("admin_login_attempt", ada, ada),
        ("admin_delete", owner, bob),
        ("admin_create", owner, reader),
        ("admin_api_key_create", reader, reader),
    ];
    let got: Vec<(String, String, String)> = records.iter().map(gist).collect();
    let got: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got, expected);

    let ps = positions(&records);
    assert!(ps.windows(2).all(|w| w[0] < w[1]), "oldest first: {ps:?}");
    let org = api.org.id.0.to_string();
    for r in &records {
        assert_eq!(r["service"], "directory");
        assert_eq!(r["organization"], org);
        assert!(
            r["id"]
                .as_str()
                .is_some_and(|id| id.parse::<Uuid>().is_ok())
        );
        assert!(
            r["timestamp"]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{r}"
        );
    }

    let enable =
        |from: bool, to: bool| json!([{"field": "enableMultiFactor", "from": from, "to": to}]);
    assert_eq!(records[5]["changes"], enable(false, true));
    assert_eq!(records[6]["changes"], enable(true, false));
    assert_eq!(
        records[8]["changes"],
        enable(false, true),
        "required by the global switch"
    );
    assert_eq!(
        records[7]["changes"],
        json!([{"field": "globalMfaRequired", "from": false, "to": true}])
    );
    assert_eq!(
        records[9]["changes"],
        json!([{"field": "globalMfaRequired", "from": true, "to": false}])
    );
    assert_eq!(records[7]["resource"]["id"], org);
    assert_eq!(records[5]["auth_method"], "api-key");
    assert_eq!(records[0]["initiated_by"], json!({"type": "system"}));
    assert_eq!(
        records[10]["changes"],
        json!([{"field": "admins_without_mfa_required.visible", "from": true, "to": false}])
    );

    let login = &records[11];
    assert_eq!(login["success"], false);
    assert_eq!(login["mfa"], false);
    assert_eq!(login["mfa_meta"], json!({"type": "none"}));
    assert_eq!(login["auth_method"], "session");
    assert_eq!(login["client_ip"], "203.0.113.9");
    assert_eq!(login["useragent"], "AuditBrowser/1.0 (\"quoted\", comma)");
    assert_eq!(login["reason"], "invalid_password");
    assert_eq!(login["resource"]["id"], s.ada.id.to_string());

    // Bob is gone, but the history still says who he was.
    assert_eq!(records[12]["resource"]["id"], s.bob.id.to_string());
    assert!(records[12].get("changes").is_none(), "{}", records[12]);

    let key_created = &records[14];
    let changes = key_created["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["field"], "apiKey");
    assert!(
        changes[0]["to"]
            .as_str()
            .is_some_and(|k| k.parse::<Uuid>().is_ok())
    );
    assert!(
        !records.iter().any(|r| r.to_string().contains("ghk_")),
        "no API key secret anywhere"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.to_string().contains(support::PASSWORD))
    );
}

#[tokio::test]
async fn every_read_is_itself_a_record_of_who_read_what() {
    let api = Api::start().await;
    let (reader, key, position) = api.admin_with_key(Role::Manager).await;
    let first = api
        .get_at(&format!("{AUDIT}?sort=desc&limit=3"), &key, position)
        .await;
    first.expect(StatusCode::OK);
    // The first read's own record appears once the read model has it.
    let head = api.event_count().await;
    let answer = api
        .get_at(&format!("{AUDIT}?event_type={ACCESS}"), &key, head)
        .await;
    answer.expect(StatusCode::OK);
    let reads = answer.json["events"].as_array().expect("events");
    assert!(!reads.is_empty(), "{}", answer.json);
    let read = &reads[0];
    assert_eq!(read["initiated_by"]["id"], reader.to_string());
    assert_eq!(read["resource"]["type"], "organization");
    assert_eq!(read["auth_method"], "api-key");
    assert_eq!(
        read["audit"],
        json!({"action": "events", "query": {"sort": "desc", "limit": "3"}})
    );
}

#[tokio::test]
async fn each_filter_narrows_the_history_to_what_it_names() {
    let api = Api::start().await;
    let s = scenario(&api).await;
    let key = s.reader_key.as_str();
    let everything = all(&api, key, "", s.last).await;
    let check = |query: String, keep: &dyn Fn(&Value) -> bool| {
        let expected: Vec<i64> = positions(
            &everything
                .iter()
                .filter(|r| keep(r))
                .cloned()
                .collect::<Vec<_>>(),
        );
        (query, expected)
    };
    let ada = s.ada.id.to_string();
    let bob = s.bob.id.to_string();
    let org = api.org.id.0.to_string();
    let owner = api.org.owner.0.to_string();
    let middle = str_of(&everything[everything.len() / 2]["timestamp"]);
    let cases = vec![
        check("event_type=admin_update".into(), &|r| {
            r["event_type"] == "admin_update"
        }),
        check("event_type=admin_login_attempt".into(), &|r| {
            r["event_type"] == "admin_login_attempt"
        }),
        check(format!("initiated_by={ada}"), &|r| {
            r["initiated_by"]["id"] == ada
        }),
        check(
            format!("initiated_by={}", s.owner_email.to_uppercase()),
            &|r| r["initiated_by"]["id"] == owner,
        ),
        check("initiated_by=system".into(), &|r| {
            r["initiated_by"]["type"] == "system"
        }),
        check(format!("resource={bob}"), &|r| r["resource"]["id"] == bob),
        check(format!("resource={}", s.bob.email), &|r| {
            r["resource"]["id"] == bob
        }),
        check(format!("resource={org}"), &|r| r["resource"]["id"] == org),
        check(
            format!("initiated_by={owner}&resource={ada}&event_type=admin_update"),
            &|r| {
                r["initiated_by"]["id"] == owner
                    && r["resource"]["id"] == ada
                    && r["event_type"] == "admin_update"
            },
        ),
        check(format!("start_time={middle}"), &|r| {
            str_of(&r["timestamp"]) >= middle
        }),
        check(format!("end_time={middle}"), &|r| {
            str_of(&r["timestamp"]) < middle
        }),
    ];
    for (query, expected) in cases {
        assert!(!expected.is_empty(), "{query} names something");
        let got = positions(&all(&api, key, &query.replace('+', "%2B"), s.last).await);
        assert_eq!(got, expected, "{query}");
    }
    let none = all(&api, key, "resource=nobody@example.com", s.last).await;
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn pages_in_both_orders_show_every_record_once_while_events_keep_arriving() {
    let api = Api::start().await;
    let (_, key, mut last) = api.admin_with_key(Role::HelpDesk).await;
    for _ in 0..20 {
        last = create(&api, "read_only", Some(false)).await.1;
    }
    let query = "event_type=admin_create&limit=7";

    // Oldest first: what arrives between pages shows up on a later page.
    let mut seen = Vec::new();
    let mut search_after: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &search_after {
            Some(after) => format!("{query}&search_after={after}"),
            None => query.to_owned(),
        };
        let (records, next) = page(&api, &key, &q, last).await;
        pages += 1;
        assert!(records.len() <= 7);
        seen.extend(records);
        match next {
            Value::Null => break,
            next => search_after = Some(str_of(&next)),
        }
        assert_eq!(
            search_after.as_deref().map(|s| s.parse::<i64>().ok()),
            Some(seen.last().and_then(|r| r["position"].as_i64())),
            "search_after is the last record's position"
        );
        if pages <= 3 {
            last = create(&api, "read_only", Some(false)).await.1;
        }
        assert!(pages < 20, "paging ends");
    }
    let every = all(&api, &key, "event_type=admin_create", last).await;
    assert_eq!(
        every.len(),
        1 + 1 + 20 + 3,
        "the owner, the reader, 20, and 3 more"
    );
    assert_eq!(positions(&seen), positions(&every), "each once, in order");

    // Newest first: the history as of the first page, whatever arrives meanwhile.
    let mut seen = Vec::new();
    let mut search_after: Option<String> = None;
    loop {
        let q = match &search_after {
            Some(after) => format!("{query}&sort=desc&search_after={after}"),
            None => format!("{query}&sort=desc"),
        };
        let (records, next) = page(&api, &key, &q, last).await;
        seen.extend(records);
        last = create(&api, "read_only", Some(false)).await.1;
        match next {
            Value::Null => break,
            next => search_after = Some(str_of(&next)),
        }
    }
    let mut expected = positions(&every);
    expected.reverse();
    assert_eq!(positions(&seen), expected, "each once, newest first");
    let unique: HashSet<i64> = positions(&seen).into_iter().collect();
    assert_eq!(unique.len(), seen.len());
}

#[tokio::test]
async fn another_organisations_history_never_shows() {
    let api = Api::start().await;
    let other = api.other_org().await;
    let theirs = api
        .create_admin(&other.key, "administrator", Some(false))
        .await;
    let their_admin = theirs.id();
    let their_email = str_of(&theirs.json["email"]);
    let (_, key, position) = api.admin_with_key(Role::ReadOnly).await;
    let position = position.max(theirs.position());

    let ours = all(&api, &key, "", position).await;
    assert!(!ours.is_empty());
    let org = api.org.id.0.to_string();
    assert!(ours.iter().all(|r| r["organization"] == org), "{ours:?}");
    for query in [
        format!("resource={their_admin}"),
        format!("resource={their_email}"),
        format!("resource={}", other.id.0),
        format!("initiated_by={}", other.owner.0),
    ] {
        assert!(
            all(&api, &key, &query, position).await.is_empty(),
            "{query}"
        );
    }

    let theirs = all(&api, &other.key, "", position).await;
    assert!(
        theirs
            .iter()
            .all(|r| r["organization"] == other.id.0.to_string())
    );
    assert!(
        theirs
            .iter()
            .any(|r| r["resource"]["id"] == their_admin.to_string())
    );
}

#[tokio::test]
async fn a_command_runner_is_refused_and_bad_parameters_are_named() {
    let api = Api::start().await;
    let (_, runner, _) = api.admin_with_key(Role::CommandRunner).await;
    api.get(AUDIT, &runner)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    api.get(&format!("{AUDIT}?limit=0"), &runner)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    api.get(AUDIT, "ghk_not_a_key")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");

    let key = api.org.key.clone();
    for (query, named) in [
        ("event_type=admin_teleport", "event_type"),
        ("sort=sideways", "sort"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("search_after=last", "search_after"),
        ("start_time=yesterday", "start_time"),
        ("end_time=2026-02-30T00:00:00Z", "end_time"),
        (
            "start_time=2026-02-01T00:00:00Z&end_time=2026-01-01T00:00:00Z",
            "start_time",
        ),
        ("initiated_by=ada", "initiated_by"),
        ("resource=system", "resource"),
    ] {
        let answer = api.get(&format!("{AUDIT}?{query}"), &key).await;
        answer.expect_error(StatusCode::BAD_REQUEST, "invalid_query");
        let message = str_of(&answer.json["error"]["message"]);
        assert!(message.contains(named), "{query}: {message}");
    }
    let ok = api
        .get(&format!("{AUDIT}?limit=1000&sort=desc"), &key)
        .await;
    ok.expect(StatusCode::OK);
    assert!(ok.json["events"].is_array());
}

#[tokio::test]
async fn the_csv_export_has_a_header_and_one_row_a_record_in_position_order() {
    use futures::TryStreamExt;

    let api = Api::start().await;
    let s = scenario(&api).await;
    let records = all(&api, &s.reader_key, "", s.last).await;
    let org = api.org.id.0;
    let chunks: Vec<String> =
        gatehouse_projections::audit_query::csv_chunks(api.env.db.clone(), org, None, None, s.last)
            .try_collect()
            .await
            .expect("the export");
    let csv = chunks.concat();
    let header = gatehouse_events::audit::csv_header();
    assert!(csv.starts_with(&header), "{csv}");
    // The login's user agent holds a quote and a comma: its row is quoted, not split.
    let rows: Vec<&str> = csv[header.len()..].split_terminator("\r\n").collect();
    assert_eq!(rows.len(), records.len(), "{csv}");
    for (row, record) in rows.iter().zip(&records) {
        let position = record["position"].to_string();
        assert!(row.starts_with(&str_of(&record["id"])), "{row}");
        assert!(row.contains(&format!(",{position},")), "{row}");
        assert!(row.contains(&str_of(&record["event_type"])), "{row}");
    }
    assert!(csv.contains("\"AuditBrowser/1.0 (\"\"quoted\"\", comma)\""));

    // A time window: the rows whose time is in it, and no header-only surprise.
    let middle = str_of(&records[records.len() / 2]["timestamp"]);
    let start = chrono::DateTime::parse_from_rfc3339(&middle)
        .expect("a time")
        .with_timezone(&chrono::Utc);
    let window: Vec<String> = gatehouse_projections::audit_query::csv_chunks(
        api.env.db.clone(),
        org,
        Some(start),
        None,
        s.last,
    )
    .try_collect()
    .await
    .expect("the export");
    let expected = records
        .iter()
        .filter(|r| str_of(&r["timestamp"]) >= middle)
        .count();
    assert_eq!(
        window.concat()[header.len()..]
            .split_terminator("\r\n")
            .count(),
        expected
    );
}
