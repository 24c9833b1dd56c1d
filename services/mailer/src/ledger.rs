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
use chrono::{DateTime, Utc};
use gatehouse_auth::link_token::{self, Token};
use gatehouse_store::Db;
use uuid::Uuid;

use crate::intent::{Intent, MailKind, SkipReason};

/// Set Up MFA emails per admin per rolling hour, at most.
pub const SETUP_EMAILS_PER_HOUR: i64 = 3;

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

    /// Rows that count against the rate limit: every email that left or may have left.
    const COUNTED: [DeliveryState; 3] = [
        DeliveryState::Sending,
        DeliveryState::Sent,
        DeliveryState::Unknown,
    ];
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
/// link). See the module documentation for the protocol.
pub async fn claim(
    db: &Db,
    subject: Subject<'_>,
    skip: Option<SkipReason>,
) -> anyhow::Result<Claim> {
    let kind = subject.intent.kind();
    let admin_id = subject.intent.admin_id();
    let mut client = db.client().await?;
    let tx = client
        .transaction()
        .await
        .context("beginning a ledger claim")?;
    // Claims for one admin wait for each other: the rate limit counts committed rows, and a
    // duplicate of the same event sees the row its twin claimed.
    tx.execute(
        &prepared(&tx, "SELECT pg_advisory_xact_lock($1, $2)").await?,
        &[&LOCK_CLASS, &admin_lock_key(admin_id)],
    )
    .await
    .context("locking the admin's ledger")?;

    let row = tx
        .query_opt(
            &prepared(
                &tx,
                "SELECT state FROM mail_deliveries WHERE event_id = $1 AND kind = $2 FOR UPDATE",
            )
            .await?,
            &[&subject.event_id, &kind.as_str()],
        )
        .await
        .context("reading the ledger")?;
    let found = match row {
        Some(row) => {
            let state: String = row.get(0);
            Some(
                DeliveryState::parse(&state)
                    .with_context(|| format!("unknown ledger state {state:?}"))?,
            )
        }
        None => None,
    };
    let outcome = match found {
        Some(state @ (DeliveryState::Sent | DeliveryState::Skipped | DeliveryState::Unknown)) => {
            Claim::Settled(state)
        }
        Some(DeliveryState::Sending) => {
            set_state(
                &tx,
                subject.event_id,
                kind,
                DeliveryState::Unknown,
                Some("interrupted while sending; not sent again"),
            )
            .await?;
            Claim::Interrupted
        }
        None | Some(DeliveryState::Failed) => match claim_new(&tx, &subject, skip).await? {
            Ok(claimed) => Claim::Claimed(claimed),
            Err(reason) => {
                upsert(
                    &tx,
                    &subject,
                    DeliveryState::Skipped,
                    0,
                    Some(reason.as_str()),
                )
                .await?;
                Claim::Skipped(reason)
            }
        },
    };
    tx.commit().await.context("committing a ledger claim")?;
    Ok(outcome)
}

/// Checks what may stop the email, then claims it (and stores its link).
async fn claim_new(
    tx: &deadpool_postgres::Transaction<'_>,
    subject: &Subject<'_>,
    skip: Option<SkipReason>,
) -> anyhow::Result<Result<Claimed, SkipReason>> {
    if let Some(reason) = skip {
        return Ok(Err(reason));
    }
    let admin_id = subject.intent.admin_id();
    let Some(recipient) = recipient(tx, admin_id).await? else {
        return Ok(Err(SkipReason::NoRecipient));
    };
    let token = match subject.intent {
        Intent::Setup { expires_at, .. } => {
            if recent_setup_emails(tx, admin_id, subject.event_id).await? >= SETUP_EMAILS_PER_HOUR {
                return Ok(Err(SkipReason::RateLimited));
            }
            let token = link_token::generate()?;
            store_link(tx, &token, subject, *expires_at).await?;
            Some(token)
        }
        Intent::ResetConfirmation { .. } => None,
    };
    let attempt = upsert(tx, subject, DeliveryState::Sending, 1, None).await?;
    Ok(Ok(Claimed {
        attempt,
        recipient,
        token,
    }))
}

/// The admin's live address, if it can be mailed.
async fn recipient(
    tx: &deadpool_postgres::Transaction<'_>,
    admin_id: Uuid,
) -> anyhow::Result<Option<lettre::message::Mailbox>> {
    let row = tx
        .query_opt(
            &prepared(
                tx,
                "SELECT email FROM admin_credentials WHERE admin_id = $1 AND removed_at IS NULL",
            )
            .await?,
            &[&admin_id],
        )
        .await
        .context("looking up the admin's address")?;
    Ok(row.and_then(|row| {
        let email: String = row.get(0);
        match email.parse::<lettre::Address>() {
            Ok(address) => Some(lettre::message::Mailbox::new(None, address)),
            Err(e) => {
                // The address itself is personal data: say which admin, not what.
                tracing::warn!(admin_id = %admin_id, error = %e, "the admin's address cannot be mailed");
                None
            }
        }
    }))
}

/// Set Up MFA emails to the admin that left (or may have) in the last hour, other than this
/// event's own.
async fn recent_setup_emails(
    tx: &deadpool_postgres::Transaction<'_>,
    admin_id: Uuid,
    event_id: Uuid,
) -> anyhow::Result<i64> {
    let counted: Vec<&str> = DeliveryState::COUNTED.iter().map(|s| s.as_str()).collect();
    let row = tx
        .query_one(
            // The kind is written out, not a parameter: so is the predicate of the partial
            // index this count reads, which a generic plan could not match against `$n`.
            &prepared(
                tx,
                "SELECT count(*) FROM mail_deliveries
                 WHERE admin_id = $1 AND kind = 'setup' AND state = ANY($2)
                   AND created_at > now() - interval '1 hour' AND event_id <> $3",
            )
            .await?,
            &[&admin_id, &counted, &event_id],
        )
        .await
        .context("counting recent Set Up MFA emails")?;
    Ok(row.get(0))
}

/// Stores the link's hash; a retry replaces the token, so an undelivered one never works.
async fn store_link(
    tx: &deadpool_postgres::Transaction<'_>,
    token: &Token,
    subject: &Subject<'_>,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    tx.execute(
        &prepared(
            tx,
            "INSERT INTO mfa_setup_links (token_hash, event_id, admin_id, org_id, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (event_id) DO UPDATE
               SET token_hash = EXCLUDED.token_hash, expires_at = EXCLUDED.expires_at",
        )
        .await?,
        &[
            &token.hash,
            &subject.event_id,
            &subject.intent.admin_id(),
            &subject.org_id,
            &expires_at,
        ],
    )
    .await
    .context("storing a Set Up MFA link")?;
    Ok(())
}

/// Inserts or updates the row; `attempts` is added to the row's count. Returns the count.
async fn upsert(
    tx: &deadpool_postgres::Transaction<'_>,
    subject: &Subject<'_>,
    state: DeliveryState,
    attempts: i32,
    detail: Option<&str>,
) -> anyhow::Result<i32> {
    let kind = subject.intent.kind();
    let row = tx
        .query_one(
            &prepared(
                tx,
                "INSERT INTO mail_deliveries (event_id, kind, admin_id, state, attempts, message_id, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (event_id, kind) DO UPDATE
                   SET state = EXCLUDED.state, attempts = mail_deliveries.attempts + EXCLUDED.attempts,
                       detail = EXCLUDED.detail, updated_at = now()
                 RETURNING attempts",
            )
            .await?,
            &[
                &subject.event_id,
                &kind.as_str(),
                &subject.intent.admin_id(),
                &state.as_str(),
                &attempts,
                &message_id(subject.event_id, kind),
                &detail,
            ],
        )
        .await
        .context("writing the ledger")?;
    Ok(row.get(0))
}

async fn set_state(
    tx: &deadpool_postgres::Transaction<'_>,
    event_id: Uuid,
    kind: MailKind,
    state: DeliveryState,
    detail: Option<&str>,
) -> anyhow::Result<()> {
    tx.execute(
        &prepared(
            tx,
            "UPDATE mail_deliveries SET state = $3, detail = $4, updated_at = now()
             WHERE event_id = $1 AND kind = $2",
        )
        .await?,
        &[&event_id, &kind.as_str(), &state.as_str(), &detail],
    )
    .await
    .context("updating the ledger")?;
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
