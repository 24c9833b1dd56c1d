//! Handing a message to SMTP or writing it into a Maildir.

use anyhow::anyhow;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailerConfig, Transport};
use crate::maildir::Maildir;

/// Why a message was not (or may not have been) delivered.
#[derive(Debug)]
pub enum SendError {
    /// Definitely not delivered, worth trying again later: the server answered 4xx, could not
    /// be connected to, or the Maildir could not be written.
    Transient(String),
    /// Definitely not delivered: the server refused it for good (5xx). Tried again only a few
    /// times (a misconfigured relay may be fixed).
    Permanent(String),
    /// The exchange broke off (I/O error, time-out, garbled answer) at a point we cannot know:
    /// the server may have accepted the message. Never sent again.
    Ambiguous(String),
}

impl SendError {
    pub fn detail(&self) -> &str {
        match self {
            SendError::Transient(d) | SendError::Permanent(d) | SendError::Ambiguous(d) => d,
        }
    }
}

/// Sorts lettre's errors by what they say about delivery.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let detail = format!("smtp: {e}");
    if e.is_permanent() {
        SendError::Permanent(detail)
    } else if e.is_transient() || e.is_client() || e.is_tls() || e.is_transport_shutdown() {
        // An answer with a 4xx code, or a failure before any of the message was written.
        SendError::Transient(detail)
    } else if is_connection_error(e) {
        SendError::Transient(detail)
    } else {
        SendError::Ambiguous(detail)
    }
}

/// Whether lettre could not connect at all (refused, unresolvable, connect time-out). lettre
/// 0.11 has no predicate for it; its `Display` names the kind (a unit test pins this down).
fn is_connection_error(e: &lettre::transport::smtp::Error) -> bool {
    e.to_string().starts_with("Connection error")
}

/// A built transport.
#[derive(Clone)]
pub enum Sender {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Maildir(Maildir),
}

impl Sender {
    pub fn build(cfg: &MailerConfig) -> anyhow::Result<Sender> {
        match &cfg.transport {
            Transport::Smtp { url } => {
                // The error may quote the URL, which may hold a password: say only what failed.
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|_| anyhow!("GATEHOUSE_SMTP_URL is not a valid SMTP URL (expected smtp://host:port, smtp://host?tls=required or smtps://host)"))?;
                Ok(Sender::Smtp(
                    builder.timeout(Some(cfg.smtp_timeout)).build(),
                ))
            }
            Transport::Maildir { dir } => Ok(Sender::Maildir(Maildir::start(dir.clone())?)),
        }
    }

    /// Delivers `message`; `name` (unique per email, file-name safe) names its Maildir file.
    pub async fn send(&self, message: Message, name: &str) -> Result<(), SendError> {
        match self {
            Sender::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(|e| classify(&e)),
            Sender::Maildir(maildir) => maildir
                .deliver(name, message.formatted())
                .await
                .map_err(|e| SendError::Transient(format!("maildir: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_smtp_url_builds_and_a_bad_one_does_not_leak() {
        let mut cfg = MailerConfig::new(
            "S",
            "p",
            "http://127.0.0.1:8080",
            Transport::Smtp {
                url: "smtp://127.0.0.1:2525".into(),
            },
        );
        assert!(Sender::build(&cfg).is_ok());
        cfg.transport = Transport::Smtp {
            url: "ftp://u:hunter2@mail.example".into(),
        };
        let err = Sender::build(&cfg).err().expect("refused");
        assert!(!format!("{err:#}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transient_failure_not_an_ambiguous_one() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("an address").port()
        };
        let cfg = MailerConfig::new(
            "S",
            "p",
            "http://127.0.0.1:8080",
            Transport::Smtp {
                url: format!("smtp://127.0.0.1:{port}"),
            },
        );
        let sender = Sender::build(&cfg).expect("a transport");
        let message = Message::builder()
            .from("a@example.com".parse().expect("a mailbox"))
            .to("b@example.com".parse().expect("a mailbox"))
            .subject("x")
            .body(String::from("x"))
            .expect("a message");
        match sender.send(message, "x").await {
            Err(SendError::Transient(_)) => {}
            other => panic!("expected a transient failure, got {other:?}"),
        }
    }
}
