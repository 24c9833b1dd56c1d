//! The mailer: MFA events in, emails out (SMTP or a Maildir). A downstream consumer of the
//! event stream like any other subscriber.
//!
//! - [`config`]: [`MailerConfig`] and the [`Transport`] choice.
//! - [`consumer`]: the durable JetStream consumer loop ([`run`]).
//! - [`deliver`]: one event: the admin's state at it, the decision, claim, send, record.
//! - [`intent`]: which email an event calls for (pure).
//! - [`ledger`]: `mail_deliveries` (at most once, rate limit) and the Set Up MFA links.
//! - [`compose`]: subjects and bodies (plain text and HTML).
//! - [`transport`]: SMTP through lettre, or Maildir files.
//! - [`telemetry`]: `gatehouse_mails_total{kind, outcome}`.
//!
//! Emails sent: **Set Up MFA** (a single-use link to `{public_url}/mfa/setup?token=…`) when MFA
//! becomes required for an admin who is not enrolled and on every reset request, at most
//! [`ledger::SETUP_EMAILS_PER_HOUR`] per admin per hour; **TOTP MFA reset was successful** when
//! an enrollment completes. Never logged: the token, the link, the SMTP URL.

pub mod compose;
pub mod config;
pub mod consumer;
pub mod deliver;
pub mod intent;
pub mod ledger;
pub mod maildir;
pub mod telemetry;
pub mod transport;

pub use config::{DEFAULT_FROM, MailerConfig, Transport};
pub use ledger::DeliveryState;

use async_nats::jetstream;
use gatehouse_store::Db;
use tokio_util::sync::CancellationToken;

/// Sends the emails the event stream calls for until `shutdown` is cancelled. NATS and Postgres
/// being unavailable is waited out (with backoff, logged); only an invalid configuration (e.g.
/// an SMTP URL that does not parse) is an error.
pub async fn run(
    db: Db,
    js: jetstream::Context,
    cfg: MailerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    telemetry::describe();
    let sender = transport::Sender::build(&cfg)?;
    tracing::info!(consumer = %cfg.consumer_name(), transport = match cfg.transport {
        Transport::Smtp { .. } => "smtp",
        Transport::Maildir { .. } => "maildir",
    }, "mailer started");
    consumer::Consumer {
        mailer: deliver::Mailer {
            db,
            cfg,
            sender,
            kept: gatehouse_store::kept::States::new(deliver::KEPT_ADMIN_STATES),
        },
        js,
        shutdown,
    }
    .run()
    .await
}
