//! What Gatehouse publishes, read by a consumer that shares no code with it (issue 6):
//! tests/py/consumer.py, in Python with nats-py, validates every message against the committed
//! JSON Schemas (`events/schema/`) with the `jsonschema` package, checks the headers, counts each
//! id once, checks the order per organisation and recomputes each organisation's hash chain from
//! the `Gatehouse-Chain` headers. A scenario through the real portal, command service and relay
//! produces every event type, and the heads it recomputes must be the ones the store recorded.
//! Forged messages on the test's stream show that each of its checks can fail.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use gatehouse_auth::link_token;
use gatehouse_events::chain::canonical_json;
use gatehouse_events::types::{LoginFailed, OrgCreated};
use gatehouse_events::{Chain, Event, subject};
use gatehouse_relay::{CHAIN_HEADER, POSITION_HEADER, RelayConfig};
use gatehouse_store::Db;
use gatehouse_tests::browser::totp_code;
use gatehouse_tests::{TestEnv, admin_created, eventually, system_append};
use serde_json::{Value, json};
use support::{Answer, Api, PASSWORD};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const CONSUMER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/consumer.py");
const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/schema");
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the consumer may take to read what it expects (it stops as soon as it has it).
const CONSUMER_TIMEOUT_SECS: &str = "60";

/// Every event type Gatehouse writes (SPEC §4 and §5).
const ALL_TYPES: [&str; 17] = [
    "gatehouse.org.created.v1",
    "gatehouse.org.global_mfa_enabled.v1",
    "gatehouse.org.global_mfa_disabled.v1",
    "gatehouse.admin.created.v1",
    "gatehouse.admin.removed.v1",
    "gatehouse.admin.mfa_required.v1",
    "gatehouse.admin.mfa_requirement_removed.v1",
    "gatehouse.admin.mfa_reset_requested.v1",
    "gatehouse.admin.mfa_enrollment_started.v1",
    "gatehouse.admin.mfa_enrollment_completed.v1",
    "gatehouse.admin.mfa_locked.v1",
    "gatehouse.admin.login_succeeded.v1",
    "gatehouse.admin.login_failed.v1",
    "gatehouse.admin.home_widget_changed.v1",
    "gatehouse.admin.api_key_created.v1",
    "gatehouse.admin.api_key_revoked.v1",
    "gatehouse.admin.audit_accessed.v1",
];

// ---------------------------------------------------------------------------------------------
// The Python consumer and the stream
// ---------------------------------------------------------------------------------------------

/// What tests/py/consumer.py answered.
struct Consumed {
    exit: Option<i32>,
    report: Value,
}

impl Consumed {
    fn list(&self, key: &str) -> &Vec<Value> {
        self.report[key]
            .as_array()
            .unwrap_or_else(|| panic!("no list {key} in {:#}", self.report))
    }
}

/// Runs the Python consumer over every subject of the test's stream, expecting `expect`
/// messages.
async fn consume(env: &TestEnv, expect: u64) -> Consumed {
    let output = tokio::process::Command::new(gatehouse_tests::smtp::python())
        .arg(CONSUMER)
        .args(["--nats", &gatehouse_tests::nats_url()])
        .args(["--stream", &env.stream])
        .args(["--subject", &subject::all(&env.prefix)])
        .args(["--expect", &expect.to_string()])
        .args(["--schemas", SCHEMAS])
        .args(["--timeout", CONSUMER_TIMEOUT_SECS])
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "consumer.py printed no report ({e}), exit {:?}: {stderr}",
            output.status
        )
    });
    Consumed {
        exit: output.status.code(),
        report,
    }
}

async fn messages_in_stream(js: &jetstream::Context, name: &str) -> u64 {
    let stream = js.get_stream(name).await.expect("the stream exists");
    stream.get_info().await.expect("stream info").state.messages
}

/// Waits until the stream holds exactly `n` messages.
async fn await_messages_in_stream(js: &jetstream::Context, name: &str, n: u64) {
    eventually(PATIENCE, &format!("{n} messages in {name}"), || async {
        let count = messages_in_stream(js, name).await;
        assert!(count <= n, "{name} holds {count} messages, more than {n}");
        (count == n).then_some(())
    })
    .await;
}

async fn event_count(db: &Db) -> u64 {
    let client = db.pool.get().await.expect("a connection");
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("the count")
        .get(0);
    u64::try_from(count).expect("a count is not negative")
}

/// How many events of each type the store holds.
async fn stored_types(db: &Db) -> BTreeMap<String, u64> {
    let client = db.pool.get().await.expect("a connection");
    client
        .query(
            "SELECT event_type, count(*) FROM events GROUP BY event_type",
            &[],
        )
        .await
        .expect("the types")
        .iter()
        .map(|row| {
            let count: i64 = row.get(1);
            (row.get(0), u64::try_from(count).expect("a count"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scenario's steps
// ---------------------------------------------------------------------------------------------

const ADMINS: &str = "/api/v1/admins";
const BULK: &str = "/api/v1/admins/require-mfa";
const SECURITY: &str = "/api/v1/settings/security";
const HOME_TOGGLE: &str = "/api/v1/home/widgets/admins-without-mfa-required";
const KEYS: &str = "/api/v1/me/api-keys";
const VERIFY: &str = "/api/v1/auth/mfa";

/// A POST with a JSON body and no credential (the Set Up MFA link).
async fn post(api: &Api, path: &str, body: Value) -> Answer {
    api.send(
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "python-consumer-tests/1.0")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

/// Creates an admin through the API: their id and email.
async fn admin(api: &Api, key: &str, role: &str, mfa_required: Option<bool>) -> (Uuid, String) {
    let created = api.create_admin(key, role, mfa_required).await;
    let email = created.json["email"].as_str().expect("email").to_owned();
    (created.id(), email)
}

/// Enrolls the admin through a Set Up MFA link issued as the mailer issues it, with a code from
/// the independent TOTP (tests/py/totp.py); answers the otpauth URI.
async fn enroll(api: &Api, admin: Uuid, email: &str) -> String {
    let token = link_token::generate().expect("a token");
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .execute(
            "INSERT INTO mfa_setup_links (token_hash, event_id, admin_id, org_id, expires_at)
             VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
            &[&token.hash, &Uuid::now_v7(), &admin, &api.org.id.0],
        )
        .await
        .expect("a link");
    let offer = post(
        api,
        "/api/v1/mfa/setup",
        json!({"token": token.plaintext, "email": email, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
    let uri = offer.json["otpauth_uri"]
        .as_str()
        .expect("a URI")
        .to_owned();
    post(
        api,
        "/api/v1/mfa/setup/complete",
        json!({"token": token.plaintext, "code": totp_code(&uri, Utc::now().timestamp())}),
    )
    .await
    .expect(StatusCode::OK);
    uri
}

/// A password login that stops at Verify Your Identity; answers the pending session.
async fn pending_login(api: &Api, email: &str) -> String {
    let (answer, session) = api.login(email, PASSWORD).await;
    answer.expect(StatusCode::OK);
    assert_eq!(answer.json["status"], "mfa_required", "{}", answer.json);
    session.expect("a pending session")
}

/// A six-digit code that no step near now accepts.
fn wrong_code(uri: &str) -> String {
    let now = Utc::now().timestamp();
    let near: BTreeSet<String> = (-2..=2).map(|s| totp_code(uri, now + s * 30)).collect();
    (0..)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .expect("one of a million codes is wrong")
}

/// Drives the real portal through something of every kind a user can do, in two
/// organisations. Every step answers only once its events are committed.
async fn scenario(api: &Api) -> support::Org {
    let owner = api.org.key.clone();
    let globex = api.other_org().await;

    // Logins with a password only: one that succeeds and one that fails.
    let (x, x_email) = admin(api, &owner, "administrator", Some(false)).await;
    let (answer, session) = api.login(&x_email, PASSWORD).await;
    answer.expect(StatusCode::OK);
    let session = session.expect("a session");
    api.login(&x_email, "not the password at all")
        .await
        .0
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // The admin's own things, with the session: the home widget and an API key.
    api.json(
        Method::PUT,
        HOME_TOGGLE,
        &session,
        Some(json!({"visible": false})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let created = api
        .json(
            Method::POST,
            KEYS,
            &session,
            Some(json!({"name": "python"})),
        )
        .await;
    created.expect(StatusCode::CREATED);
    api.json(
        Method::DELETE,
        &format!("{KEYS}/{}", created.id()),
        &session,
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    // MFA requirements: one admin at a time, in bulk, and for the whole organisation.
    let mfa = format!("{ADMINS}/{x}/mfa");
    for required in [true, false] {
        api.json(
            Method::PUT,
            &mfa,
            &owner,
            Some(json!({"required": required})),
        )
        .await
        .expect(StatusCode::OK);
    }
    let (y, _) = admin(api, &owner, "manager", Some(false)).await;
    let (z, _) = admin(api, &owner, "help_desk", Some(false)).await;
    let bulk = api
        .json(
            Method::POST,
            BULK,
            &owner,
            Some(json!({"admin_ids": [y, z]})),
        )
        .await;
    bulk.expect(StatusCode::OK);
    for on in [true, false] {
        api.json(
            Method::PUT,
            SECURITY,
            &owner,
            Some(json!({"global_mfa_required": on})),
        )
        .await
        .expect(StatusCode::OK);
    }

    // Enrollment, a login with a code, a lockout, and a reset by an administrator.
    let (e, e_email) = admin(api, &owner, "administrator", None).await;
    let uri = enroll(api, e, &e_email).await;
    let pending = pending_login(api, &e_email).await;
    let verified = api
        .json(
            Method::POST,
            VERIFY,
            &pending,
            Some(json!({"code": totp_code(&uri, Utc::now().timestamp() + 30)})),
        )
        .await;
    verified.expect(StatusCode::OK);
    let pending = pending_login(api, &e_email).await;
    let wrong = wrong_code(&uri);
    for attempt in 1..=5 {
        let answer = api
            .json(Method::POST, VERIFY, &pending, Some(json!({"code": wrong})))
            .await;
        if attempt < 5 {
            answer.expect_error(StatusCode::UNAUTHORIZED, "invalid_code");
        } else {
            answer.expect_error(StatusCode::LOCKED, "mfa_locked");
        }
    }
    api.json(
        Method::POST,
        &format!("{ADMINS}/{e}/mfa/reset"),
        &owner,
        None,
    )
    .await
    .expect(StatusCode::ACCEPTED);

    // A removal, and a read of the audit history (recorded as an access).
    api.json(Method::DELETE, &format!("{ADMINS}/{y}"), &owner, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    api.get("/api/v1/audit/verify", &owner)
        .await
        .expect(StatusCode::OK);

    // The other organisation gets a history of its own.
    let (g, _) = admin(api, &globex.key, "read_only", Some(false)).await;
    api.json(
        Method::PUT,
        &format!("{ADMINS}/{g}/mfa"),
        &globex.key,
        Some(json!({"required": true})),
    )
    .await
    .expect(StatusCode::OK);
    globex
}

#[tokio::test]
async fn a_python_consumer_receives_every_event_once_in_order_valid_against_the_schemas_with_the_stored_chain_heads()
 {
    let api = Api::start().await;
    let globex = scenario(&api).await;

    let stored = event_count(&api.env.db).await;
    assert_eq!(
        i64::try_from(stored).expect("a count"),
        api.env.db.head().await.expect("the head"),
        "positions are gapless"
    );
    await_messages_in_stream(&api.env.jetstream, &api.env.stream, stored).await;
    let consumed = consume(&api.env, stored).await;
    let report = &consumed.report;

    assert_eq!(report["messages"], stored, "{report:#}");
    assert_eq!(report["distinct_ids"], stored, "{report:#}");
    for key in ["invalid", "duplicates", "out_of_order", "chain_mismatches"] {
        assert!(consumed.list(key).is_empty(), "{key}: {report:#}");
    }
    assert_eq!(report["anchors"], json!({}), "{report:#}");
    assert_eq!(report["pending_after"], 0, "{report:#}");
    assert_eq!(consumed.exit, Some(0), "{report:#}");

    let mut heads = BTreeMap::new();
    for org in [api.org.id.0, globex.id.0] {
        let (_, head) = api.env.db.org_head(org).await.expect("the org's head");
        heads.insert(org.to_string(), Value::from(head.to_hex()));
    }
    assert_eq!(
        report["heads"],
        serde_json::to_value(&heads).expect("a map"),
        "the chain heads recomputed in Python are the ones the store recorded"
    );

    let types: BTreeMap<String, u64> =
        serde_json::from_value(report["types"].clone()).expect("a map of counts");
    assert_eq!(
        types,
        stored_types(&api.env.db).await,
        "each event arrived as what it is"
    );
    let missing: Vec<_> = ALL_TYPES
        .iter()
        .filter(|t| !types.contains_key(**t))
        .collect();
    assert!(
        missing.is_empty(),
        "the scenario did not produce {missing:?}"
    );
    assert_eq!(
        types.len(),
        ALL_TYPES.len(),
        "no type outside SPEC §4: {types:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Forged messages: each check of the consumer can fail
// ---------------------------------------------------------------------------------------------

/// An organisation with two admins and a failed login, written through the store and
/// published by the real relay, which is stopped once they are on the stream (nothing it does
/// can then interleave with the forgeries). Answers the org and its four stored envelopes with
/// the chain link after each.
async fn published_history(env: &TestEnv, cfg: &RelayConfig) -> (Uuid, Vec<(Value, Chain)>) {
    gatehouse_relay::ensure_stream(&env.jetstream, cfg)
        .await
        .expect("the stream");
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(gatehouse_relay::run(
        env.db.clone(),
        env.jetstream.clone(),
        cfg.clone(),
        shutdown.clone(),
    ));
    let org = Uuid::now_v7();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let created = Event::OrgCreated(OrgCreated {
        org_id: org,
        name: "Initech".into(),
    });
    env.db
        .append(system_append(org, vec![created, admin_created(a, false)]))
        .await
        .expect("the org");
    env.db
        .append(system_append(org, vec![admin_created(b, false)]))
        .await
        .expect("another admin");
    let failed = Event::LoginFailed(LoginFailed {
        admin_id: a,
        reason: "invalid_password".into(),
        client_ip: "192.0.2.1".into(),
        user_agent: "curl/8".into(),
    });
    env.db
        .append(system_append(org, vec![failed]))
        .await
        .expect("a failed login");
    await_messages_in_stream(&env.jetstream, &env.stream, 4).await;
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, relay)
        .await
        .expect("the relay stops when asked")
        .expect("the relay does not panic")
        .expect("the relay stops without error");
    let stored = env
        .db
        .read_after(0, 100)
        .await
        .expect("the events")
        .iter()
        .map(|r| {
            let envelope = serde_json::to_value(&r.envelope).expect("an envelope");
            (envelope, r.chain)
        })
        .collect();
    (org, stored)
}

/// Publishes `body` as the relay would, with the given headers' values; answers whether
/// JetStream stored it (false: dropped as a duplicate of its `Nats-Msg-Id`).
async fn publish(env: &TestEnv, body: &Value, msg_id: &str, position: &str, chain: &Chain) -> bool {
    let org: Uuid = body["orgid"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("an orgid");
    let event_type = body["type"].as_str().expect("a type");
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert(POSITION_HEADER, position);
    headers.insert(CHAIN_HEADER, chain.to_hex().as_str());
    let ack = env
        .jetstream
        .publish_with_headers(
            subject::for_event(&env.prefix, org, event_type),
            headers,
            body.to_string().into(),
        )
        .await
        .expect("published")
        .await
        .expect("acknowledged");
    !ack.duplicate
}

/// A new event made from `template`: a fresh id and the given position, changed by `change`.
fn forged(template: &Value, position: Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut body = template.clone();
    body["id"] = json!(Uuid::now_v7());
    body["position"] = position;
    change(&mut body);
    body
}

/// Publishes `body` with headers that agree with it and the right chain link after `previous`;
/// answers that link.
async fn publish_linked(env: &TestEnv, body: &Value, previous: Chain) -> Chain {
    let link = previous.next_canonical(&canonical_json(body).expect("no float"));
    let position = match &body["position"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let id = body["id"].as_str().expect("an id");
    assert!(publish(env, body, id, &position, &link).await);
    link
}

#[tokio::test]
async fn messages_that_break_their_schema_are_reported_invalid_by_the_python_consumer() {
    let env = TestEnv::new().await;
    let cfg = RelayConfig::new(&env.stream, &env.prefix);
    let (org, stored) = published_history(&env, &cfg).await;
    let (admin_created, login_failed, head) = (&stored[1].0, &stored[3].0, stored[3].1);

    // Four forgeries in the organisation's chain, each linked correctly, so that only the
    // schema can object: a field the schema does not allow (a secret, of all things), a value
    // outside its enumeration, a position of the wrong type, and a type without a schema.
    let secret = forged(login_failed, json!(5), |b| {
        b["data"]["password"] = json!("hunter2");
    });
    let role = forged(admin_created, json!(6), |b| {
        b["data"]["role"] = json!("superuser");
    });
    let position = forged(admin_created, json!("7"), |_| {});
    let unknown = forged(login_failed, json!(8), |b| {
        b["type"] = json!("gatehouse.admin.teleported.v1");
    });
    let mut link = head;
    for body in [&secret, &role, &position, &unknown] {
        link = publish_linked(&env, body, link).await;
    }

    let consumed = consume(&env, 8).await;
    let report = &consumed.report;
    assert_eq!(consumed.exit, Some(1), "{report:#}");
    let invalid = consumed.list("invalid");
    let complaints = |position: Value| -> Vec<String> {
        invalid
            .iter()
            .filter(|i| i["position"] == position)
            .map(|i| i["error"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for (position, expected) in [
        (json!(5), "password"),
        (json!(6), "superuser"),
        (json!("7"), "integer"),
        (json!(8), "no schema gatehouse.admin.teleported.v1.json"),
    ] {
        let found = complaints(position.clone());
        assert!(
            found.iter().any(|e| e.contains(expected)),
            "position {position}: expected a complaint about {expected}, got {found:?}: {report:#}"
        );
    }
    assert!(
        invalid
            .iter()
            .all(|i| [json!(5), json!(6), json!("7"), json!(8)].contains(&i["position"])),
        "only the forgeries are invalid: {report:#}"
    );
    for key in ["duplicates", "out_of_order", "chain_mismatches"] {
        assert!(consumed.list(key).is_empty(), "{key}: {report:#}");
    }
    assert_eq!(
        report["heads"][org.to_string()],
        link.to_hex(),
        "the chain runs through the forgeries: {report:#}"
    );
}

#[tokio::test]
async fn a_replayed_message_a_late_position_and_a_broken_link_are_each_reported_by_the_python_consumer()
 {
    let env = TestEnv::new().await;
    // A short duplicate window, so that a replay of the same id can be stored at all (as
    // happens when a publisher retries after the window).
    let cfg = RelayConfig {
        duplicate_window: Duration::from_secs(1),
        ..RelayConfig::new(&env.stream, &env.prefix)
    };
    let (org, stored) = published_history(&env, &cfg).await;
    let (second, second_link) = &stored[1];
    let (last, head) = &stored[3];

    // 5: the second event again, same id and headers, once the window has passed.
    let second_id = second["id"].as_str().expect("an id").to_owned();
    eventually(PATIENCE, "JetStream storing the replay", || async {
        publish(&env, second, &second_id, "2", second_link)
            .await
            .then_some(())
    })
    .await;
    // 6: a new event carrying a position lower than the last one of its organisation.
    let late = forged(last, json!(3), |_| {});
    let link = publish_linked(&env, &late, *head).await;
    // 7: a new event whose header states the link of another body than the one it carries.
    let tampered = forged(last, json!(9), |b| {
        b["data"]["client_ip"] = json!("203.0.113.9");
    });
    let stated = link.next_canonical(&canonical_json(last).expect("jcs"));
    let tampered_id = tampered["id"].as_str().expect("an id").to_owned();
    assert!(publish(&env, &tampered, &tampered_id, "9", &stated).await);

    let consumed = consume(&env, 7).await;
    let report = &consumed.report;
    assert_eq!(consumed.exit, Some(1), "{report:#}");
    assert_eq!(report["distinct_ids"], 6, "{report:#}");
    assert_eq!(
        report["duplicates"],
        json!([{"id": second_id, "positions": [2, 2]}]),
        "{report:#}"
    );
    assert_eq!(
        report["out_of_order"],
        json!([{"org": org, "position": 3, "after": 4}]),
        "{report:#}"
    );
    let mismatches = consumed.list("chain_mismatches");
    assert_eq!(mismatches.len(), 1, "{report:#}");
    assert_eq!(mismatches[0]["position"], 9, "{report:#}");
    assert_eq!(mismatches[0]["header"], stated.to_hex(), "{report:#}");
    assert!(consumed.list("invalid").is_empty(), "{report:#}");
}
