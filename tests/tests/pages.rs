//! The portal's HTML pages (docs/portal.md), driven through the router with `oneshot` against
//! real Postgres and NATS: what each role sees, forms and their CSRF tokens, read-your-writes
//! after a change, and the Set Up MFA page that must not spend its token.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use gatehouse_auth::link_token;
use gatehouse_domain::Role;
use serde_json::json;
use support::{Answer, Api, PASSWORD, email, session_token};
use uuid::Uuid;

const FORM: &str = "application/x-www-form-urlencoded";

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A GET of a page, with the session cookie when there is one.
async fn get(api: &Api, path: &str, session: Option<&str>) -> Answer {
    let mut request = Request::builder().method(Method::GET).uri(path);
    if let Some(token) = session {
        request = request.header(header::COOKIE, format!("gatehouse_session={token}"));
    }
    api.send(request.body(Body::empty()).expect("request"))
        .await
}

/// A GET of a page as of everything written so far (`?at=` the store's head), as a page
/// redirected to after a change is asked for.
async fn fresh(api: &Api, path: &str, session: &str) -> Answer {
    let head = api.env.db.head().await.expect("the store's head");
    let separator = if path.contains('?') { '&' } else { '?' };
    get(api, &format!("{path}{separator}at={head}"), Some(session)).await
}

/// A form post, with the session cookie when there is one.
async fn post(api: &Api, path: &str, session: Option<&str>, fields: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, FORM);
    if let Some(token) = session {
        request = request.header(header::COOKIE, format!("gatehouse_session={token}"));
    }
    api.send(
        request
            .body(Body::from(form_body(fields)))
            .expect("request"),
    )
    .await
}

fn html(answer: &Answer) -> &str {
    std::str::from_utf8(&answer.bytes).expect("UTF-8 HTML")
}

fn location(answer: &Answer) -> &str {
    answer
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location on a {} answer", answer.status))
}

/// Asserts a 303 to `to`, or to an address starting with `to` when `to` has a query.
#[track_caller]
fn expect_redirect(answer: &Answer, to: &str) {
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", html(answer));
    let at = location(answer);
    assert!(
        at == to || (to.contains('?') && at.starts_with(to)),
        "redirected to {at}, expected {to}"
    );
}

/// The start tag of the element with `id`, if the page has one.
fn tag<'a>(page: &'a str, id: &str) -> Option<&'a str> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let start = page[..at].rfind('<')?;
    let end = at + page[at..].find('>')?;
    Some(&page[start..=end])
}

#[track_caller]
fn has(page: &str, id: &str) -> bool {
    tag(page, id).is_some()
}

/// The session's CSRF token, as every form of the page carries it.
fn csrf_token(page: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = start + page[start..].find('"').expect("the end of the token");
    page[start..end].to_owned()
}

/// An active session of a new admin of `role`, and its CSRF token.
async fn logged_in(api: &Api, role: Role) -> (Uuid, String, String) {
    let (id, session) = api.admin_with_session(role).await;
    let page = fresh(api, "/home/settings", &session).await;
    page.expect(StatusCode::OK);
    let csrf = csrf_token(html(&page));
    (id, session, csrf)
}

/// An admin created without MFA required: id and email.
async fn admin_without_mfa(api: &Api, role: &str) -> (Uuid, String) {
    let created = api.create_admin(&api.org.key, role, Some(false)).await;
    let address = created.json["email"].as_str().expect("email").to_owned();
    (created.id(), address)
}

/// Follows a redirect with the session: the page it names.
async fn follow(api: &Api, answer: &Answer, session: &str) -> Answer {
    get(api, location(answer), Some(session)).await
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

/// The code the independent TOTP (tests/py/totp.py) computes, `steps` steps from now.
fn code_now(uri: &str, steps: i64) -> String {
    gatehouse_tests::browser::totp_code(uri, Utc::now().timestamp() + steps * 30)
}

/// A JSON post without credentials (the Set Up MFA steps, as the page's script sends them).
async fn post_json(api: &Api, path: &str, body: serde_json::Value) -> Answer {
    api.send(
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn pages_redirect_to_login_without_a_session() {
    let api = Api::start().await;
    for path in [
        "/",
        "/home/settings",
        "/admins-without-mfa-required",
        "/admins",
        &format!("/admins/{}", api.org.owner.0),
        "/settings/security",
    ] {
        expect_redirect(&get(&api, path, None).await, "/login");
        expect_redirect(&get(&api, path, Some("not-a-session")).await, "/login");
    }
    for path in [
        "/home/settings",
        "/admins-without-mfa-required/require-mfa",
        "/settings/security",
    ] {
        expect_redirect(&post(&api, path, None, &[]).await, "/login");
    }
    let login = get(&api, "/login", None).await;
    login.expect(StatusCode::OK);
    let page = html(&login);
    for id in ["email", "password", "login"] {
        assert!(has(page, id), "#{id} on /login");
    }
    assert!(page.contains(">Email</label>") && page.contains(">Password</label>"));
    assert!(page.contains("Log In"));
}

#[tokio::test]
async fn every_page_is_a_complete_document_with_the_security_headers() {
    let api = Api::start().await;
    let (id, session, _) = logged_in(&api, Role::AdministratorWithBilling).await;
    for path in [
        "/",
        "/home/settings",
        "/admins-without-mfa-required",
        "/admins",
        &format!("/admins/{id}"),
        "/settings/security",
    ] {
        let answer = get(&api, path, Some(&session)).await;
        answer.expect(StatusCode::OK);
        let page = html(&answer);
        assert!(page.starts_with("<!doctype html>"), "{path}");
        assert!(page.contains("<html lang=\"en\">"), "{path}");
        assert!(page.contains("<meta name=\"viewport\""), "{path}");
        assert!(page.contains("<title>"), "{path}");
        for label in [
            ">Home</a>",
            ">Administrators</a>",
            ">Settings</a>",
            ">Log Out</button>",
        ] {
            assert!(page.contains(label), "{label} on {path}");
        }
        assert!(answer.content_type().starts_with("text/html"), "{path}");
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert!(!page.contains("<script>"), "no inline script on {path}");
        assert!(!page.contains(" style=\""), "no inline style on {path}");
    }
    for (path, kind) in [
        ("/static/portal.css", "text/css"),
        ("/static/portal.js", "text/javascript"),
        ("/static/setup.js", "text/javascript"),
    ] {
        let asset = get(&api, path, None).await;
        asset.expect(StatusCode::OK);
        assert!(asset.content_type().starts_with(kind), "{path}");
    }
}

#[tokio::test]
async fn a_billing_admin_sees_every_page_with_its_labels_and_actions() {
    let api = Api::start().await;
    let (me, session, _) = logged_in(&api, Role::AdministratorWithBilling).await;
    let (other, _) = admin_without_mfa(&api, "manager").await;

    let home = fresh(&api, "/", &session).await;
    home.expect(StatusCode::OK);
    let page = html(&home);
    assert!(tag(page, "tile-admins-without-mfa-required").is_some_and(
        |t| t.starts_with("<a") && t.contains("href=\"/admins-without-mfa-required\"")
    ));
    assert!(page.contains("Admins Without MFA Required"));
    // The billing admin and the manager were created without MFA required.
    assert!(
        page.contains("<span id=\"tile-count\" class=\"tile-count\">2</span>"),
        "{page}"
    );
    assert!(tag(page, "settings-link").is_some_and(|t| t.contains("href=\"/home/settings\"")));
    assert!(tag(page, "coverage-chart").is_some_and(|t| t.starts_with("<svg")));
    assert!(
        page.contains("<title id=\"coverage-title\">")
            && page.contains("<desc id=\"coverage-desc\">")
    );
    // Today: the owner (required by default), the billing admin and the manager.
    assert!(
        page.contains(
            "Today: 3 administrators; 1 with MFA required (33%); 0 enrolled in MFA (0%)."
        ),
        "{page}"
    );

    let settings = get(&api, "/home/settings", Some(&session)).await;
    let page = html(&settings);
    assert!(page.contains("Configure and Customize Widgets"));
    assert!(tag(page, "widget-admins-without-mfa-required").is_some_and(|t| t.contains("checked")));
    assert!(page.contains(
        "<label for=\"widget-admins-without-mfa-required\">Admins Without MFA Required</label>"
    ));
    assert!(has(page, "save"));

    let list = get(&api, "/admins-without-mfa-required", Some(&session)).await;
    list.expect(StatusCode::OK);
    let page = html(&list);
    for id in [
        "select-all",
        "actions",
        "require-mfa",
        "confirm-require-mfa",
        "confirm-require-mfa-button",
        "cancel",
    ] {
        assert!(has(page, id), "#{id} on the list");
    }
    assert!(tag(page, "confirm-require-mfa").is_some_and(|t| t.starts_with("<dialog")));
    assert_eq!(page.matches("class=\"select-admin\"").count(), 2);
    assert!(page.contains(&format!("value=\"{other}\"")));
    assert!(page.contains(">Actions</summary>") && page.contains(">Require MFA</button>"));

    let admins = get(&api, "/admins", Some(&session)).await;
    let page = html(&admins);
    assert!(page.contains("MFA: Requirement") && page.contains("MFA: Enrollment"));
    assert!(page.contains(&format!("<tr data-admin-id=\"{other}\">")));
    assert!(page.contains(&format!("href=\"/admins/{other}\"")));
    assert!(page.contains(">Required</td>") && page.contains(">Not Required</td>"));
    assert!(page.contains(">Not Enrolled</td>"));

    let one = get(&api, &format!("/admins/{other}"), Some(&session)).await;
    let page = html(&one);
    assert!(page.contains("Multi-Factor Authentication Required"));
    assert!(
        tag(page, "mfa-required")
            .is_some_and(|t| !t.contains("disabled") && !t.contains("checked"))
    );
    for (id, label) in [
        ("save", "Save"),
        ("reset-mfa", "Reset MFA"),
        ("resend", "Resend Set Up MFA Email"),
    ] {
        assert!(has(page, id), "#{id}");
        assert!(page.contains(&format!(">{label}</button>")), "{label}");
    }

    // Their own page: the toggle, but no reset (they use the email flow).
    let own = get(&api, &format!("/admins/{me}"), Some(&session)).await;
    let page = html(&own);
    assert!(has(page, "mfa-required") && has(page, "save"));
    assert!(!has(page, "reset-mfa") && !has(page, "resend"));

    let security = get(&api, "/settings/security", Some(&session)).await;
    let page = html(&security);
    assert!(page.contains("Admin Accounts") && page.contains(">Global MFA Requirement</label>"));
    assert!(tag(page, "global-mfa-required").is_some_and(|t| !t.contains("disabled")));
    assert!(has(page, "save"));

    api.get(&format!("/api/v1/admins/{other}"), &api.org.key)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn roles_see_only_the_actions_they_may_take() {
    let api = Api::start().await;
    let (billing_id, _) = admin_without_mfa(&api, "administrator_with_billing").await;
    let (manager, _) = admin_without_mfa(&api, "manager").await;

    // A read-only admin reads, and changes nothing.
    let (_, read_only, _) = logged_in(&api, Role::ReadOnly).await;
    let list = get(&api, "/admins-without-mfa-required", Some(&read_only)).await;
    list.expect(StatusCode::OK);
    let page = html(&list);
    assert!(page.contains(&format!("data-admin-id=\"{manager}\"")));
    for id in [
        "select-all",
        "actions",
        "require-mfa",
        "confirm-require-mfa",
    ] {
        assert!(!has(page, id), "#{id} shown to read_only");
    }
    assert!(!page.contains("class=\"select-admin\""));
    let one = get(&api, &format!("/admins/{manager}"), Some(&read_only)).await;
    let page = html(&one);
    assert!(tag(page, "mfa-required").is_some_and(|t| t.contains("disabled")));
    for id in ["save", "reset-mfa", "resend"] {
        assert!(!has(page, id), "#{id} shown to read_only");
    }
    let security = get(&api, "/settings/security", Some(&read_only)).await;
    let page = html(&security);
    assert!(tag(page, "global-mfa-required").is_some_and(|t| t.contains("disabled")));
    assert!(!has(page, "save"));

    // A plain administrator manages others' MFA, but not a billing admin's.
    let (_, administrator, _) = logged_in(&api, Role::Administrator).await;
    let page =
        html(&get(&api, &format!("/admins/{manager}"), Some(&administrator)).await).to_owned();
    assert!(has(&page, "save") && has(&page, "reset-mfa") && has(&page, "resend"));
    let page =
        html(&get(&api, &format!("/admins/{billing_id}"), Some(&administrator)).await).to_owned();
    assert!(tag(&page, "mfa-required").is_some_and(|t| t.contains("disabled")));
    assert!(!has(&page, "save") && !has(&page, "reset-mfa"));
    let page = html(&get(&api, "/settings/security", Some(&administrator)).await).to_owned();
    assert!(!has(&page, "save"));

    // A command runner sees no directory: no tile, no chart, no lists.
    let (_, runner, _) = logged_in(&api, Role::CommandRunner).await;
    let home = get(&api, "/", Some(&runner)).await;
    home.expect(StatusCode::OK);
    let page = html(&home);
    assert!(!has(page, "tile-admins-without-mfa-required") && !has(page, "coverage-chart"));
    assert!(has(page, "settings-link"));
    get(&api, "/admins-without-mfa-required", Some(&runner))
        .await
        .expect(StatusCode::FORBIDDEN);
    get(&api, "/admins", Some(&runner))
        .await
        .expect(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn form_posts_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let api = Api::start().await;
    let (_, session, csrf) = logged_in(&api, Role::AdministratorWithBilling).await;
    let (target, _) = admin_without_mfa(&api, "manager").await;
    let target_text = target.to_string();
    let before = api.event_count().await;
    let forms: [(String, Vec<(&str, &str)>); 6] = [
        (
            "/settings/security".to_owned(),
            vec![("global_mfa_required", "on")],
        ),
        ("/home/settings".to_owned(), vec![]),
        (
            "/admins-without-mfa-required/require-mfa".to_owned(),
            vec![("admin_ids", &target_text)],
        ),
        (
            format!("/admins/{target}/mfa"),
            vec![("mfa_required", "on")],
        ),
        (
            format!("/admins/{target}/mfa/reset"),
            vec![("kind", "reset")],
        ),
        ("/logout".to_owned(), vec![]),
    ];
    for (path, fields) in &forms {
        let missing = post(&api, path, Some(&session), fields).await;
        missing.expect(StatusCode::FORBIDDEN);
        assert!(has(html(&missing), "error"), "{path}");
        let mut wrong = fields.clone();
        wrong.push(("csrf_token", "not-the-token"));
        post(&api, path, Some(&session), &wrong)
            .await
            .expect(StatusCode::FORBIDDEN);
        // Another session's token is no better.
        let mut other = fields.clone();
        let (_, _, other_csrf) = logged_in(&api, Role::AdministratorWithBilling).await;
        other.push(("csrf_token", &other_csrf));
        post(&api, path, Some(&session), &other)
            .await
            .expect(StatusCode::FORBIDDEN);
        assert_ne!(other_csrf, csrf);
    }
    // Only the logins of the other sessions were recorded; nothing else changed.
    let logins = i64::try_from(forms.len() * 2).expect("small");
    assert_eq!(api.event_count().await, before + logins);
    get(&api, "/", Some(&session)).await.expect(StatusCode::OK);
    let security = api.get("/api/v1/settings/security", &api.org.key).await;
    assert_eq!(security.json["global_mfa_required"], false);
}

#[tokio::test]
async fn logging_in_through_the_login_form_then_logging_out() {
    let api = Api::start().await;
    let (_, address) = admin_without_mfa(&api, "manager").await;

    let wrong = post(
        &api,
        "/login",
        None,
        &[("email", &address), ("password", "not the password")],
    )
    .await;
    wrong.expect(StatusCode::UNAUTHORIZED);
    let page = html(&wrong);
    assert!(tag(page, "error").is_some());
    assert!(page.contains("The email or password is incorrect."));
    assert!(tag(page, "email").is_some_and(|t| t.contains(&format!("value=\"{address}\""))));
    assert!(session_token(&wrong.headers).is_none());

    // A post that the browser says came from another site is refused before any check.
    let cross_site = api
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/login")
                .header(header::CONTENT_TYPE, FORM)
                .header("sec-fetch-site", "cross-site")
                .body(Body::from(form_body(&[
                    ("email", &address),
                    ("password", PASSWORD),
                ])))
                .expect("request"),
        )
        .await;
    cross_site.expect(StatusCode::FORBIDDEN);

    let ok = post(
        &api,
        "/login",
        None,
        &[("email", &address), ("password", PASSWORD)],
    )
    .await;
    expect_redirect(&ok, "/");
    let session = session_token(&ok.headers).expect("a session cookie");
    let home = get(&api, "/", Some(&session)).await;
    home.expect(StatusCode::OK);
    expect_redirect(&get(&api, "/login", Some(&session)).await, "/");

    let csrf = csrf_token(html(&home));
    let out = post(&api, "/logout", Some(&session), &[("csrf_token", &csrf)]).await;
    expect_redirect(&out, "/login");
    let cleared = out
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    expect_redirect(&get(&api, "/", Some(&session)).await, "/login");
}

#[tokio::test]
async fn too_many_wrong_passwords_show_the_wait_on_the_login_page() {
    let api = Api::start().await;
    let (_, address) = admin_without_mfa(&api, "manager").await;
    let mut last = None;
    for _ in 0..7 {
        last = Some(
            post(
                &api,
                "/login",
                None,
                &[("email", &address), ("password", "not the password")],
            )
            .await,
        );
    }
    let throttled = last.expect("answers");
    throttled.expect(StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key(header::RETRY_AFTER));
    assert!(html(&throttled).contains("Too many failed attempts. Try again in"));
}

#[tokio::test]
async fn verify_your_identity_with_a_code_and_the_reset_link() {
    let api = Api::start().await;
    // Required (the default) and not enrolled.
    let created = api.create_admin(&api.org.key, "manager", None).await;
    let (id, address) = (
        created.id(),
        created.json["email"].as_str().expect("email").to_owned(),
    );

    let login = post(
        &api,
        "/login",
        None,
        &[("email", &address), ("password", PASSWORD)],
    )
    .await;
    expect_redirect(&login, "/login/verify");
    let pending = session_token(&login.headers).expect("a pending session");
    expect_redirect(&get(&api, "/", Some(&pending)).await, "/login/verify");

    let verify = fresh(&api, "/login/verify", &pending).await;
    verify.expect(StatusCode::OK);
    let page = html(&verify).to_owned();
    assert!(page.contains("Verify Your Identity"));
    assert!(page.contains("<label for=\"code\">Verification Code</label>"));
    assert!(has(&page, "code") && has(&page, "verify") && has(&page, "reset-link"));
    assert!(has(&page, "not-enrolled"));
    assert!(
        page.find("id=\"reset-link\"") > page.find("id=\"verify\""),
        "the link is at the bottom"
    );
    let csrf = csrf_token(&page);

    let not_enrolled = post(
        &api,
        "/login/verify",
        Some(&pending),
        &[("csrf_token", &csrf), ("code", "123456")],
    )
    .await;
    not_enrolled.expect(StatusCode::CONFLICT);
    assert!(has(html(&not_enrolled), "error"));

    post(&api, "/login/verify/reset", Some(&pending), &[])
        .await
        .expect(StatusCode::FORBIDDEN);
    let reset = post(
        &api,
        "/login/verify/reset",
        Some(&pending),
        &[("csrf_token", &csrf)],
    )
    .await;
    expect_redirect(&reset, "/login/verify?sent=1");
    let sent = follow(&api, &reset, &pending).await;
    sent.expect(StatusCode::OK);
    assert!(
        tag(html(&sent), "notice").is_some() && html(&sent).contains("Check your email inbox"),
        "{}",
        html(&sent)
    );
    assert_eq!(
        api.last_event_type(id).await,
        "gatehouse.admin.mfa_reset_requested.v1"
    );

    // Enrolled through the link, the admin passes Verify Your Identity with a code.
    let token = issue_link(&api, id).await;
    let offer = post_json(
        &api,
        "/api/v1/mfa/setup",
        json!({"token": token, "email": address, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
    let uri = offer.json["otpauth_uri"]
        .as_str()
        .expect("a URI")
        .to_owned();
    post_json(
        &api,
        "/api/v1/mfa/setup/complete",
        json!({"token": token, "code": code_now(&uri, 0)}),
    )
    .await
    .expect(StatusCode::OK);

    let login = post(
        &api,
        "/login",
        None,
        &[("email", &address), ("password", PASSWORD)],
    )
    .await;
    expect_redirect(&login, "/login/verify");
    let pending = session_token(&login.headers).expect("a pending session");
    let csrf = csrf_token(html(&get(&api, "/login/verify", Some(&pending)).await));
    let wrong = post(
        &api,
        "/login/verify",
        Some(&pending),
        &[("csrf_token", &csrf), ("code", "000000")],
    )
    .await;
    wrong.expect(StatusCode::UNAUTHORIZED);
    assert!(html(&wrong).contains("The verification code is incorrect or was already used."));
    let right = post(
        &api,
        "/login/verify",
        Some(&pending),
        &[("csrf_token", &csrf), ("code", &code_now(&uri, 1))],
    )
    .await;
    expect_redirect(&right, "/");
    let active = session_token(&right.headers).expect("the renewed session");
    get(&api, "/", Some(&active)).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn five_wrong_codes_show_the_lock_on_verify_your_identity() {
    let api = Api::start().await;
    let created = api.create_admin(&api.org.key, "manager", None).await;
    let (id, address) = (
        created.id(),
        created.json["email"].as_str().expect("email").to_owned(),
    );
    let token = issue_link(&api, id).await;
    let offer = post_json(
        &api,
        "/api/v1/mfa/setup",
        json!({"token": token, "email": address, "password": PASSWORD}),
    )
    .await;
    let uri = offer.json["otpauth_uri"]
        .as_str()
        .expect("a URI")
        .to_owned();
    post_json(
        &api,
        "/api/v1/mfa/setup/complete",
        json!({"token": token, "code": code_now(&uri, 0)}),
    )
    .await
    .expect(StatusCode::OK);
    let login = post(
        &api,
        "/login",
        None,
        &[("email", &address), ("password", PASSWORD)],
    )
    .await;
    let pending = session_token(&login.headers).expect("a pending session");
    let csrf = csrf_token(html(&get(&api, "/login/verify", Some(&pending)).await));
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            post(
                &api,
                "/login/verify",
                Some(&pending),
                &[("csrf_token", &csrf), ("code", "000000")],
            )
            .await,
        );
    }
    let locked = last.expect("answers");
    locked.expect(StatusCode::LOCKED);
    assert!(html(&locked).contains("MFA is locked after too many wrong codes."));
    assert!(has(html(&locked), "reset-link"));
}

#[tokio::test]
async fn bulk_require_mfa_requires_the_selected_admins_and_the_list_no_longer_shows_them() {
    let api = Api::start().await;
    let (_, session, csrf) = logged_in(&api, Role::Administrator).await;
    let (a, _) = admin_without_mfa(&api, "manager").await;
    let (b, _) = admin_without_mfa(&api, "help_desk").await;
    let (c, _) = admin_without_mfa(&api, "read_only").await;
    let (a_text, b_text) = (a.to_string(), b.to_string());

    let done = post(
        &api,
        "/admins-without-mfa-required/require-mfa",
        Some(&session),
        &[
            ("csrf_token", &csrf),
            ("admin_ids", &a_text),
            ("admin_ids", &b_text),
        ],
    )
    .await;
    expect_redirect(&done, "/admins-without-mfa-required?at=");
    let list = follow(&api, &done, &session).await;
    list.expect(StatusCode::OK);
    let page = html(&list);
    assert!(!page.contains(&a_text) && !page.contains(&b_text), "{page}");
    assert!(page.contains(&format!("data-admin-id=\"{c}\"")));
    assert!(page.contains("MFA is now required for 2 administrators."));

    for id in [a, b] {
        let admin = api.get(&format!("/api/v1/admins/{id}"), &api.org.key).await;
        assert_eq!(admin.json["mfa"]["required"], true);
        assert_eq!(admin.json["mfa"]["requirement_source"], "admin");
    }
    // Home counts the rest at once.
    let home = follow(&api, &done, &session).await;
    home.expect(StatusCode::OK);

    let none = post(
        &api,
        "/admins-without-mfa-required/require-mfa",
        Some(&session),
        &[("csrf_token", &csrf)],
    )
    .await;
    none.expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html(&none).contains("Select at least one administrator first."));
}

#[tokio::test]
async fn a_plain_administrator_selecting_a_billing_admin_is_refused_with_the_admin_named() {
    let api = Api::start().await;
    let (_, session, csrf) = logged_in(&api, Role::Administrator).await;
    let (manager, _) = admin_without_mfa(&api, "manager").await;
    let billing_email = email("billing");
    let billing = api
        .json(
            Method::POST,
            "/api/v1/admins",
            &api.org.key,
            Some(json!({
                "email": billing_email, "first_name": "Bill", "last_name": "Ing",
                "role": "administrator_with_billing", "password": PASSWORD, "mfa_required": false
            })),
        )
        .await;
    billing.expect(StatusCode::CREATED);
    let billing = billing.id();
    fresh(&api, "/admins", &session)
        .await
        .expect(StatusCode::OK);
    let before = api.event_count().await;

    let (manager_text, billing_text) = (manager.to_string(), billing.to_string());
    let refused = post(
        &api,
        "/admins-without-mfa-required/require-mfa",
        Some(&session),
        &[
            ("csrf_token", &csrf),
            ("admin_ids", &manager_text),
            ("admin_ids", &billing_text),
        ],
    )
    .await;
    refused.expect(StatusCode::FORBIDDEN);
    let page = html(&refused);
    let error = &page[page.find("id=\"error\"").expect("#error")..];
    let error = &error[..error.find("</p>").expect("the end of #error")];
    assert!(
        error.contains("Bill Ing") && error.contains(&billing_email),
        "{error}"
    );
    assert!(error.contains("Nothing was changed"), "{error}");
    // The list is shown again with the selection kept.
    assert!(tag(page, &format!("select-{manager}")).is_some_and(|t| t.contains("checked")));
    assert_eq!(api.event_count().await, before, "all or nothing");
}

#[tokio::test]
async fn the_global_mfa_form_is_refused_for_a_non_billing_role_and_saved_for_billing() {
    let api = Api::start().await;
    let (_, administrator, csrf) = logged_in(&api, Role::Administrator).await;
    let before = api.event_count().await;
    let refused = post(
        &api,
        "/settings/security",
        Some(&administrator),
        &[("csrf_token", &csrf), ("global_mfa_required", "on")],
    )
    .await;
    refused.expect(StatusCode::FORBIDDEN);
    assert!(html(&refused).contains("Only an Administrator with Billing"));
    assert_eq!(api.event_count().await, before);

    let (_, billing, csrf) = logged_in(&api, Role::AdministratorWithBilling).await;
    let saved = post(
        &api,
        "/settings/security",
        Some(&billing),
        &[("csrf_token", &csrf), ("global_mfa_required", "on")],
    )
    .await;
    expect_redirect(&saved, "/settings/security?at=");
    let page = follow(&api, &saved, &billing).await;
    assert!(tag(html(&page), "global-mfa-required").is_some_and(|t| t.contains("checked")));
    assert!(html(&page).contains("Saved."));
    let list = get(&api, "/admins-without-mfa-required", Some(&billing)).await;
    assert!(
        !html(&list).contains("class=\"select-admin\""),
        "everyone is required now"
    );

    // While it is on, an admin's page explains why the toggle cannot be turned off.
    let some = api.create_admin(&api.org.key, "manager", None).await.id();
    let one = fresh(&api, &format!("/admins/{some}"), &billing).await;
    assert!(tag(html(&one), "mfa-required").is_some_and(|t| t.contains("disabled")));
    assert!(html(&one).contains("The Global MFA Requirement is on"));
}

#[tokio::test]
async fn the_admin_page_saves_the_requirement_and_sends_set_up_mfa_emails() {
    let api = Api::start().await;
    let (_, session, csrf) = logged_in(&api, Role::Administrator).await;
    let (target, _) = admin_without_mfa(&api, "manager").await;
    let path = format!("/admins/{target}");

    let saved = post(
        &api,
        &format!("{path}/mfa"),
        Some(&session),
        &[("csrf_token", &csrf), ("mfa_required", "on")],
    )
    .await;
    expect_redirect(&saved, &format!("{path}?"));
    let page = follow(&api, &saved, &session).await;
    let text = html(&page);
    assert!(tag(text, "mfa-required").is_some_and(|t| t.contains("checked")));
    assert!(text.contains("Required by an administrator."));

    // Off again: the checkbox is simply absent from the form.
    let off = post(
        &api,
        &format!("{path}/mfa"),
        Some(&session),
        &[("csrf_token", &csrf)],
    )
    .await;
    let page = follow(&api, &off, &session).await;
    assert!(tag(html(&page), "mfa-required").is_some_and(|t| !t.contains("checked")));
    let list = get(&api, "/admins", Some(&session)).await;
    assert!(html(&list).contains(">Not Required</td>"));

    for (kind, says) in [
        ("reset", "MFA reset requested"),
        ("resend", "A Set Up MFA email is on its way."),
    ] {
        let sent = post(
            &api,
            &format!("{path}/mfa/reset"),
            Some(&session),
            &[("csrf_token", &csrf), ("kind", kind)],
        )
        .await;
        expect_redirect(&sent, &format!("{path}?"));
        let page = follow(&api, &sent, &session).await;
        assert!(html(&page).contains(says), "{kind}");
        assert_eq!(
            api.last_event_type(target).await,
            "gatehouse.admin.mfa_reset_requested.v1"
        );
    }

    get(&api, &format!("/admins/{}", Uuid::now_v7()), Some(&session))
        .await
        .expect(StatusCode::NOT_FOUND);
    get(&api, "/admins/not-an-id", Some(&session))
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hiding_the_widget_takes_the_tile_off_home() {
    let api = Api::start().await;
    let (_, session, csrf) = logged_in(&api, Role::Manager).await;
    assert!(has(
        html(&get(&api, "/", Some(&session)).await),
        "tile-count"
    ));
    let saved = post(
        &api,
        "/home/settings",
        Some(&session),
        &[("csrf_token", &csrf)],
    )
    .await;
    expect_redirect(&saved, "/?at=");
    let home = follow(&api, &saved, &session).await;
    home.expect(StatusCode::OK);
    assert!(!has(html(&home), "tile-admins-without-mfa-required"));
    let settings = get(&api, "/home/settings", Some(&session)).await;
    assert!(
        tag(html(&settings), "widget-admins-without-mfa-required")
            .is_some_and(|t| !t.contains("checked"))
    );

    let shown = post(
        &api,
        "/home/settings",
        Some(&session),
        &[("csrf_token", &csrf), ("visible", "on")],
    )
    .await;
    let home = follow(&api, &shown, &session).await;
    assert!(has(html(&home), "tile-count"));
}

#[tokio::test]
async fn the_setup_page_does_not_spend_its_token() {
    let api = Api::start().await;
    let created = api.create_admin(&api.org.key, "manager", None).await;
    let (id, address) = (
        created.id(),
        created.json["email"].as_str().expect("email").to_owned(),
    );
    let token = issue_link(&api, id).await;
    let before = api.event_count().await;
    let path = format!("/mfa/setup?token={token}");
    for _ in 0..2 {
        let answer = get(&api, &path, None).await;
        answer.expect(StatusCode::OK);
        let page = html(&answer);
        for id in [
            "email",
            "password",
            "setup",
            "download-app",
            "have-app",
            "qr",
            "secret",
            "code",
            "submit",
            "success",
            "error",
        ] {
            assert!(has(page, id), "#{id} on the setup page");
        }
        assert!(tag(page, "setup").is_some_and(|t| t.contains("disabled")));
        assert!(tag(page, "submit").is_some_and(|t| t.contains("disabled")));
        assert!(tag(page, "qr").is_some_and(|t| t.starts_with("<img")));
        for label in [
            "Set Up MFA",
            "Download an Authenticator App",
            "I Have An App",
            "MFA reset was successful",
            ">Email</label>",
            ">Password</label>",
        ] {
            assert!(page.contains(label), "{label}");
        }
        assert!(page.contains("src=\"/static/setup.js\""));
        assert_eq!(
            answer
                .headers
                .get(header::REFERRER_POLICY)
                .and_then(|v| v.to_str().ok()),
            Some("no-referrer")
        );
    }
    assert_eq!(api.event_count().await, before, "a GET records nothing");
    let offer = post_json(
        &api,
        "/api/v1/mfa/setup",
        json!({"token": token, "email": address, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
}
