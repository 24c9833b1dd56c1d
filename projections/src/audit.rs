//! The `audit` read model (schema `proj_audit`): one AuditRecord (SPEC §5) per event, with the
//! emails of the initiator and the resource, and the emails of every admin the history has
//! seen (kept after removal, so the history still shows who). Queried by
//! [`crate::audit_query`].
//!
//! The record itself comes from the pure [`gatehouse_events::audit::record`]; [`change`] says
//! what an event does here (pure), [`write`] stores a run of records in three statements,
//! looking the emails up in the transaction. A replayed position inserts nothing.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use gatehouse_events::audit::{self, AuditRecord};
use gatehouse_events::{Actor, Envelope, Event};
use gatehouse_store::JsonText;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::batch::exec;
use crate::copy::BinaryCopy;

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

/// Remembers the addresses of a run's `admin.created` events. A replayed one (an id is never
/// reused) keeps the first address.
const REMEMBER_EMAILS: &str = "
    INSERT INTO emails (admin_id, email)
    SELECT * FROM unnest($1::uuid[], $2::text[])
    ON CONFLICT (admin_id) DO NOTHING";

const EMAILS: &str = "SELECT admin_id, email FROM emails WHERE admin_id = ANY($1)";

/// One statement for a whole run of records; a replayed position inserts nothing.
const INSERT: &str = "
    INSERT INTO records (position, org_id, occurred_at, event_type, initiator_id, resource_id,
                         initiator_email, resource_email, record)
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::uuid[],
                         $6::uuid[], $7::text[], $8::text[], $9::json[])
    ON CONFLICT (position) DO NOTHING";

/// How a run of records is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// One `INSERT … ON CONFLICT DO NOTHING` per run: the live model, where a replayed
    /// position inserts nothing.
    Upsert,
    /// `COPY … FROM STDIN (FORMAT binary)`, the records sent in chunks as they are built, so
    /// Postgres stores the first while the rest are built: a rebuild's shadow, where every
    /// position is new (its checkpoint says so) and nobody reads it.
    Copy,
}

/// Applies a run of consecutive changes inside the batch's transaction (whose `search_path`
/// names the schema) in three statements whatever its length: remember the run's new emails,
/// look up every email its records show, insert the records (`how` says how).
///
/// The emails of a run are remembered before any of its records is written, so a record shows
/// the email of an admin created earlier in the same run, as it would one event at a time.
pub(crate) async fn write(
    tx: &deadpool_postgres::Transaction<'_>,
    changes: &[Change<'_>],
    how: Insert,
) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let (new_ids, new_emails): (Vec<Uuid>, Vec<&str>) =
        changes.iter().filter_map(|c| c.email).unzip();
    let mut wanted: Vec<Uuid> = changes
        .iter()
        .flat_map(|c| [c.initiator, c.resource_admin])
        .flatten()
        .collect();
    wanted.sort_unstable();
    wanted.dedup();

    // The emails this run brings are remembered, and the ones its records name read, in one
    // round trip: both are prepared first, then sent together; Postgres runs them in the order
    // sent, so the read sees what the run remembered.
    let (remember, look_up) = tokio::try_join!(
        tx.prepare_cached(REMEMBER_EMAILS),
        tx.prepare_cached(EMAILS)
    )
    .context("preparing the email statements")?;
    let remembered = async {
        if new_ids.is_empty() {
            return Ok(());
        }
        tx.execute(&remember, &[&new_ids, &new_emails])
            .await
            .map(|_| ())
            .context("remembering admins' emails")
    };
    let read = async {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        tx.query(&look_up, &[&wanted])
            .await
            .context("looking up the emails of the records")
    };
    let ((), found) = tokio::try_join!(remembered, read)?;
    let mut emails: HashMap<Uuid, String> = HashMap::with_capacity(found.len());
    for row in found {
        emails.insert(row.try_get(0)?, row.try_get(1)?);
    }

    let record_of = |change: &Change<'_>| {
        audit::record(change.envelope, change.event, &|id| {
            emails.get(&id).cloned()
        })
    };
    if how == Insert::Copy {
        return copy(tx, changes, record_of).await;
    }
    let mut rows = Rows::with_capacity(changes.len());
    for change in changes {
        rows.push(record_of(change), change.occurred_at)?;
    }
    exec(
        tx,
        INSERT,
        &[
            &rows.position,
            &rows.org_id,
            &rows.occurred_at,
            &rows.event_type,
            &rows.initiator_id,
            &rows.resource_id,
            &rows.initiator_email,
            &rows.resource_email,
            &rows.record,
        ],
    )
    .await
    .context("writing to the audit read model")
}

/// The columns [`INSERT`] and [`COPY`] fill, in order, with their types.
const COPY: &str = "COPY records (position, org_id, occurred_at, event_type, initiator_id,
                                  resource_id, initiator_email, resource_email, record)
                    FROM STDIN (FORMAT binary)";
const COPY_TYPES: [Type; 9] = [
    Type::INT8,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::UUID,
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::JSON,
];

/// Streams the run's records into the table with [`COPY`] (see [`Insert::Copy`]).
async fn copy(
    tx: &deadpool_postgres::Transaction<'_>,
    changes: &[Change<'_>],
    record_of: impl Fn(&Change<'_>) -> AuditRecord,
) -> anyhow::Result<()> {
    let mut copy = BinaryCopy::start(tx, COPY, &COPY_TYPES)
        .await
        .context("starting to copy records into the audit read model")?;
    for change in changes {
        let record = record_of(change);
        let json = JsonText(serde_json::to_vec(&record).context("serialising an audit record")?);
        let resource = record.resource.id.unwrap_or(record.organization);
        copy.row(&[
            &record.position,
            &record.organization,
            &change.occurred_at,
            &record.event_type,
            &record.initiated_by.id,
            &resource,
            &record.initiated_by.email,
            &record.resource.email,
            &json,
        ])
        .await
        .context("copying records into the audit read model")?;
    }
    copy.finish()
        .await
        .context("copying records into the audit read model")?;
    Ok(())
}

/// The columns of a run of records, one array per column for [`INSERT`].
struct Rows {
    position: Vec<i64>,
    org_id: Vec<Uuid>,
    occurred_at: Vec<DateTime<Utc>>,
    event_type: Vec<String>,
    initiator_id: Vec<Option<Uuid>>,
    resource_id: Vec<Uuid>,
    initiator_email: Vec<Option<String>>,
    resource_email: Vec<Option<String>>,
    record: Vec<JsonText>,
}

impl Rows {
    fn with_capacity(n: usize) -> Rows {
        Rows {
            position: Vec::with_capacity(n),
            org_id: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            initiator_id: Vec::with_capacity(n),
            resource_id: Vec::with_capacity(n),
            initiator_email: Vec::with_capacity(n),
            resource_email: Vec::with_capacity(n),
            record: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, record: AuditRecord, occurred_at: DateTime<Utc>) -> anyhow::Result<()> {
        let json = JsonText(serde_json::to_vec(&record).context("serialising an audit record")?);
        self.position.push(record.position);
        self.org_id.push(record.organization);
        self.occurred_at.push(occurred_at);
        self.resource_id
            .push(record.resource.id.unwrap_or(record.organization));
        self.event_type.push(record.event_type);
        self.initiator_id.push(record.initiated_by.id);
        self.initiator_email.push(record.initiated_by.email);
        self.resource_email.push(record.resource.email);
        self.record.push(json);
        Ok(())
    }
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
