//! The `audit` read model (schema `proj_audit`): one AuditRecord (SPEC §5) per event, with the
//! emails of the initiator and the resource, and the emails of every admin the history has
//! seen (kept after removal, so the history still shows who). Queried by
//! [`crate::audit_query`].
//!
//! The record itself comes from the pure [`gatehouse_events::audit::record`]; [`change`] says
//! what an event does here (pure), [`write`] looks the emails up in the transaction and stores
//! the record. A replayed position inserts nothing.

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use gatehouse_events::audit::{self, AuditRecord};
use gatehouse_events::{Actor, Envelope, Event};
use uuid::Uuid;

use crate::batch::exec;

/// The tables, indexes and checkpoint of the model, for any schema name.
pub const DDL: &str = include_str!("audit.sql");

/// What one event does to the model: every event becomes one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<'a> {
    pub envelope: &'a Envelope,
    pub event: &'a Event,
    pub occurred_at: DateTime<Utc>,
    /// The admin's email to remember (from `admin.created`).
    pub email: Option<(Uuid, &'a str)>,
    /// The admins whose emails the record shows: the initiator and the resource.
    pub initiator: Option<Uuid>,
    pub resource_admin: Option<Uuid>,
}

/// The change an event makes. Fails only on an envelope whose time cannot be read.
pub fn change<'a>(envelope: &'a Envelope, event: &'a Event) -> anyhow::Result<Change<'a>> {
    let occurred_at = envelope.occurred_at().ok_or_else(|| {
        anyhow!(
            "envelope {} has an unreadable time {:?}",
            envelope.id,
            envelope.time
        )
    })?;
    let email = match event {
        Event::AdminCreated(e) => Some((e.admin_id, e.email.as_str())),
        _ => None,
    };
    let initiator = match envelope.actor() {
        Some(Actor::Admin(id)) => Some(id),
        Some(Actor::System) | None => None,
    };
    Ok(Change {
        envelope,
        event,
        occurred_at,
        email,
        initiator,
        resource_admin: audit::resource_admin(event),
    })
}

/// A replayed `admin.created` (an id is never reused) keeps the first address.
const REMEMBER_EMAIL: &str = "
    INSERT INTO emails (admin_id, email) VALUES ($1, $2) ON CONFLICT (admin_id) DO NOTHING";

const EMAILS: &str = "
    SELECT (SELECT email FROM emails WHERE admin_id = $1),
           (SELECT email FROM emails WHERE admin_id = $2)";

const INSERT: &str = "
    INSERT INTO records (position, org_id, occurred_at, event_type, initiator_id, resource_id,
                         initiator_email, resource_email, record)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (position) DO NOTHING";

/// Applies a change inside the batch's transaction (whose `search_path` names the schema).
pub async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    change: &Change<'_>,
) -> anyhow::Result<()> {
    if let Some((admin_id, email)) = change.email {
        exec(tx, REMEMBER_EMAIL, &[&admin_id, &email])
            .await
            .context("remembering an admin's email")?;
    }
    let (initiator_email, resource_email): (Option<String>, Option<String>) =
        if change.initiator.is_some() || change.resource_admin.is_some() {
            let statement = tx
                .prepare_cached(EMAILS)
                .await
                .context("preparing the email look-up")?;
            let row = tx
                .query_one(&statement, &[&change.initiator, &change.resource_admin])
                .await
                .context("looking up the emails of a record")?;
            (row.try_get(0)?, row.try_get(1)?)
        } else {
            (None, None)
        };
    let emails = |id: Uuid| {
        if Some(id) == change.initiator {
            initiator_email.clone()
        } else if Some(id) == change.resource_admin {
            resource_email.clone()
        } else {
            None
        }
    };
    let record = audit::record(change.envelope, change.event, &emails);
    insert(tx, &record, change.occurred_at).await
}

async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &AuditRecord,
    occurred_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let json = serde_json::to_value(record).context("serialising an audit record")?;
    let resource_id = record.resource.id.unwrap_or(record.organization);
    exec(
        tx,
        INSERT,
        &[
            &record.position,
            &record.organization,
            &occurred_at,
            &record.event_type,
            &record.initiated_by.id,
            &resource_id,
            &record.initiated_by.email,
            &record.resource.email,
            &json,
        ],
    )
    .await
    .context("writing to the audit read model")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_events::Role;
    use gatehouse_events::envelope::EnvelopeParts;
    use gatehouse_events::types::{AdminCreated, OrgRef};

    fn envelope(event: &Event, actor: Actor) -> Envelope {
        let parts = EnvelopeParts {
            id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            actor,
            correlation_id: Uuid::now_v7(),
            auth_method: None,
            time: Utc::now(),
        };
        Envelope::new(&parts, event, 1, 1)
    }

    #[test]
    fn a_created_admin_is_remembered_and_looked_up_with_its_creator() {
        let (owner, admin) = (Uuid::now_v7(), Uuid::now_v7());
        let event = Event::AdminCreated(AdminCreated {
            admin_id: admin,
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            role: Role::Manager,
            mfa_required: true,
        });
        let env = envelope(&event, Actor::Admin(owner));
        let got = change(&env, &event).expect("a readable envelope");
        assert_eq!(got.email, Some((admin, "ada@example.com")));
        assert_eq!(got.initiator, Some(owner));
        assert_eq!(got.resource_admin, Some(admin));
        assert_eq!(Some(got.occurred_at), env.occurred_at());
    }

    #[test]
    fn a_system_change_to_the_organisation_needs_no_email() {
        let event = Event::GlobalMfaEnabled(OrgRef {
            org_id: Uuid::now_v7(),
        });
        let env = envelope(&event, Actor::System);
        let got = change(&env, &event).expect("a readable envelope");
        assert_eq!(
            (got.email, got.initiator, got.resource_admin),
            (None, None, None)
        );
    }

    #[test]
    fn an_unreadable_time_is_refused() {
        let event = Event::GlobalMfaEnabled(OrgRef {
            org_id: Uuid::now_v7(),
        });
        let mut env = envelope(&event, Actor::System);
        env.time = "yesterday".into();
        assert!(change(&env, &event).is_err());
    }
}
