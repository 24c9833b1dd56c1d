//! The delivery ledger (`mail_deliveries`) and the Set Up MFA links (`mfa_setup_links`).
//!
//! One row per email an event calls for, keyed by (event id, kind). The protocol that makes a
//! redelivered, duplicated or replayed event never send an email twice:
//!
//! 1. [`claim`]: in one transaction, serialised per admin, the row becomes `sending` (one more
//!    attempt) and, for a Set Up MFA email, a fresh link is stored (its hash only). Committed
//!    **before** anything is sent.
//! 2. The transport answers; [`record`] sets `sent` or `failed`.
//!
//! A row found in `sending` means the process that claimed it died mid-send: the email may or
//! may not have left, so it becomes `unknown` and is never sent again (at most once when in
//! doubt). `failed` means the transport refused it or could not be reached: it was not
//! delivered, and is claimed again later (with a new link; the old one stops working).

use anyhow::Context;
use gatehouse_auth::link_token::{self, Token};
use gatehouse_store::Db;
use uuid::Uuid;

use crate::intent::{Intent, MailKind, SkipReason};

/// Set Up MFA emails per admin per rolling hour, at most.
pub const SETUP_EMAILS_PER_HOUR: i32 = 3;

/// First key of the advisory locks that serialise claims per admin ("mail").
const LOCK_CLASS: i32 = 0x6d61_696c;

/// A ledger row's state (`mail_deliveries.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Claimed and committed; the transport has not answered (yet).
    Sending,
    Sent,
    /// Refused or unreachable: definitely not delivered; tried again.
    Failed,
    /// Not sent on purpose (see the row's detail).
    Skipped,
    /// The process died mid-send: maybe delivered; never sent again.
    Unknown,
}

impl DeliveryState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
            DeliveryState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Sending,
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::Skipped,
            DeliveryState::Unknown,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// A statement prepared once per pooled connection and kept there: a use is then one round
/// trip, where an unprepared statement with parameters takes two (its preparation, then its
/// run). Statements are written for the generic plan Postgres may switch to (decisions.md).
async fn prepared(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
) -> anyhow::Result<tokio_postgres::Statement> {
    client
        .prepare_cached(sql)
        .await
        .context("preparing a ledger statement")
}

/// The stable `Message-ID` of an email: a duplicate that ever slipped through would be
/// recognisable as one.
pub fn message_id(event_id: Uuid, kind: MailKind) -> String {
    format!("<{event_id}.{}@gatehouse>", kind.as_str())
}

/// What a claim found and did.
#[derive(Debug)]
pub enum Claim {
    /// Already settled (`sent`, `skipped` or `unknown`): nothing to do.
    Settled(DeliveryState),
    /// Found `sending` (a send was interrupted); now `unknown`.
    Interrupted,
    /// Recorded as `skipped`.
    Skipped(SkipReason),
    /// Claimed (`sending`, committed): send it now, then [`record`] the outcome.
    Claimed(Claimed),
}

/// A claimed email: everything needed to send it.
#[derive(Debug)]
pub struct Claimed {
    /// Which attempt this is (1 for the first).
    pub attempt: i32,
    /// The live address of the admin.
    pub recipient: lettre::message::Mailbox,
    /// The link's token, for a Set Up MFA email (only its hash is stored).
    pub token: Option<Token>,
}

/// The row's key and what goes with it.
pub struct Subject<'a> {
    pub event_id: Uuid,
    pub org_id: Uuid,
    pub intent: &'a Intent,
}

/// Claims an email, or records why it is not sent (`skip`: decided before, e.g. an expired
/// link). See the module documentation for the protocol; `mail_claim` (migration V7) is its
/// first step, one statement committed on its own.
pub async fn claim(
    db: &Db,
    subject: Subject<'_>,
    skip: Option<SkipReason>,
) -> anyhow::Result<Claim> {
    let kind = subject.intent.kind();
    let admin_id = subject.intent.admin_id();
    // The link is made before it is known to be needed: it costs a few microseconds, and only
    // its hash is stored (and only when the email is claimed).
    let (token, expires_at) = match subject.intent {
        Intent::Setup { expires_at, .. } => (Some(link_token::generate()?), Some(*expires_at)),
        Intent::ResetConfirmation { .. } => (None, None),
    };
    let client = db.client().await?;
    let row = client
        .query_one(
            &prepared(
                &client,
                "SELECT outcome, settled, reason, attempt, address
                 FROM mail_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await?,
            &[
                &subject.event_id,
                &kind.as_str(),
                &admin_id,
                &subject.org_id,
                &message_id(subject.event_id, kind),
                &skip.map(|reason| reason.as_str()),
                &token.as_ref().map(|t| t.hash.as_slice()),
                &expires_at,
                &SETUP_EMAILS_PER_HOUR,
                &LOCK_CLASS,
                &admin_lock_key(admin_id),
            ],
        )
        .await
        .context("claiming an email in the ledger")?;
    let outcome: String = row.try_get(0)?;
    Ok(match outcome.as_str() {
        "settled" => {
            let state: String = row.try_get(1)?;
            Claim::Settled(
                DeliveryState::parse(&state)
                    .with_context(|| format!("unknown ledger state {state:?}"))?,
            )
        }
        "interrupted" => Claim::Interrupted,
        "skipped" => {
            let reason: String = row.try_get(2)?;
            Claim::Skipped(
                SkipReason::parse(&reason)
                    .with_context(|| format!("unknown reason {reason:?} not to send"))?,
            )
        }
        "claimed" => {
            let attempt: i32 = row.try_get(3)?;
            let address: String = row.try_get(4)?;
            match mailbox(admin_id, &address) {
                Some(recipient) => Claim::Claimed(Claimed {
                    attempt,
                    recipient,
                    token,
                }),
                None => {
                    unclaim(&client, subject.event_id, kind, attempt).await?;
                    Claim::Skipped(SkipReason::NoRecipient)
                }
            }
        }
        other => anyhow::bail!("mail_claim answered {other:?}"),
    })
}

/// The admin's address as a mailbox, if it can be mailed.
fn mailbox(admin_id: Uuid, address: &str) -> Option<lettre::message::Mailbox> {
    match address.parse::<lettre::Address>() {
        Ok(address) => Some(lettre::message::Mailbox::new(None, address)),
        Err(e) => {
            // The address itself is personal data: say which admin, not what.
            tracing::warn!(admin_id = %admin_id, error = %e, "the admin's address cannot be mailed");
            None
        }
    }
}

/// Takes back a claim whose address cannot be mailed: nothing was attempted, the row is
/// `skipped` (no recipient) and the link is gone.
async fn unclaim(
    client: &deadpool_postgres::Object,
    event_id: Uuid,
    kind: MailKind,
    attempt: i32,
) -> anyhow::Result<()> {
    client
        .execute(
            &prepared(
                client,
                "WITH taken AS (
                     UPDATE mail_deliveries
                        SET state = 'skipped', detail = $3, attempts = attempts - 1,
                            updated_at = now()
                      WHERE event_id = $1 AND kind = $2 AND attempts = $4
                     RETURNING event_id
                 )
                 DELETE FROM mfa_setup_links WHERE event_id IN (SELECT event_id FROM taken)",
            )
            .await?,
            &[
                &event_id,
                &kind.as_str(),
                &SkipReason::NoRecipient.as_str(),
                &attempt,
            ],
        )
        .await
        .context("taking back a claim")?;
    Ok(())
}

/// Records what the transport answered to attempt `attempt` (`sent` or `failed`). An older
/// attempt never overwrites a newer one. `detail` must hold no token and no link.
pub async fn record(
    db: &Db,
    event_id: Uuid,
    kind: MailKind,
    attempt: i32,
    state: DeliveryState,
    detail: Option<&str>,
) -> anyhow::Result<()> {
    let client = db.client().await?;
    client
        .execute(
            &prepared(
                &client,
                "UPDATE mail_deliveries SET state = $3, detail = $4, updated_at = now()
                 WHERE event_id = $1 AND kind = $2 AND attempts = $5",
            )
            .await?,
            &[
                &event_id,
                &kind.as_str(),
                &state.as_str(),
                &detail,
                &attempt,
            ],
        )
        .await
        .context("recording a delivery")?;
    Ok(())
}

/// The second key of an admin's advisory lock (collisions only make two admins wait for each
/// other).
fn admin_lock_key(admin_id: Uuid) -> i32 {
    let bytes = admin_id.as_bytes();
    let folded = bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .fold(0u32, |acc, word| acc ^ word);
    i32::from_ne_bytes(folded.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in [
            DeliveryState::Sending,
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::Skipped,
            DeliveryState::Unknown,
        ] {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
        }
        assert_eq!(DeliveryState::parse("queued"), None);
    }

    #[test]
    fn message_ids_are_stable_per_event_and_kind() {
        let id = Uuid::nil();
        assert_eq!(
            message_id(id, MailKind::Setup),
            "<00000000-0000-0000-0000-000000000000.setup@gatehouse>"
        );
        assert_ne!(
            message_id(id, MailKind::Setup),
            message_id(id, MailKind::ResetConfirmation)
        );
    }

    #[test]
    fn lock_keys_differ_between_admins() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        assert_eq!(admin_lock_key(a), admin_lock_key(a));
        assert_ne!(admin_lock_key(a), admin_lock_key(b));
    }
}
