//! Getting in, as a client does it over HTTP against real Postgres and NATS: login, Verify Your
//! Identity with codes from an independent TOTP implementation, the Set Up MFA link, lockout,
//! throttling, sessions and their CSRF guard, and the role matrix of resets.
//!
//! The Set Up MFA links here are issued the way the mailer issues them (a random token, its
//! hash stored); tests/tests/auth_email.rs goes through a real SMTP server instead.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{Duration, Utc};
use gatehouse_auth::link_token;
use gatehouse_domain::Role;
use serde_json::{Value, json};
use support::{Answer, Api, PASSWORD, email, session_token};
use uuid::Uuid;

const ME: &str = "/api/v1/me";
const VERIFY: &str = "/api/v1/auth/mfa";
const RESET_REQUEST: &str = "/api/v1/auth/mfa/reset-request";
const LOGOUT: &str = "/api/v1/auth/logout";
const SETUP: &str = "/api/v1/mfa/setup";
const COMPLETE: &str = "/api/v1/mfa/setup/complete";

/// The code an independent TOTP implementation (tests/py/totp.py, Python's standard library)
/// computes from an otpauth URI at a Unix time.
fn independent_code(uri: &str, at: i64) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/totp.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(uri)
        .arg(at.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "totp.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A code for the current step (offset by `steps` steps).
fn code_now(uri: &str, steps: i64) -> String {
    independent_code(uri, Utc::now().timestamp() + steps * 30)
}

/// A POST with a JSON body and no credential (login, the Set Up MFA link).
async fn post(api: &Api, path: &str, body: Value) -> Answer {
    api.send(
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "auth-tests/1.0")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

/// A Set Up MFA link for `admin`, issued as the mailer issues it; answers the token.
async fn issue_link(api: &Api, admin: Uuid) -> String {
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
    token.plaintext
}

/// An admin of `role` created with MFA required (the default): id and email.
async fn required_admin(api: &Api, role: Role) -> (Uuid, String) {
    let created = api.create_admin(&api.org.key, role.as_str(), None).await;
    let email = created.json["email"].as_str().expect("email").to_owned();
    (created.id(), email)
}

/// Goes through the link: email and password, then a code from the independent TOTP.
/// Answers the otpauth URI of the new factor.
async fn enroll(api: &Api, admin: Uuid, email: &str) -> String {
    let token = issue_link(api, admin).await;
    let offer = post(
        api,
        SETUP,
        json!({"token": token, "email": email, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
    let uri = offer.json["otpauth_uri"]
        .as_str()
        .expect("a URI")
        .to_owned();
    let done = post(
        api,
        COMPLETE,
        json!({"token": token, "code": code_now(&uri, 0)}),
    )
    .await;
    done.expect(StatusCode::OK);
    assert_eq!(done.json["status"], "MFA reset was successful");
    uri
}

/// Logs in with the password, expecting Verify Your Identity; answers the pending session.
async fn pending_login(api: &Api, email: &str) -> String {
    let (answer, token) = api.login(email, PASSWORD).await;
    answer.expect(StatusCode::OK);
    assert_eq!(
        answer.json,
        json!({"status": "mfa_required", "enrolled": true})
    );
    token.expect("a pending session")
}

async fn verify(api: &Api, session: &str, code: &str) -> Answer {
    api.json(Method::POST, VERIFY, session, Some(json!({"code": code})))
        .await
}

async fn event_types(api: &Api, admin: Uuid) -> Vec<String> {
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .query(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY position",
            &[&admin],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn last_data(api: &Api, admin: Uuid) -> Value {
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .query_one(
            "SELECT envelope->'data' FROM events WHERE stream_id = $1 ORDER BY position DESC LIMIT 1",
            &[&admin],
        )
        .await
        .expect("the last event")
        .get(0)
}

#[tokio::test]
async fn an_admin_without_mfa_logs_in_uses_the_api_with_the_session_and_logs_out() {
    let api = Api::start().await;
    let (id, session) = api.admin_with_session(Role::Manager).await;
    assert_eq!(
        event_types(&api, id).await.last().map(String::as_str),
        Some("gatehouse.admin.login_succeeded.v1")
    );
    let data = last_data(&api, id).await;
    assert_eq!(data["mfa"], false);
    assert_eq!(data["mfa_type"], "none");
    assert_eq!(data["auth_method"], "session");

    let me = api.get(ME, &session).await;
    me.expect(StatusCode::OK);
    assert_eq!(me.json["id"], id.to_string());

    api.json(Method::POST, LOGOUT, &session, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    api.get(ME, &session)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site() {
    let api = Api::start().await;
    let created = api.create_admin(&api.org.key, "manager", Some(false)).await;
    let address = created.json["email"].as_str().expect("email");
    let (answer, _) = api.login(address, PASSWORD).await;
    let cookie = answer
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a cookie");
    assert!(cookie.starts_with("gatehouse_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_answer_alike_and_both_are_throttled() {
    let api = Api::start().await;
    let created = api.create_admin(&api.org.key, "manager", Some(false)).await;
    let id = created.id();
    let address = created.json["email"].as_str().expect("email").to_owned();

    let (wrong, token) = api.login(&address, "not the password at all").await;
    let (unknown, _) = api.login(&email("nobody"), PASSWORD).await;
    wrong.expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    unknown.expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong.json, unknown.json, "the answers cannot be told apart");
    assert!(token.is_none(), "no session for a wrong password");
    assert_eq!(
        event_types(&api, id).await.last().map(String::as_str),
        Some("gatehouse.admin.login_failed.v1")
    );
    let data = last_data(&api, id).await;
    assert_eq!(data["reason"], "invalid_password");
    assert_eq!(data["user_agent"], "");

    // The account allows five failures in its window; the next attempt waits, even with the
    // right password.
    for _ in 1..5 {
        api.login(&address, "not the password at all")
            .await
            .0
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    api.login(&address, "still not the password")
        .await
        .0
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let (blocked, token) = api.login(&address, PASSWORD).await;
    blocked.expect_error(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert!(token.is_none());
    let wait: u64 = blocked
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_required_admin_who_is_not_enrolled_can_only_ask_for_the_setup_email() {
    let api = Api::start().await;
    let (id, address) = required_admin(&api, Role::Manager).await;
    let (answer, session) = api.login(&address, PASSWORD).await;
    answer.expect(StatusCode::OK);
    assert_eq!(
        answer.json,
        json!({"status": "mfa_required", "enrolled": false})
    );
    let session = session.expect("a pending session");
    api.get(ME, &session)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "mfa_required");
    api.get("/api/v1/admins", &session)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "mfa_required");
    verify(&api, &session, "123456")
        .await
        .expect_error(StatusCode::CONFLICT, "mfa_not_enrolled");

    api.json(Method::POST, RESET_REQUEST, &session, Some(json!({})))
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(
        event_types(&api, id).await.last().map(String::as_str),
        Some("gatehouse.admin.mfa_reset_requested.v1")
    );
    let data = last_data(&api, id).await;
    assert_eq!(data["requested_by_self"], true);
}

#[tokio::test]
async fn the_whole_enrollment_then_login_with_codes_lockout_and_reset() {
    let api = Api::start().await;
    let (id, address) = required_admin(&api, Role::Administrator).await;
    let uri = enroll(&api, id, &address).await;
    assert!(uri.starts_with("otpauth://totp/Gatehouse:"), "{uri}");
    assert!(uri.contains("issuer=Gatehouse"), "{uri}");
    let types = event_types(&api, id).await;
    assert!(types.contains(&"gatehouse.admin.mfa_enrollment_started.v1".to_owned()));
    assert_eq!(
        types.last().map(String::as_str),
        Some("gatehouse.admin.mfa_enrollment_completed.v1")
    );

    // Verify Your Identity with the next step's code (the current one was spent enrolling).
    let pending = pending_login(&api, &address).await;
    let code = code_now(&uri, 1);
    let verified = verify(&api, &pending, &code).await;
    verified.expect(StatusCode::OK);
    assert_eq!(verified.json["status"], "authenticated");
    let session = session_token(&verified.headers).expect("a renewed session");
    assert_ne!(
        session, pending,
        "the session changes token when it passes MFA"
    );
    api.get(ME, &session).await.expect(StatusCode::OK);
    api.get(ME, &pending)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let data = last_data(&api, id).await;
    assert_eq!(
        (data["mfa"].clone(), data["mfa_type"].clone()),
        (json!(true), json!("totp"))
    );

    // The same code never works twice.
    let again = pending_login(&api, &address).await;
    verify(&api, &again, &code)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_code");

    // Five wrong codes in a row lock MFA; then even a right code is refused with 423.
    for attempt in 2..=4 {
        verify(&api, &again, "000000")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_code");
        assert!(attempt < 5);
    }
    verify(&api, &again, "000001")
        .await
        .expect_error(StatusCode::LOCKED, "mfa_locked");
    assert!(
        event_types(&api, id)
            .await
            .contains(&"gatehouse.admin.mfa_locked.v1".to_owned())
    );
    verify(&api, &again, &code_now(&uri, -1))
        .await
        .expect_error(StatusCode::LOCKED, "mfa_locked");
    let head = api.env.db.head().await.expect("head");
    let shown = api
        .get_at(&format!("/api/v1/admins/{id}"), &api.org.key, head)
        .await;
    assert_eq!(
        (
            shown.json["mfa"]["enrolled"].clone(),
            shown.json["mfa"]["locked"].clone()
        ),
        (json!(true), json!(true)),
        "the administrators list shows the lock"
    );

    // A reset by the emailed link clears the lock, replaces the factor and ends every session.
    let new_uri = enroll(&api, id, &address).await;
    assert_ne!(new_uri, uri, "a new secret");
    assert_eq!(last_data(&api, id).await["replaced_previous"], true);
    let head = api.env.db.head().await.expect("head");
    let shown = api
        .get_at(&format!("/api/v1/admins/{id}"), &api.org.key, head)
        .await;
    assert_eq!(
        shown.json["mfa"]["locked"], false,
        "the reset cleared the lock"
    );
    api.get(ME, &session)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let last = pending_login(&api, &address).await;
    verify(&api, &last, &code_now(&new_uri, 1))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn one_code_sent_twice_at_once_is_accepted_once() {
    let api = Api::start().await;
    let (id, address) = required_admin(&api, Role::Manager).await;
    let uri = enroll(&api, id, &address).await;
    let first = pending_login(&api, &address).await;
    let second = pending_login(&api, &address).await;
    let code = code_now(&uri, 1);
    let (a, b) = tokio::join!(verify(&api, &first, &code), verify(&api, &second, &code));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNAUTHORIZED],
        "{:?} / {:?}",
        a.json,
        b.json
    );
}

#[tokio::test]
async fn used_tampered_expired_and_other_admins_links_are_refused() {
    let api = Api::start().await;
    let (id, address) = required_admin(&api, Role::Manager).await;
    let (_, other_address) = required_admin(&api, Role::Manager).await;
    let token = issue_link(&api, id).await;

    // Another admin's credentials on this link, or a wrong password: 401.
    post(
        &api,
        SETUP,
        json!({"token": token, "email": other_address, "password": PASSWORD}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    post(
        &api,
        SETUP,
        json!({"token": token, "email": address, "password": "wrong wrong wrong"}),
    )
    .await
    .expect_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // A code before email and password: 409.
    post(&api, COMPLETE, json!({"token": token, "code": "123456"}))
        .await
        .expect_error(StatusCode::CONFLICT, "setup_not_started");

    // Tampered: one character changed.
    let mut tampered: Vec<char> = token.chars().collect();
    tampered[10] = if tampered[10] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    post(
        &api,
        SETUP,
        json!({"token": tampered, "email": address, "password": PASSWORD}),
    )
    .await
    .expect_error(StatusCode::GONE, "link_expired");
    post(
        &api,
        SETUP,
        json!({"token": "short", "email": address, "password": PASSWORD}),
    )
    .await
    .expect_error(StatusCode::GONE, "link_expired");

    // Used: spent by completing, refused after.
    let offer = post(
        &api,
        SETUP,
        json!({"token": token, "email": address, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
    let uri = offer.json["otpauth_uri"].as_str().expect("uri").to_owned();
    post(&api, COMPLETE, json!({"token": token, "code": "000000"}))
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_code");
    post(
        &api,
        COMPLETE,
        json!({"token": token, "code": code_now(&uri, 0)}),
    )
    .await
    .expect(StatusCode::OK);
    post(
        &api,
        COMPLETE,
        json!({"token": token, "code": code_now(&uri, 1)}),
    )
    .await
    .expect_error(StatusCode::GONE, "link_expired");
    post(
        &api,
        SETUP,
        json!({"token": token, "email": address, "password": PASSWORD}),
    )
    .await
    .expect_error(StatusCode::GONE, "link_expired");

    // Expired.
    let late = issue_link(&api, id).await;
    let client = api.env.db.pool.get().await.expect("a connection");
    client
        .execute(
            "UPDATE mfa_setup_links SET expires_at = $2 WHERE token_hash = $1",
            &[
                &link_token::hash(&late),
                &(Utc::now() - Duration::seconds(1)),
            ],
        )
        .await
        .expect("expire the link");
    post(
        &api,
        SETUP,
        json!({"token": late, "email": address, "password": PASSWORD}),
    )
    .await
    .expect_error(StatusCode::GONE, "link_expired");
}

#[tokio::test]
async fn resets_follow_the_role_matrix_never_target_oneself_and_are_limited_to_three_an_hour() {
    let api = Api::start().await;
    let (billing_target, _) = required_admin(&api, Role::AdministratorWithBilling).await;
    let (plain_target, _) = required_admin(&api, Role::Manager).await;
    let reset = |id: Uuid| format!("/api/v1/admins/{id}/mfa/reset");

    for (role, billing_ok, plain_ok) in [
        (Role::AdministratorWithBilling, true, true),
        (Role::Administrator, false, true),
        (Role::Manager, false, false),
        (Role::HelpDesk, false, false),
        (Role::ReadOnly, false, false),
        (Role::CommandRunner, false, false),
    ] {
        let (me, key, _) = api.admin_with_key(role).await;
        for (target, allowed) in [(billing_target, billing_ok), (plain_target, plain_ok)] {
            let before = event_types(&api, target).await.len();
            let answer = api.json(Method::POST, &reset(target), &key, None).await;
            if allowed {
                answer.expect(StatusCode::ACCEPTED);
                assert!(answer.headers.contains_key("gatehouse-position"));
            } else {
                answer.expect_error(StatusCode::FORBIDDEN, "forbidden");
                assert_eq!(event_types(&api, target).await.len(), before, "{role:?}");
            }
        }
        let own = api.json(Method::POST, &reset(me), &key, None).await;
        if role == Role::AdministratorWithBilling || role == Role::Administrator {
            own.expect_error(StatusCode::FORBIDDEN, "self_action_forbidden");
        } else {
            own.expect_error(StatusCode::FORBIDDEN, "forbidden");
        }
    }

    // plain_target got two requests (billing, administrator); one more is allowed, then 429.
    api.json(Method::POST, &reset(plain_target), &api.org.key, None)
        .await
        .expect(StatusCode::ACCEPTED);
    let limited = api
        .json(Method::POST, &reset(plain_target), &api.org.key, None)
        .await;
    limited.expect_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    let requests = event_types(&api, plain_target)
        .await
        .iter()
        .filter(|t| t.as_str() == "gatehouse.admin.mfa_reset_requested.v1")
        .count();
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn a_reset_request_by_email_answers_the_same_for_unknown_addresses() {
    let api = Api::start().await;
    let (id, address) = required_admin(&api, Role::Manager).await;
    let known = post(&api, RESET_REQUEST, json!({"email": address})).await;
    let unknown = post(&api, RESET_REQUEST, json!({"email": email("nobody")})).await;
    known.expect(StatusCode::ACCEPTED);
    unknown.expect(StatusCode::ACCEPTED);
    assert_eq!(known.bytes, unknown.bytes);
    gatehouse_tests::eventually(
        std::time::Duration::from_secs(10),
        "the reset request recorded",
        || async {
            event_types(&api, id)
                .await
                .contains(&"gatehouse.admin.mfa_reset_requested.v1".to_owned())
                .then_some(())
        },
    )
    .await;
    post(&api, RESET_REQUEST, json!({}))
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
}

#[tokio::test]
async fn cookie_changes_need_json_and_the_portal_origin_while_api_keys_do_not() {
    let api = Api::start().await;
    let (_, session) = api.admin_with_session(Role::Manager).await;
    let toggle = "/api/v1/home/widgets/admins-without-mfa-required";
    let body = json!({"visible": false}).to_string();
    let cookie = format!("gatehouse_session={session}");

    // A cross-site form: no JSON content type.
    let form = Request::builder()
        .method(Method::PUT)
        .uri(toggle)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.clone()))
        .expect("request");
    api.send(form)
        .await
        .expect_error(StatusCode::FORBIDDEN, "csrf");
    // JSON from another origin.
    let foreign = Request::builder()
        .method(Method::PUT)
        .uri(toggle)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(body.clone()))
        .expect("request");
    api.send(foreign)
        .await
        .expect_error(StatusCode::FORBIDDEN, "csrf");
    // Logout is a change too.
    let logout = Request::builder()
        .method(Method::POST)
        .uri(LOGOUT)
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .expect("request");
    api.send(logout)
        .await
        .expect_error(StatusCode::FORBIDDEN, "csrf");
    api.get(ME, &session).await.expect(StatusCode::OK);

    // The portal's own origin passes.
    let own = Request::builder()
        .method(Method::PUT)
        .uri(toggle)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .body(Body::from(body.clone()))
        .expect("request");
    api.send(own).await.expect(StatusCode::NO_CONTENT);
    // An API key needs neither.
    let by_key = Request::builder()
        .method(Method::PUT)
        .uri(toggle)
        .header("x-api-key", &api.org.key)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(body))
        .expect("request");
    api.send(by_key).await.expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn every_event_records_whether_its_admin_used_a_session_or_an_api_key() {
    let api = Api::start().await;
    let (id, session) = api.admin_with_session(Role::Manager).await;
    let toggle = "/api/v1/home/widgets/admins-without-mfa-required";
    api.json(
        Method::PUT,
        toggle,
        &session,
        Some(json!({"visible": false})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let (key_owner, key, _) = api.admin_with_key(Role::Manager).await;
    api.json(Method::PUT, toggle, &key, Some(json!({"visible": false})))
        .await
        .expect(StatusCode::NO_CONTENT);

    let client = api.env.db.pool.get().await.expect("a connection");
    let method_of_last = |admin: Uuid| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT envelope->>'authmethod' FROM events WHERE stream_id = $1
                     ORDER BY position DESC LIMIT 1",
                    &[&admin],
                )
                .await
                .expect("the last event")
                .get::<_, Option<String>>(0)
        }
    };
    assert_eq!(method_of_last(id).await.as_deref(), Some("session"));
    assert_eq!(method_of_last(key_owner).await.as_deref(), Some("api-key"));
    // The organisation was created from the command line: no authentication method.
    assert_eq!(method_of_last(api.org.id.0).await, None);
}
