//! A real SMTP server of a test's own: `tests/py/smtp_sink.py` (Python, aiosmtpd) on a free
//! port, writing each accepted message as a JSON file into a directory of its own.
//!
//! - [`SmtpServer::start`]: on a free port; [`SmtpServer::start_on`]: on a chosen one (to start
//!   it after the mailer already tried and failed to connect).
//! - [`SmtpServer::refuse`]: answer `451` (temporary failure) to every message until told otherwise.
//! - [`SmtpServer::messages`]: what it accepted, decoded.
//!
//! The interpreter is `python3`, or `GATEHOUSE_TEST_PYTHON`; it needs `aiosmtpd`
//! (`python3 -m pip install aiosmtpd`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// The sink script, found from this crate's directory.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/smtp_sink.py");

pub fn python() -> String {
    std::env::var("GATEHOUSE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// One message the server accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub headers: BTreeMap<String, String>,
    /// The decoded text/plain alternative.
    pub text: Option<String>,
    /// The decoded text/html alternative.
    pub html: Option<String>,
    /// The message as received.
    pub raw: String,
}

impl ReceivedMail {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or_default()
    }

    pub fn message_id(&self) -> &str {
        self.header("Message-ID").unwrap_or_default()
    }

    /// Whether it was sent to `address`.
    pub fn is_to(&self, address: &str) -> bool {
        self.rcpt_tos
            .iter()
            .any(|r| r.eq_ignore_ascii_case(address))
    }

    /// The token of the Set Up MFA link in the text alternative.
    pub fn setup_token(&self) -> Option<String> {
        let text = self.text.as_deref()?;
        let start = text.find("/mfa/setup?token=")? + "/mfa/setup?token=".len();
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        (!token.is_empty()).then_some(token)
    }
}

/// The sink process; dropping it kills the process and removes its directory.
pub struct SmtpServer {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl SmtpServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start() -> SmtpServer {
        Self::start_on(free_port())
            .await
            .expect("the SMTP sink starts (is aiosmtpd installed? python3 -m pip install aiosmtpd)")
    }

    /// Starts a server on `port` and waits until it accepts connections.
    pub async fn start_on(port: u16) -> anyhow::Result<SmtpServer> {
        let dir = std::env::temp_dir().join(format!("gatehouse-smtp-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("messages")).context("creating the sink's directory")?;
        let mut child = Command::new(python())
            .arg(SCRIPT)
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.join("messages"))
            .arg("--refuse-flag")
            .arg(dir.join("refuse"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {SCRIPT}", python()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().context("watching the SMTP sink")? {
                bail!(
                    "the SMTP sink exited at start ({status}); is port {port} taken, or aiosmtpd missing?"
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the SMTP sink did not accept connections on port {port} within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(SmtpServer { port, dir, child })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        url(self.port)
    }

    /// While on, every message is answered `451 4.3.0` and not kept.
    pub fn refuse(&self, on: bool) {
        let flag = self.dir.join("refuse");
        if on {
            std::fs::write(&flag, b"").expect("writing the refuse flag");
        } else if flag.exists() {
            std::fs::remove_file(&flag).expect("removing the refuse flag");
        }
    }

    /// Every message accepted so far, in the order received.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("messages"))
            .expect("the sink's directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).expect("a message file");
                serde_json::from_slice(&bytes).expect("a message record")
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `smtp://127.0.0.1:<port>`.
pub fn url(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}")
}

/// A port nobody listens on right now (the OS picks it; it is free again once we close it).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a local address").port()
}
