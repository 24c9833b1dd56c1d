//! One event in, at most one email out: read the admin's state at the event, decide, claim in
//! the ledger, send, record.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use gatehouse_domain::{AdminId, AdminState, OrgId};
use gatehouse_events::types::DecodeError;
use gatehouse_events::{Envelope, Event};
use gatehouse_store::Db;
use gatehouse_store::kept::{Loaded, States};
use uuid::Uuid;

use crate::MailerConfig;
use crate::compose::{self, Content, Head};
use crate::intent::{self, Intent};
use crate::ledger::{self, Claim, Claimed, DeliveryState, Subject};
use crate::telemetry;
use crate::transport::{SendError, Sender};

/// A server that refuses an email for good (5xx) is asked this many times, then given up on.
pub const MAX_PERMANENT_ATTEMPTS: i32 = 5;

/// Attempts at writing a send's outcome before leaving it to a redelivery (which then finds the
/// row `sending` and settles it as `unknown`).
const RECORD_ATTEMPTS: u32 = 5;

/// What to do with the message once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Acknowledge it: the event needs nothing more.
    Done,
    /// The email failed: have JetStream deliver the event again after this pause.
    RetryAfter(Duration),
}

/// How many admins' states the mailer keeps (a few hundred bytes each).
pub const KEPT_ADMIN_STATES: usize = 10_000;

/// What the mailer needs for every event.
pub struct Mailer {
    pub db: Db,
    pub cfg: MailerConfig,
    pub sender: Sender,
    /// Admins' states at the last event handled for each, so the next one reads only what
    /// their stream gained since.
    pub kept: States<AdminState>,
}

impl Mailer {
    /// Handles one event. An error means it could not be handled now (Postgres is down, say)
    /// and should come again.
    pub async fn handle(&self, envelope: &Envelope) -> anyhow::Result<Disposition> {
        let event = match envelope.event() {
            Ok(event) => event,
            Err(DecodeError::UnknownType(event_type)) => {
                tracing::debug!(event_id = %envelope.id, %event_type, "ignoring an event type the mailer does not know");
                return Ok(Disposition::Done);
            }
            Err(e) => {
                tracing::error!(event_id = %envelope.id, error = %e, "skipping an event whose data cannot be read");
                return Ok(Disposition::Done);
            }
        };
        if !intent::concerns(&event) {
            return Ok(Disposition::Done);
        }
        let Some(at) = envelope.occurred_at() else {
            tracing::error!(event_id = %envelope.id, "skipping an event whose time cannot be read");
            return Ok(Disposition::Done);
        };
        // The message names the event; what is acted on is the store's copy of it, so a message
        // whose content was altered (by anyone who may publish on the subjects) sends nothing
        // the store does not say.
        let Some((before, after, event)) = self.admin_around(envelope, &event).await? else {
            tracing::error!(
                event_id = %envelope.id,
                position = envelope.position,
                "skipping an event that is not in the event store (another deployment's stream?)"
            );
            return Ok(Disposition::Done);
        };
        let Some(intent) = intent::intent(&event, at, &before) else {
            return Ok(Disposition::Done);
        };
        let kind = intent.kind();
        let skip = intent.stale_at(at, Utc::now());
        let subject = Subject {
            event_id: envelope.id,
            org_id: envelope.orgid,
            intent: &intent,
        };
        match ledger::claim(&self.db, subject, skip).await? {
            Claim::Settled(state) => {
                tracing::debug!(event_id = %envelope.id, kind = kind.as_str(), state = state.as_str(), "email already settled");
                Ok(Disposition::Done)
            }
            Claim::Interrupted => {
                tracing::warn!(
                    event_id = %envelope.id,
                    admin_id = %intent.admin_id(),
                    kind = kind.as_str(),
                    "an email was interrupted while sending (the mailer stopped mid-send); it may have been delivered, so it is not sent again"
                );
                telemetry::mail(kind, DeliveryState::Unknown);
                Ok(Disposition::Done)
            }
            Claim::Skipped(reason) => {
                tracing::info!(event_id = %envelope.id, admin_id = %intent.admin_id(), kind = kind.as_str(), reason = reason.as_str(), "email not sent");
                telemetry::mail(kind, DeliveryState::Skipped);
                Ok(Disposition::Done)
            }
            Claim::Claimed(claimed) => self.send(envelope, &intent, &after, claimed).await,
        }
    }

    /// The admin's state just before and just after the event, folded from the store; `None`
    /// when the store does not hold the event. Starts from the state kept at an earlier version
    /// of the admin's stream, when there is one, and reads only what came after it.
    async fn admin_around(
        &self,
        envelope: &Envelope,
        event: &Event,
    ) -> anyhow::Result<Option<(AdminState, AdminState, Event)>> {
        let admin_id = event.stream_id();
        // The message's stream version only picks the base; the event itself is still found
        // by its position in what the store answers, and without a base if need be.
        let base = self
            .kept
            .get(admin_id)
            .filter(|kept| kept.version < envelope.streamversion);
        if let Some(base) = base
            && let Some(found) = self.fold_around(envelope, admin_id, Some(base)).await?
        {
            return Ok(Some(found));
        }
        self.fold_around(envelope, admin_id, None).await
    }

    /// Folds the admin's stream after `base` (or from its start) through the event.
    async fn fold_around(
        &self,
        envelope: &Envelope,
        admin_id: Uuid,
        base: Option<Loaded<AdminState>>,
    ) -> anyhow::Result<Option<(AdminState, AdminState, Event)>> {
        let after = base.as_ref().map_or(0, |b| b.version);
        let streams = self
            .db
            .read_streams_after(&[(admin_id, after)])
            .await
            .context("reading the admin's stream")?;
        let Some(stream) = streams.get(&admin_id) else {
            return Ok(None);
        };
        let mut state = match base {
            Some(base) => base.state,
            None => AdminState::absent(AdminId(admin_id), OrgId(stream.org_id)),
        };
        for stored in &stream.events {
            if stored.position > envelope.position {
                break;
            }
            let event = stored.event();
            if stored.position == envelope.position {
                if stored.id != envelope.id || stored.event_type != envelope.event_type {
                    return Ok(None);
                }
                let Ok(event) = event else {
                    return Ok(None);
                };
                let before = state.clone();
                state = fold(state, stored, Some(&event));
                // What a read from the stream's start would fold, so the next event may start here.
                self.kept.keep(
                    admin_id,
                    &Loaded {
                        state: state.clone(),
                        version: stored.streamversion,
                    },
                );
                return Ok(Some((before, state, event)));
            }
            state = fold(state, stored, event.as_ref().ok());
        }
        Ok(None)
    }

    /// Sends a claimed email and records the outcome.
    async fn send(
        &self,
        envelope: &Envelope,
        intent: &Intent,
        after: &AdminState,
        claimed: Claimed,
    ) -> anyhow::Result<Disposition> {
        let kind = intent.kind();
        let message_id = ledger::message_id(envelope.id, kind);
        let link = claimed
            .token
            .as_ref()
            .map(|token| self.cfg.setup_link(&token.plaintext));
        let content = match (intent, link.as_deref()) {
            (
                Intent::Setup {
                    reason, expires_at, ..
                },
                Some(link),
            ) => Some(Content::Setup {
                reason: *reason,
                link,
                expires_at: *expires_at,
            }),
            (
                Intent::ResetConfirmation {
                    replaced_previous, ..
                },
                _,
            ) => Some(Content::ResetConfirmation {
                replaced_previous: *replaced_previous,
            }),
            (Intent::Setup { .. }, None) => None,
        };
        let head = Head {
            from: &self.cfg.from,
            to: claimed.recipient,
            message_id,
            first_name: &after.first_name,
        };
        let outcome = match content.map(|content| compose::message(head, &content)) {
            Some(Ok(message)) => {
                let name = format!("{}.{}", envelope.id, kind.as_str());
                self.sender.send(message, &name).await
            }
            Some(Err(e)) => Err(SendError::Permanent(format!("composing: {e:#}"))),
            None => Err(SendError::Permanent(
                "composing: a Set Up MFA claim without a link".to_owned(),
            )),
        };

        let (state, detail) = match &outcome {
            Ok(()) => (DeliveryState::Sent, None),
            Err(SendError::Ambiguous(d)) => (DeliveryState::Unknown, Some(d.as_str())),
            Err(SendError::Transient(d) | SendError::Permanent(d)) => {
                (DeliveryState::Failed, Some(d.as_str()))
            }
        };
        // Whatever a server answered, it never goes back into the ledger or a log with the token.
        let detail = detail.map(|d| match &claimed.token {
            Some(token) => d.replace(&token.plaintext, "[token]"),
            None => d.to_owned(),
        });
        self.record(envelope, kind, claimed.attempt, state, detail.as_deref())
            .await?;
        telemetry::mail(kind, state);

        let (event_id, admin_id, attempt) = (envelope.id, intent.admin_id(), claimed.attempt);
        let detail = detail.as_deref().unwrap_or_default();
        Ok(match outcome {
            Ok(()) => {
                tracing::info!(%event_id, %admin_id, kind = kind.as_str(), attempt, "email sent");
                Disposition::Done
            }
            Err(SendError::Ambiguous(_)) => {
                tracing::warn!(%event_id, %admin_id, kind = kind.as_str(), attempt, detail, "sending broke off; the email may have been delivered, so it is not sent again");
                Disposition::Done
            }
            Err(SendError::Permanent(_)) if attempt >= MAX_PERMANENT_ATTEMPTS => {
                tracing::error!(%event_id, %admin_id, kind = kind.as_str(), attempt, detail, "the email was refused for good; giving up");
                Disposition::Done
            }
            Err(_) => {
                let delay = retry_delay(attempt, self.cfg.max_retry_delay);
                tracing::warn!(%event_id, %admin_id, kind = kind.as_str(), attempt, detail, retry_in = ?delay, "sending an email failed; it will be tried again");
                Disposition::RetryAfter(delay)
            }
        })
    }

    /// Writes the outcome, retrying briefly: a send whose outcome is lost settles as `unknown`.
    async fn record(
        &self,
        envelope: &Envelope,
        kind: intent::MailKind,
        attempt: i32,
        state: DeliveryState,
        detail: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut tries = 0u32;
        loop {
            match ledger::record(&self.db, envelope.id, kind, attempt, state, detail).await {
                Ok(()) => return Ok(()),
                Err(e) if tries + 1 < RECORD_ATTEMPTS => {
                    tries += 1;
                    tracing::warn!(event_id = %envelope.id, error = %format!("{e:#}"), attempt = tries, "recording an email's outcome failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100u64 << tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// `state` after the stored event (decoded as `event`), or unchanged if the mailer cannot read it.
fn fold(state: AdminState, stored: &Envelope, event: Option<&Event>) -> AdminState {
    match (event, stored.occurred_at()) {
        (Some(event), Some(at)) => state.evolve(event, at),
        _ => {
            tracing::debug!(event_id = %stored.id, "not folding an event the mailer cannot read");
            state
        }
    }
}

/// 1 s after the first failure, doubling, at most `max`.
pub fn retry_delay(attempt: i32, max: Duration) -> Duration {
    let failures = u32::try_from(attempt).unwrap_or(0);
    gatehouse_store::retry::doubling(Duration::from_secs(1), failures, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_one_second_up_to_the_limit() {
        let max = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=8).map(|a| retry_delay(a, max).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(0, max), Duration::from_secs(1));
    }
}
