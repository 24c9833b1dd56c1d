//! The mailer against real Postgres, real NATS and a real SMTP server (`tests/py/smtp_sink.py`):
//! which events send which email, that each email goes out once through redeliveries, restarts
//! and crashes, that failures are retried until the server accepts, and that the link's token
//! never shows up anywhere but in the email.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use gatehouse_auth::{factor, link_token, rows};
use gatehouse_domain::{AdminId, Email, OrgId};
use gatehouse_events::types::{
    AdminCreated, MfaEnrollmentCompleted, MfaRequired, MfaResetRequested,
};
use gatehouse_events::{Actor, Envelope, Event, RequirementSource, Role};
use gatehouse_mailer::{MailerConfig, Transport};
use gatehouse_relay::RelayConfig;
use gatehouse_store::{AppendRequest, Statement};
use gatehouse_tests::smtp::{self, ReceivedMail, SmtpServer};
use gatehouse_tests::{TestEnv, eventually};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a condition may take before the test fails (generous: CI machines are slow).
const PATIENCE: Duration = Duration::from_secs(30);

const PUBLIC_URL: &str = "http://gatehouse.test:8080";

const SETUP_SUBJECT: &str = "Set Up MFA for your Gatehouse account";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A task and the means to stop it.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the task stops when asked")
            .expect("the task does not panic")
            .expect("the task stops without error");
    }
}

/// A test's database and stream, with the real relay publishing what is appended.
struct World {
    env: TestEnv,
    org: Uuid,
    relay: Running,
}

impl World {
    async fn new() -> World {
        let env = TestEnv::new().await;
        let relay = start_relay(&env).await;
        World {
            env,
            org: Uuid::now_v7(),
            relay,
        }
    }

    fn config(&self, transport: Transport) -> MailerConfig {
        let mut cfg = MailerConfig::new(&self.env.stream, &self.env.prefix, PUBLIC_URL, transport);
        // Retries come quickly in tests; the default pauses up to a minute.
        cfg.max_retry_delay = Duration::from_secs(1);
        cfg
    }

    fn start_mailer(&self, transport: Transport) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gatehouse_mailer::run(
            self.env.db.clone(),
            self.env.jetstream.clone(),
            self.config(transport),
            shutdown.clone(),
        ));
        Running { shutdown, task }
    }

    async fn append(&self, event: Event, statements: Vec<Statement>) -> Envelope {
        self.append_at(event, statements, Utc::now()).await
    }

    async fn append_at(
        &self,
        event: Event,
        statements: Vec<Statement>,
        time: DateTime<Utc>,
    ) -> Envelope {
        let appended = self
            .env
            .db
            .append(AppendRequest {
                org_id: self.org,
                actor: Actor::System,
                correlation_id: Uuid::now_v7(),
                time,
                auth_method: None,
                events: vec![event],
                expected: vec![],
                org_position: None,
                statements,
            })
            .await
            .expect("the append succeeds");
        appended.envelopes[0].clone()
    }

    /// Creates an admin (event and credentials row, as the command service does).
    async fn create_admin(&self, mfa_required: bool) -> (Admin, Envelope) {
        let id = Uuid::now_v7();
        let email = format!("{}@example.com", id.simple());
        let event = Event::AdminCreated(AdminCreated {
            admin_id: id,
            email: email.clone(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            role: Role::Administrator,
            mfa_required,
        });
        let row = rows::insert_admin(
            AdminId(id),
            OrgId(self.org),
            &Email::parse(&email).expect("a valid address"),
            Role::Administrator,
            None,
        );
        let envelope = self.append(event, vec![row]).await;
        (Admin { id, email }, envelope)
    }

    async fn require_mfa(&self, admin: &Admin) -> Envelope {
        self.append(
            Event::MfaRequired(MfaRequired {
                admin_id: admin.id,
                source: RequirementSource::Admin,
            }),
            vec![],
        )
        .await
    }

    async fn complete_enrollment(&self, admin: &Admin) -> Envelope {
        self.append(
            Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
                admin_id: admin.id,
                method: "totp".into(),
                replaced_previous: false,
            }),
            vec![],
        )
        .await
    }

    async fn request_reset(&self, admin: &Admin, expires_at: DateTime<Utc>) -> Envelope {
        self.append(
            Event::MfaResetRequested(MfaResetRequested {
                admin_id: admin.id,
                requested_by_self: true,
                expires_at,
            }),
            vec![],
        )
        .await
    }

    /// Waits until the relay published everything appended so far and the mailer acknowledged
    /// every message it was given: whatever emails those events call for are settled.
    async fn await_mailer_idle(&self) {
        let head = self.env.db.head().await.expect("the store head");
        eventually(PATIENCE, "the relay to publish every event", || async {
            let client = self.env.db.pool.get().await.ok()?;
            let row = client
                .query_one("SELECT position FROM relay_cursor", &[])
                .await
                .ok()?;
            (row.get::<_, i64>(0) >= head).then_some(())
        })
        .await;
        let name = format!("{}_mailer", self.env.prefix);
        eventually(
            PATIENCE,
            "the mailer to acknowledge every message",
            || async {
                let stream = self.env.jetstream.get_stream(&self.env.stream).await.ok()?;
                let info = stream.consumer_info(&name).await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            },
        )
        .await;
    }

    async fn ledger(&self, event_id: Uuid, kind: &str) -> Option<LedgerRow> {
        let client = self.env.db.pool.get().await.expect("a connection");
        client
            .query_opt(
                "SELECT state, attempts, detail, message_id FROM mail_deliveries
                 WHERE event_id = $1 AND kind = $2",
                &[&event_id, &kind],
            )
            .await
            .expect("reading the ledger")
            .map(|r| LedgerRow {
                state: r.get(0),
                attempts: r.get(1),
                detail: r.get(2),
                message_id: r.get(3),
            })
    }

    /// Waits until the ledger row exists and satisfies `check`.
    async fn await_ledger(
        &self,
        event_id: Uuid,
        kind: &str,
        what: &str,
        check: impl Fn(&LedgerRow) -> bool,
    ) -> LedgerRow {
        eventually(PATIENCE, what, || async {
            self.ledger(event_id, kind).await.filter(|row| check(row))
        })
        .await
    }
}

/// Creates the stream and starts the relay.
async fn start_relay(env: &TestEnv) -> Running {
    let cfg = RelayConfig::new(&env.stream, &env.prefix);
    gatehouse_relay::ensure_stream(&env.jetstream, &cfg)
        .await
        .expect("the stream is created");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(gatehouse_relay::run(
        env.db.clone(),
        env.jetstream.clone(),
        cfg,
        shutdown.clone(),
    ));
    Running { shutdown, task }
}

struct Admin {
    id: Uuid,
    email: String,
}

#[derive(Debug)]
struct LedgerRow {
    state: String,
    attempts: i32,
    detail: Option<String>,
    message_id: String,
}

/// Waits until the server holds `n` messages, and checks it holds no more.
async fn await_mails(server: &SmtpServer, n: usize) -> Vec<ReceivedMail> {
    eventually(PATIENCE, &format!("{n} emails"), || async {
        let messages = server.messages();
        (messages.len() >= n).then_some(())
    })
    .await;
    let messages = server.messages();
    assert_eq!(
        messages.len(),
        n,
        "more emails than expected: {messages:#?}"
    );
    messages
}

fn setup_emails_to<'a>(mails: &'a [ReceivedMail], admin: &Admin) -> Vec<&'a ReceivedMail> {
    mails
        .iter()
        .filter(|m| m.is_to(&admin.email) && m.subject() == SETUP_SUBJECT)
        .collect()
}

fn event_time(envelope: &Envelope) -> DateTime<Utc> {
    envelope.occurred_at().expect("an RFC 3339 time")
}

fn smtp_transport(server: &SmtpServer) -> Transport {
    Transport::Smtp { url: server.url() }
}

/// Checks a Set Up MFA email from top to bottom and returns its token.
async fn check_setup_email(
    world: &World,
    mail: &ReceivedMail,
    admin: &Admin,
    event: &Envelope,
) -> String {
    assert_eq!(mail.subject(), SETUP_SUBJECT);
    assert_eq!(mail.message_id(), format!("<{}.setup@gatehouse>", event.id));
    assert!(mail.is_to(&admin.email));
    assert_eq!(mail.mail_from, "no-reply@gatehouse.invalid");
    let token = mail.setup_token().expect("a Set Up MFA link in the text");
    assert!(link_token::well_formed(&token), "{token:?}");
    let link = format!("{PUBLIC_URL}/mfa/setup?token={token}");
    assert!(mail.text.as_deref().unwrap_or_default().contains(&link));
    let html = mail.html.as_deref().expect("an HTML alternative");
    assert!(
        html.contains(&format!("<a href=\"{link}\">Set Up MFA</a>")),
        "{html}"
    );
    let link_row = factor::find_link(&world.env.db, &link_token::hash(&token))
        .await
        .expect("looking up the link")
        .expect("the token is a stored link");
    assert_eq!(link_row.admin_id, AdminId(admin.id));
    assert!(link_row.is_live(Utc::now()), "the link works");
    token
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_admin_with_mfa_required_gets_one_set_up_mfa_email_whose_link_works_for_an_hour() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    let mailer = world.start_mailer(smtp_transport(&server));

    let (required, created) = world.create_admin(true).await;
    let (without_mfa, _) = world.create_admin(false).await;
    let (enrolled, _) = world.create_admin(false).await;
    world.complete_enrollment(&enrolled).await;
    world.require_mfa(&enrolled).await;
    let (later_required, _) = world.create_admin(false).await;
    let made_required = world.require_mfa(&later_required).await;

    world.await_mailer_idle().await;
    // The new admin and the one made required later; the enrolled admin only has the
    // confirmation of their enrollment.
    let mails = await_mails(&server, 3).await;
    let to_required = setup_emails_to(&mails, &required);
    assert_eq!(to_required.len(), 1, "{mails:#?}");
    let token = check_setup_email(&world, to_required[0], &required, &created).await;
    let link = factor::find_link(&world.env.db, &link_token::hash(&token))
        .await
        .expect("looking up the link")
        .expect("the link");
    let expected_expiry = event_time(&created) + chrono::Duration::hours(1);
    assert!(
        (link.expires_at - expected_expiry).num_milliseconds().abs() < 1_000,
        "the link expires an hour after the admin was created: {} vs {expected_expiry}",
        link.expires_at
    );

    let to_later = setup_emails_to(&mails, &later_required);
    assert_eq!(to_later.len(), 1, "{mails:#?}");
    check_setup_email(&world, to_later[0], &later_required, &made_required).await;

    assert!(
        !mails.iter().any(|m| m.is_to(&without_mfa.email)),
        "an admin created without MFA gets no email"
    );
    assert!(
        setup_emails_to(&mails, &enrolled).is_empty(),
        "an enrolled admin made required gets no Set Up MFA email"
    );

    let row = world
        .ledger(created.id, "setup")
        .await
        .expect("a ledger row");
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 1));
    assert_eq!(row.message_id, format!("<{}.setup@gatehouse>", created.id));

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn every_reset_request_sends_a_set_up_mfa_email_but_not_a_fourth_within_the_hour() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    let mailer = world.start_mailer(smtp_transport(&server));

    let (admin, _) = world.create_admin(false).await;
    let mut requests = Vec::new();
    for _ in 0..4 {
        requests.push(
            world
                .request_reset(&admin, Utc::now() + chrono::Duration::hours(1))
                .await,
        );
    }
    // A request whose link has already expired when the mailer sees it sends nothing.
    let (late, _) = world.create_admin(false).await;
    let expired = world
        .request_reset(&late, Utc::now() - chrono::Duration::seconds(1))
        .await;

    world.await_mailer_idle().await;
    let mails = await_mails(&server, 3).await;
    assert_eq!(setup_emails_to(&mails, &admin).len(), 3);
    let mut tokens = Vec::new();
    for mail in &mails {
        let event = requests
            .iter()
            .find(|e| mail.message_id() == format!("<{}.setup@gatehouse>", e.id))
            .expect("the email of one of the requests");
        tokens.push(check_setup_email(&world, mail, &admin, event).await);
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "each email has a link of its own");

    let mut states = Vec::new();
    for request in &requests {
        let row = world
            .ledger(request.id, "setup")
            .await
            .expect("a ledger row");
        states.push((row.state, row.detail));
    }
    states.sort();
    assert_eq!(
        states,
        vec![
            ("sent".to_owned(), None),
            ("sent".to_owned(), None),
            ("sent".to_owned(), None),
            ("skipped".to_owned(), Some("rate limited".to_owned())),
        ]
    );

    assert!(!mails.iter().any(|m| m.is_to(&late.email)));
    let row = world
        .ledger(expired.id, "setup")
        .await
        .expect("a ledger row");
    assert_eq!(
        (row.state.as_str(), row.detail.as_deref()),
        ("skipped", Some("link expired"))
    );

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn an_admin_who_cannot_be_mailed_gets_no_email_and_no_working_link() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    let mailer = world.start_mailer(smtp_transport(&server));

    let (mailable, _) = world.create_admin(false).await;
    let (removed, _) = world.create_admin(false).await;
    let (unmailable, _) = world.create_admin(false).await;
    let client = world.env.db.pool.get().await.expect("a connection");
    client
        .execute(
            "UPDATE admin_credentials SET removed_at = now() WHERE admin_id = $1",
            &[&removed.id],
        )
        .await
        .expect("removing an admin's credentials");
    // An address that no mail system takes, written past the domain's checks.
    client
        .execute(
            "UPDATE admin_credentials SET email = 'not an address' WHERE admin_id = $1",
            &[&unmailable.id],
        )
        .await
        .expect("spoiling an admin's address");
    let sent = world.require_mfa(&mailable).await;
    let not_sent = [
        world.require_mfa(&removed).await,
        world.require_mfa(&unmailable).await,
    ];

    world.await_mailer_idle().await;
    let mails = await_mails(&server, 1).await;
    assert_eq!(setup_emails_to(&mails, &mailable).len(), 1);
    let row = world.ledger(sent.id, "setup").await.expect("a ledger row");
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 1));
    for event in &not_sent {
        let row = world.ledger(event.id, "setup").await.expect("a ledger row");
        assert_eq!(
            (row.state.as_str(), row.attempts, row.detail.as_deref()),
            ("skipped", 0, Some("no recipient")),
            "nothing was attempted for {}",
            event.id
        );
        let links: i64 = client
            .query_one(
                "SELECT count(*) FROM mfa_setup_links WHERE event_id = $1",
                &[&event.id],
            )
            .await
            .expect("counting links")
            .get(0);
        assert_eq!(links, 0, "no link is kept for an email never sent");
    }

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn completing_enrollment_sends_totp_mfa_reset_was_successful() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    let mailer = world.start_mailer(smtp_transport(&server));

    let (admin, _) = world.create_admin(false).await;
    let completed = world.complete_enrollment(&admin).await;

    let mails = await_mails(&server, 1).await;
    let mail = &mails[0];
    assert!(mail.is_to(&admin.email));
    assert!(
        mail.subject().contains("TOTP MFA reset was successful"),
        "{}",
        mail.subject()
    );
    assert_eq!(
        mail.message_id(),
        format!("<{}.reset_confirmation@gatehouse>", completed.id)
    );
    assert!(
        mail.setup_token().is_none(),
        "a confirmation carries no link"
    );
    assert!(
        mail.text
            .as_deref()
            .unwrap_or_default()
            .contains("TOTP MFA reset was successful")
    );
    world
        .await_ledger(
            completed.id,
            "reset_confirmation",
            "the confirmation recorded as sent",
            |r| r.state == "sent",
        )
        .await;

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn an_event_delivered_twice_or_replayed_after_a_restart_sends_one_email() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    let mailer = world.start_mailer(smtp_transport(&server));

    let (admin, created) = world.create_admin(true).await;
    await_mails(&server, 1).await;
    world.await_mailer_idle().await;

    // JetStream delivers the same event again (a publisher retry beyond the duplicate window).
    let stream = world
        .env
        .jetstream
        .get_stream(&world.env.stream)
        .await
        .expect("the stream");
    let subject =
        gatehouse_events::subject::for_event(&world.env.prefix, world.org, &created.event_type);
    let original = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .expect("the published event");
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    headers.insert(
        gatehouse_relay::POSITION_HEADER,
        created.position.to_string().as_str(),
    );
    world
        .env
        .jetstream
        .publish_with_headers(subject, headers, original.payload.clone())
        .await
        .expect("publishing again")
        .await
        .expect("stored again");
    world.await_mailer_idle().await;

    // The mailer restarts with a fresh consumer, so the whole stream comes again.
    mailer.stop().await;
    stream
        .delete_consumer(&format!("{}_mailer", world.env.prefix))
        .await
        .expect("the consumer is deleted");
    let mailer = world.start_mailer(smtp_transport(&server));
    eventually(PATIENCE, "the mailer's new consumer", || async {
        stream
            .consumer_info(&format!("{}_mailer", world.env.prefix))
            .await
            .ok()
            .map(drop)
    })
    .await;
    world.await_mailer_idle().await;

    let mails = server.messages();
    assert_eq!(setup_emails_to(&mails, &admin).len(), 1, "{mails:#?}");
    assert_eq!(mails.len(), 1);
    let row = world
        .ledger(created.id, "setup")
        .await
        .expect("a ledger row");
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 1));

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn an_email_interrupted_mid_send_is_not_sent_again_and_is_recorded_as_unknown() {
    let world = World::new().await;
    let server = SmtpServer::start().await;

    // A mailer claimed the email and died before the server answered.
    let (admin, created) = world.create_admin(true).await;
    let client = world.env.db.pool.get().await.expect("a connection");
    client
        .execute(
            "INSERT INTO mail_deliveries (event_id, kind, admin_id, state, attempts, message_id)
             VALUES ($1, 'setup', $2, 'sending', 1, $3)",
            &[
                &created.id,
                &admin.id,
                &format!("<{}.setup@gatehouse>", created.id),
            ],
        )
        .await
        .expect("the interrupted claim");
    drop(client);

    let mailer = world.start_mailer(smtp_transport(&server));
    let row = world
        .await_ledger(
            created.id,
            "setup",
            "the interrupted email marked unknown",
            |r| r.state == "unknown",
        )
        .await;
    world.await_mailer_idle().await;
    assert_eq!(row.attempts, 1, "not attempted again");
    assert!(server.messages().is_empty(), "{:#?}", server.messages());

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn an_email_refused_with_451_is_delivered_once_when_the_server_accepts_again() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    server.refuse(true);
    let mailer = world.start_mailer(smtp_transport(&server));

    let (admin, created) = world.create_admin(true).await;
    let row = world
        .await_ledger(created.id, "setup", "two refused attempts", |r| {
            r.state == "failed" && r.attempts >= 2
        })
        .await;
    let detail = row.detail.expect("why it failed");
    assert!(detail.contains("451"), "{detail}");
    assert!(server.messages().is_empty());

    server.refuse(false);
    let mails = await_mails(&server, 1).await;
    world.await_mailer_idle().await;
    assert_eq!(server.messages().len(), 1);
    // The link in the email that arrived is the one that works.
    check_setup_email(&world, &mails[0], &admin, &created).await;
    let row = world
        .ledger(created.id, "setup")
        .await
        .expect("a ledger row");
    assert_eq!(row.state, "sent");

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn an_email_is_delivered_once_when_the_smtp_server_becomes_reachable() {
    let world = World::new().await;
    let port = smtp::free_port();
    let mailer = world.start_mailer(Transport::Smtp {
        url: smtp::url(port),
    });

    let (admin, created) = world.create_admin(true).await;
    world
        .await_ledger(created.id, "setup", "a failed attempt to connect", |r| {
            r.state == "failed"
        })
        .await;

    let server = SmtpServer::start_on(port)
        .await
        .expect("the SMTP sink starts on the chosen port");
    let mails = await_mails(&server, 1).await;
    world.await_mailer_idle().await;
    assert_eq!(server.messages().len(), 1);
    check_setup_email(&world, &mails[0], &admin, &created).await;

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn the_maildir_transport_writes_one_file_in_new_per_email() {
    let world = World::new().await;
    let dir = TempDir::new();
    let mailer = world.start_mailer(Transport::Maildir {
        dir: dir.path().to_owned(),
    });

    let (required, created) = world.create_admin(true).await;
    let (enrolling, _) = world.create_admin(false).await;
    let completed = world.complete_enrollment(&enrolling).await;
    world.await_mailer_idle().await;

    let new = files_in(&dir.path().join("new"));
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert!(dir.path().join("cur").is_dir());

    let texts: Vec<String> = new
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("an RFC 5322 message"))
        .collect();
    let setup = texts
        .iter()
        .find(|t| t.contains(&format!("Message-ID: <{}.setup@gatehouse>\r\n", created.id)))
        .expect("the Set Up MFA email");
    assert!(setup.contains(&format!("Subject: {SETUP_SUBJECT}\r\n")));
    assert!(setup.contains(&format!("To: {}\r\n", required.email)));
    assert!(setup.contains("From: Gatehouse <no-reply@gatehouse.invalid>\r\n"));
    assert!(setup.contains("multipart/alternative"));
    assert!(setup.contains("Date: "));
    let confirmation = texts
        .iter()
        .find(|t| {
            t.contains(&format!(
                "Message-ID: <{}.reset_confirmation@gatehouse>\r\n",
                completed.id
            ))
        })
        .expect("the confirmation");
    assert!(confirmation.contains("Subject: TOTP MFA reset was successful\r\n"));
    assert!(confirmation.contains(&format!("To: {}\r\n", enrolling.email)));

    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn a_mailer_started_before_the_stream_waits_for_it_and_skips_what_is_not_an_event() {
    let logs = capture::Logs::default();
    // The test's runtime has one thread, so the mailer logs through this too.
    let _guard = tracing::subscriber::set_default(capture::Capture::new(logs.clone()));
    let env = TestEnv::new().await;
    let org = Uuid::now_v7();
    let server = SmtpServer::start().await;
    let mut cfg = MailerConfig::new(
        &env.stream,
        &env.prefix,
        PUBLIC_URL,
        smtp_transport(&server),
    );
    cfg.max_retry_delay = Duration::from_secs(1);
    let shutdown = CancellationToken::new();
    let mailer = Running {
        shutdown: shutdown.clone(),
        task: tokio::spawn(gatehouse_mailer::run(
            env.db.clone(),
            env.jetstream.clone(),
            cfg,
            shutdown,
        )),
    };
    eventually(
        PATIENCE,
        "the mailer to say it waits for the stream",
        || async {
            logs.text()
                .contains("the mailer has no JetStream consumer yet")
                .then_some(())
        },
    )
    .await;
    assert!(
        !mailer.task.is_finished(),
        "the mailer waits, it does not give up"
    );

    let relay = start_relay(&env).await;
    let world = World { env, org, relay };
    world
        .env
        .jetstream
        .publish(
            format!("{}.{org}.admin.created", world.env.prefix),
            "not an envelope".into(),
        )
        .await
        .expect("publishing poison")
        .await
        .expect("stored");
    let (admin, created) = world.create_admin(true).await;

    let mails = await_mails(&server, 1).await;
    check_setup_email(&world, &mails[0], &admin, &created).await;
    world.await_mailer_idle().await;
    assert!(
        logs.text()
            .contains("skipping a message that is not a Gatehouse envelope")
    );

    mailer.stop().await;
    world.relay.stop().await;
}

/// Anyone allowed to publish on Gatehouse's subjects could replay a real event's id and position
/// with other content. The mailer acts on the store's copy of the event a message names: a
/// forged "reset requested" over an admin's creation sends nothing, and the mailer carries on.
#[tokio::test]
async fn a_message_whose_content_is_not_the_stores_sends_nothing() {
    let world = World::new().await;
    let server = SmtpServer::start().await;
    let mailer = world.start_mailer(smtp_transport(&server));
    // Without MFA required, the creation calls for no email.
    let (admin, created) = world.create_admin(false).await;
    world.await_mailer_idle().await;

    let mut forged = created.clone();
    let reset = Event::MfaResetRequested(MfaResetRequested {
        admin_id: admin.id,
        requested_by_self: true,
        expires_at: Utc::now() + chrono::Duration::hours(1),
    });
    forged.event_type = reset.type_name().to_owned();
    forged.data = reset.data();
    let mut headers = HeaderMap::new();
    // A new message id, so JetStream stores it beside the real one.
    headers.insert("Nats-Msg-Id", Uuid::now_v7().to_string().as_str());
    headers.insert("Gatehouse-Position", forged.position.to_string().as_str());
    world
        .env
        .jetstream
        .publish_with_headers(
            format!(
                "{}.{}.admin.mfa_reset_requested",
                world.env.prefix, world.org
            ),
            headers,
            serde_json::to_vec(&forged).expect("JSON").into(),
        )
        .await
        .expect("publishing the forgery")
        .await
        .expect("stored");
    world.await_mailer_idle().await;
    assert!(
        world.ledger(created.id, "setup").await.is_none(),
        "the forgery claimed an email"
    );

    // A real reset afterwards is mailed: the mailer carried on, and it is the only email.
    let real = world
        .request_reset(&admin, Utc::now() + chrono::Duration::hours(1))
        .await;
    let mails = await_mails(&server, 1).await;
    world.await_mailer_idle().await;
    assert_eq!(server.messages().len(), 1, "{mails:?}");
    assert_eq!(
        world
            .await_ledger(real.id, "setup", "the real reset's email", |r| r.state
                == "sent")
            .await
            .state,
        "sent"
    );
    mailer.stop().await;
    world.relay.stop().await;
}

#[tokio::test]
async fn the_link_token_never_appears_in_the_logs() {
    let logs = capture::Logs::default();
    // The test's runtime has one thread, so the relay and the mailer log through this too.
    let _guard = tracing::subscriber::set_default(capture::Capture::new(logs.clone()));

    let world = World::new().await;
    let server = SmtpServer::start().await;
    server.refuse(true);
    let mailer = world.start_mailer(smtp_transport(&server));

    let (admin, created) = world.create_admin(true).await;
    world
        .await_ledger(created.id, "setup", "a refused attempt", |r| {
            r.state == "failed"
        })
        .await;
    server.refuse(false);
    let mails = await_mails(&server, 1).await;
    let token = check_setup_email(&world, &mails[0], &admin, &created).await;
    world.await_mailer_idle().await;
    mailer.stop().await;
    world.relay.stop().await;

    let text = logs.text();
    assert!(
        text.contains("email sent"),
        "the logs were captured: {text}"
    );
    assert!(text.contains("sending an email failed"), "{text}");
    assert!(!text.contains(&token), "the token is in the logs");
    assert!(!text.contains("/mfa/setup?token="), "a link is in the logs");
}

// ---------------------------------------------------------------------------------------------
// Support
// ---------------------------------------------------------------------------------------------

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-maildir-{}", Uuid::new_v4().simple()));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A tracing subscriber that writes every span and event, fields included, into a string.
mod capture {
    use std::fmt::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub struct Logs(Arc<Mutex<String>>);

    impl Logs {
        pub fn text(&self) -> String {
            self.0.lock().expect("the log buffer").clone()
        }

        fn push(&self, line: &str) {
            let mut text = self.0.lock().expect("the log buffer");
            text.push_str(line);
            text.push('\n');
        }
    }

    pub struct Capture {
        logs: Logs,
        next_span: AtomicU64,
    }

    impl Capture {
        pub fn new(logs: Logs) -> Capture {
            Capture {
                logs,
                next_span: AtomicU64::new(1),
            }
        }
    }

    struct Line<'a>(&'a mut String);

    impl Visit for Line<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut line = format!("span {}:", span.metadata().name());
            span.record(&mut Line(&mut line));
            self.logs.push(&line);
            Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
        }

        fn record(&self, _: &Id, values: &Record<'_>) {
            let mut line = "span record:".to_owned();
            values.record(&mut Line(&mut line));
            self.logs.push(&line);
        }

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let meta = event.metadata();
            let mut line = format!("{} {}:", meta.level(), meta.target());
            event.record(&mut Line(&mut line));
            self.logs.push(&line);
        }

        fn enter(&self, _: &Id) {}

        fn exit(&self, _: &Id) {}
    }
}
