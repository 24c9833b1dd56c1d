//! The whole way in, as an administrator lives it, with the real mailer sending through a real
//! SMTP server of the test's own: the Set Up MFA email, enrollment with codes from an
//! independent TOTP implementation, login, a refused replay, the lockout, and a reset by email
//! that clears it. Then no secret of the journey may be found in any event, any NATS message or
//! any log line.

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use gatehouse_mailer::{MailerConfig, Transport};
use gatehouse_tests::eventually;
use gatehouse_tests::smtp::{ReceivedMail, SmtpServer};
use serde_json::{Value, json};
use support::{Answer, Api, PASSWORD, session_token};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(30);
const SETUP_SUBJECT: &str = "Set Up MFA";
const CONFIRMATION_SUBJECT: &str = "TOTP MFA reset was successful";

/// Every log line of this test process, to search for secrets.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log buffer")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log buffer")).into_owned()
    }
}

/// The code an independent TOTP (tests/py/totp.py) computes from an otpauth URI, `steps` steps
/// from now.
fn independent_code(uri: &str, steps: i64) -> String {
    let at = Utc::now().timestamp() + steps * 30;
    let output = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/py/totp.py"))
        .arg(uri)
        .arg(at.to_string())
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

async fn post(api: &Api, path: &str, body: Value) -> Answer {
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

/// Waits for the `n`-th email to `address` whose subject contains `subject`.
async fn nth_email(smtp: &SmtpServer, address: &str, subject: &str, n: usize) -> ReceivedMail {
    eventually(PATIENCE, &format!("email {n} '{subject}'"), || async {
        smtp.messages()
            .into_iter()
            .filter(|m| m.is_to(address) && m.subject().contains(subject))
            .nth(n - 1)
    })
    .await
}

fn emails_to(smtp: &SmtpServer, address: &str, subject: &str) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| m.is_to(address) && m.subject().contains(subject))
        .count()
}

/// Enrolls through the link of `mail`; answers the otpauth URI and the base32 key shown.
async fn enroll_by_email(
    api: &Api,
    mail: &ReceivedMail,
    address: &str,
) -> (String, String, String) {
    let token = mail.setup_token().expect("a Set Up MFA link");
    assert!(
        mail.html
            .as_deref()
            .is_some_and(|h| h.contains(">Set Up MFA</a>")),
        "the HTML has a Set Up MFA link"
    );
    let offer = post(
        api,
        "/api/v1/mfa/setup",
        json!({"token": token, "email": address, "password": PASSWORD}),
    )
    .await;
    offer.expect(StatusCode::OK);
    let uri = offer.json["otpauth_uri"].as_str().expect("uri").to_owned();
    let secret = offer.json["secret"].as_str().expect("secret").to_owned();
    let done = post(
        api,
        "/api/v1/mfa/setup/complete",
        json!({"token": token, "code": independent_code(&uri, 0)}),
    )
    .await;
    done.expect(StatusCode::OK);
    assert_eq!(done.json, json!({"status": "MFA reset was successful"}));
    (uri, secret, token)
}

async fn login_pending(api: &Api, address: &str, enrolled: bool) -> String {
    let (answer, token) = api.login(address, PASSWORD).await;
    answer.expect(StatusCode::OK);
    assert_eq!(
        answer.json,
        json!({"status": "mfa_required", "enrolled": enrolled})
    );
    token.expect("a pending session")
}

async fn verify(api: &Api, session: &str, code: &str) -> Answer {
    api.json(
        Method::POST,
        "/api/v1/auth/mfa",
        session,
        Some(json!({"code": code})),
    )
    .await
}

/// Every message of the test's stream, headers and body, as text.
async fn stream_text(js: &jetstream::Context, name: &str) -> String {
    let stream = js.get_stream(name).await.expect("the stream");
    let count = stream.cached_info().state.messages;
    let mut all = String::new();
    for sequence in 1..=count {
        let message = stream.get_raw_message(sequence).await.expect("a message");
        all.push_str(&format!("{:?}", message.headers));
        all.push_str(&String::from_utf8_lossy(&message.payload));
    }
    all
}

#[tokio::test]
async fn an_admin_enrolls_from_the_email_logs_in_gets_locked_and_resets_by_email_and_no_secret_leaks()
 {
    let logs = Captured::install();
    let smtp = SmtpServer::start().await;
    let api = Api::start().await;
    let shutdown = CancellationToken::new();
    let mailer = tokio::spawn(gatehouse_mailer::run(
        api.env.db.clone(),
        api.env.jetstream.clone(),
        MailerConfig::new(
            &api.env.stream,
            &api.env.prefix,
            "http://127.0.0.1:8080",
            Transport::Smtp { url: smtp.url() },
        ),
        shutdown.clone(),
    ));

    // A new admin is required by default and not enrolled: the Set Up MFA email goes out.
    let created = api.create_admin(&api.org.key, "administrator", None).await;
    let address = created.json["email"].as_str().expect("email").to_owned();
    let welcome = nth_email(&smtp, &address, SETUP_SUBJECT, 1).await;

    // Login: Verify Your Identity is not possible yet; ask for the email from there.
    let pending = login_pending(&api, &address, false).await;
    api.json(
        Method::POST,
        "/api/v1/auth/mfa/reset-request",
        &pending,
        Some(json!({})),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    let requested = nth_email(&smtp, &address, SETUP_SUBJECT, 2).await;
    assert_ne!(welcome.setup_token(), requested.setup_token());

    let (uri, secret, token) = enroll_by_email(&api, &requested, &address).await;
    let confirmation = nth_email(&smtp, &address, CONFIRMATION_SUBJECT, 1).await;
    assert!(confirmation.subject().contains(CONFIRMATION_SUBJECT));

    // Login with MFA, then the same code is refused on the next login.
    let session = login_pending(&api, &address, true).await;
    let code = independent_code(&uri, 1);
    let verified = verify(&api, &session, &code).await;
    verified.expect(StatusCode::OK);
    let active = session_token(&verified.headers).expect("the active session");
    api.get("/api/v1/me", &active).await.expect(StatusCode::OK);
    let again = login_pending(&api, &address, true).await;
    verify(&api, &again, &code)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_code");

    // Four more wrong codes: five in a row lock MFA.
    for _ in 0..3 {
        verify(&api, &again, "999999")
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "invalid_code");
    }
    verify(&api, &again, "999998")
        .await
        .expect_error(StatusCode::LOCKED, "mfa_locked");
    verify(&api, &again, &independent_code(&uri, 0))
        .await
        .expect_error(StatusCode::LOCKED, "mfa_locked");

    // The reset by email clears the lock and ends the old session.
    post(
        &api,
        "/api/v1/auth/mfa/reset-request",
        json!({"email": address}),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    let reset = nth_email(&smtp, &address, SETUP_SUBJECT, 3).await;
    let (new_uri, new_secret, new_token) = enroll_by_email(&api, &reset, &address).await;
    nth_email(&smtp, &address, CONFIRMATION_SUBJECT, 2).await;
    api.get("/api/v1/me", &active)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let last = login_pending(&api, &address, true).await;
    verify(&api, &last, &independent_code(&new_uri, 1))
        .await
        .expect(StatusCode::OK);

    // Each email once: three Set Up MFA emails and two confirmations, no more.
    assert_eq!(emails_to(&smtp, &address, SETUP_SUBJECT), 3);
    assert_eq!(emails_to(&smtp, &address, CONFIRMATION_SUBJECT), 2);

    // No secret anywhere: not the password, not a TOTP key, not a link token.
    let secrets = [
        PASSWORD.to_owned(),
        secret,
        new_secret,
        token,
        new_token,
        welcome.setup_token().expect("a token"),
    ];
    let client = api.env.db.pool.get().await.expect("a connection");
    let events: String = client
        .query("SELECT envelope::text FROM events ORDER BY position", &[])
        .await
        .expect("events")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let head = api.env.db.head().await.expect("head");
    eventually(PATIENCE, "every event on NATS", || async {
        let stream = api.env.jetstream.get_stream(&api.env.stream).await.ok()?;
        (stream.cached_info().state.messages >= u64::try_from(head).ok()?).then_some(())
    })
    .await;
    let nats = stream_text(&api.env.jetstream, &api.env.stream).await;
    let log = logs.text();
    assert!(log.contains("/api/v1/auth/login"), "the logs were captured");
    for secret in &secrets {
        assert!(!events.contains(secret.as_str()), "a secret in an event");
        assert!(
            !nats.contains(secret.as_str()),
            "a secret in a NATS message"
        );
        assert!(!log.contains(secret.as_str()), "a secret in a log line");
    }

    shutdown.cancel();
    mailer
        .await
        .expect("the mailer does not panic")
        .expect("the mailer stops cleanly");
}
