//! What the mailer needs to know: where the events are, where links point, how mail leaves.

use std::path::PathBuf;
use std::time::Duration;

/// The sender used when none is configured.
pub const DEFAULT_FROM: &str = "Gatehouse <no-reply@gatehouse.invalid>";

/// How emails leave the process.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// An SMTP server, e.g. `smtp://127.0.0.1:2525` (plain), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host` (TLS). The URL may hold credentials: it is never
    /// logged.
    Smtp { url: String },
    /// A Maildir: each email becomes one RFC 5322 file in `new/`.
    Maildir { dir: PathBuf },
}

impl std::fmt::Debug for Transport {
    // The SMTP URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp { .. } => f.write_str("Smtp { url: … }"),
            Transport::Maildir { dir } => f.debug_struct("Maildir").field("dir", dir).finish(),
        }
    }
}

/// The mailer's configuration.
#[derive(Debug, Clone)]
pub struct MailerConfig {
    /// JetStream stream name (`GATEHOUSE_NATS_STREAM`).
    pub stream: String,
    /// First token of every subject (`GATEHOUSE_NATS_PREFIX`).
    pub prefix: String,
    /// Base of the links in emails (`GATEHOUSE_PUBLIC_URL`), without a trailing slash.
    pub public_url: String,
    pub transport: Transport,
    /// The `From` mailbox.
    pub from: String,
    /// Messages fetched from JetStream at once.
    pub batch_size: usize,
    /// Emails being handled at once (each holds at most one SMTP connection).
    pub concurrency: usize,
    /// How long one SMTP exchange may take before it counts as failed. Keep it well below the
    /// consumer's ack wait ([`crate::consumer::ACK_WAIT`]).
    pub smtp_timeout: Duration,
    /// The longest pause before a failed email is tried again (the pause doubles from 1 s).
    pub max_retry_delay: Duration,
}

impl MailerConfig {
    pub fn new(
        stream: impl Into<String>,
        prefix: impl Into<String>,
        public_url: impl Into<String>,
        transport: Transport,
    ) -> Self {
        MailerConfig {
            stream: stream.into(),
            prefix: prefix.into(),
            public_url: public_url.into(),
            transport,
            from: DEFAULT_FROM.to_owned(),
            batch_size: 16,
            concurrency: 8,
            smtp_timeout: Duration::from_secs(20),
            max_retry_delay: Duration::from_secs(60),
        }
    }

    /// The durable JetStream consumer's name.
    pub fn consumer_name(&self) -> String {
        format!("{}_mailer", self.prefix)
    }

    /// The subjects the mailer reads: every administrator event.
    pub fn filter_subject(&self) -> String {
        format!("{}.*.admin.>", self.prefix)
    }

    /// The link an email carries for `token`.
    pub(crate) fn setup_link(&self, token: &str) -> String {
        format!(
            "{}/mfa/setup?token={token}",
            self.public_url.trim_end_matches('/')
        )
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.prefix.is_empty(),
            "the NATS subject prefix must not be empty"
        );
        anyhow::ensure!(
            self.batch_size > 0,
            "the mailer's batch size must be at least 1"
        );
        anyhow::ensure!(
            self.concurrency > 0,
            "the mailer's concurrency must be at least 1"
        );
        anyhow::ensure!(
            self.public_url.starts_with("http://") || self.public_url.starts_with("https://"),
            "the public URL must start with http:// or https://"
        );
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| anyhow::anyhow!("the sender {:?} is not a mailbox: {e}", self.from))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_the_setup_page_whatever_the_trailing_slash() {
        let transport = Transport::Maildir { dir: "m".into() };
        let a = MailerConfig::new("S", "p", "https://gh.example/", transport.clone());
        let b = MailerConfig::new("S", "p", "https://gh.example", transport);
        assert_eq!(a.setup_link("t"), "https://gh.example/mfa/setup?token=t");
        assert_eq!(a.setup_link("t"), b.setup_link("t"));
    }

    #[test]
    fn the_smtp_url_is_not_printed() {
        let t = Transport::Smtp {
            url: "smtps://u:hunter2@mail.example".into(),
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn the_default_configuration_is_valid() {
        let cfg = MailerConfig::new(
            "S",
            "p",
            "http://127.0.0.1:8080",
            Transport::Maildir { dir: "m".into() },
        );
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.consumer_name(), "p_mailer");
        assert_eq!(cfg.filter_subject(), "p.*.admin.>");
    }
}
