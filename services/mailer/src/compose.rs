//! The emails themselves: subject, plain text and HTML alternatives, stable Message-ID.

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use crate::intent::SetupReason;

pub const SETUP_SUBJECT: &str = "Set Up MFA for your Gatehouse account";
pub const CONFIRMATION_SUBJECT: &str = "TOTP MFA reset was successful";

/// What an email says.
pub enum Content<'a> {
    Setup {
        reason: SetupReason,
        /// `{public_url}/mfa/setup?token=…`: a secret; it goes into the body and nowhere else.
        link: &'a str,
        expires_at: DateTime<Utc>,
    },
    ResetConfirmation {
        replaced_previous: bool,
    },
}

/// Who, from whom, which message.
pub struct Head<'a> {
    pub from: &'a str,
    pub to: Mailbox,
    /// `<…@gatehouse>`, see [`crate::ledger::message_id`].
    pub message_id: String,
    /// The admin's first name, for the greeting (may be empty).
    pub first_name: &'a str,
}

pub fn message(head: Head<'_>, content: &Content<'_>) -> anyhow::Result<Message> {
    let from: Mailbox = head
        .from
        .parse()
        .with_context(|| format!("the sender {:?} is not a mailbox", head.from))?;
    let greeting = if head.first_name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", head.first_name.trim())
    };
    let (subject, text, html) = match content {
        Content::Setup {
            reason,
            link,
            expires_at,
        } => {
            let (text, html) = setup_body(&greeting, *reason, link, *expires_at);
            (SETUP_SUBJECT, text, html)
        }
        Content::ResetConfirmation { replaced_previous } => {
            let (text, html) = confirmation_body(&greeting, *replaced_previous);
            (CONFIRMATION_SUBJECT, text, html)
        }
    };
    Message::builder()
        .from(from)
        .to(head.to)
        .subject(subject)
        .message_id(Some(head.message_id))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .context("building an email")
}

fn setup_body(
    greeting: &str,
    reason: SetupReason,
    link: &str,
    expires_at: DateTime<Utc>,
) -> (String, String) {
    let why = match reason {
        SetupReason::Required => {
            "Multi-factor authentication (MFA) is now required for your Gatehouse administrator \
             account. Set up an authenticator app before you next log in."
        }
        SetupReason::ResetBySelf => {
            "You asked to set up or reset multi-factor authentication (MFA) for your Gatehouse \
             administrator account."
        }
        SetupReason::ResetByAdmin => {
            "An administrator of your organisation reset multi-factor authentication (MFA) for \
             your Gatehouse administrator account. Set it up again before you next log in."
        }
    };
    let expiry = expires_at.format("%Y-%m-%d %H:%M UTC").to_string();
    let text = format!(
        "{greeting}\n\n{why}\n\nSet Up MFA:\n{link}\n\nThe link works once and expires at \
         {expiry}. It asks for your email and password, then shows a QR code to scan with an \
         authenticator app.\n\nIf you did not expect this email, do not use the link and tell \
         your Gatehouse administrator.\n"
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{}</p>\n<p>{}</p>\n<p><a href=\"{}\">Set Up MFA</a></p>\n\
         <p>The link works once and expires at {}. It asks for your email and password, then \
         shows a QR code to scan with an authenticator app.</p>\n<p>If you did not expect this \
         email, do not use the link and tell your Gatehouse administrator.</p>\n</body></html>\n",
        escape(greeting),
        escape(why),
        escape(link),
        escape(&expiry)
    );
    (text, html)
}

fn confirmation_body(greeting: &str, replaced_previous: bool) -> (String, String) {
    let what = if replaced_previous {
        "TOTP MFA reset was successful: the authenticator app you just set up replaces the \
         previous one on your Gatehouse administrator account."
    } else {
        "TOTP MFA reset was successful: the authenticator app you just set up now protects your \
         Gatehouse administrator account."
    };
    let after = "You were signed out everywhere; log in again with your password and a code \
                 from the app.";
    let warning = "If you did not do this, contact your Gatehouse administrator immediately.";
    let text = format!("{greeting}\n\n{what}\n\n{after}\n\n{warning}\n");
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>{}</p>\n<p>{}</p>\n<p>{}</p>\n<p>{}</p>\n</body></html>\n",
        escape(greeting),
        escape(what),
        escape(after),
        escape(warning)
    );
    (text, html)
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const LINK: &str = "https://gh.example/mfa/setup?token=abc&x=1";

    fn head(first_name: &str) -> Head<'_> {
        Head {
            from: crate::config::DEFAULT_FROM,
            to: "ada@example.com".parse().expect("a mailbox"),
            message_id: "<e.setup@gatehouse>".into(),
            first_name,
        }
    }

    fn expires() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 11, 0, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn the_setup_email_carries_the_link_in_both_alternatives() {
        let (text, html) = setup_body("Hello Ada,", SetupReason::Required, LINK, expires());
        assert!(text.contains(LINK));
        assert!(text.contains("Set Up MFA"));
        assert!(
            html.contains(
                "<a href=\"https://gh.example/mfa/setup?token=abc&amp;x=1\">Set Up MFA</a>"
            )
        );
        assert!(text.contains("2026-11-28 11:00 UTC"));
    }

    #[test]
    fn names_are_escaped_in_html() {
        let (_, html) = confirmation_body("Hello <b>Bob</b>,", false);
        assert!(html.contains("Hello &lt;b&gt;Bob&lt;/b&gt;,"));
        assert!(html.contains("TOTP MFA reset was successful"));
    }

    #[test]
    fn messages_have_their_subject_and_message_id() {
        let content = Content::Setup {
            reason: SetupReason::ResetByAdmin,
            link: LINK,
            expires_at: expires(),
        };
        let setup = message(head("Ada"), &content).expect("a message");
        let raw = String::from_utf8(setup.formatted()).expect("ASCII");
        assert!(raw.contains("Subject: Set Up MFA for your Gatehouse account\r\n"));
        assert!(raw.contains("Message-ID: <e.setup@gatehouse>\r\n"));
        assert!(raw.contains("multipart/alternative"));

        let confirmation = Content::ResetConfirmation {
            replaced_previous: true,
        };
        let done = message(head(""), &confirmation).expect("a message");
        let raw = String::from_utf8(done.formatted()).expect("ASCII");
        assert!(raw.contains("Subject: TOTP MFA reset was successful\r\n"));
    }
}
