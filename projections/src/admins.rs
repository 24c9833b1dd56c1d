//! The `admins` read model (schema `proj_admins`): every live administrator with their MFA
//! facts, and per organisation its name, Global MFA Requirement and the counts the Home widget
//! shows. Queried by [`crate::query`].
//!
//! [`change`] is pure: it says what an event does to the model. [`statement`] does it in SQL. The
//! SQL is idempotent where it can be (a replayed create inserts nothing), but exactly-once is
//! the checkpoint's job, not this module's.

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use gatehouse_events::{Envelope, Event, RequirementSource};
use gatehouse_store::Statement;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The tables, indexes and checkpoint of the model, for any schema name.
pub const DDL: &str = include_str!("admins.sql");

/// What one event does to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    OrgCreated {
        org_id: Uuid,
        name: String,
    },
    GlobalMfa {
        org_id: Uuid,
        required: bool,
    },
    AdminCreated(NewAdmin),
    AdminRemoved {
        admin_id: Uuid,
    },
    MfaRequired {
        admin_id: Uuid,
        source: RequirementSource,
    },
    MfaRequirementRemoved {
        admin_id: Uuid,
    },
    Enrolled {
        admin_id: Uuid,
    },
    Locked {
        admin_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdmin {
    pub admin_id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: &'static str,
    pub created_at: DateTime<Utc>,
    pub mfa_required: bool,
}

/// The change an event makes, or `None` for events this model ignores.
pub fn change(envelope: &Envelope, event: &Event) -> anyhow::Result<Option<Change>> {
    Ok(Some(match event {
        Event::OrgCreated(e) => Change::OrgCreated {
            org_id: e.org_id,
            name: e.name.clone(),
        },
        Event::GlobalMfaEnabled(e) => Change::GlobalMfa {
            org_id: e.org_id,
            required: true,
        },
        Event::GlobalMfaDisabled(e) => Change::GlobalMfa {
            org_id: e.org_id,
            required: false,
        },
        Event::AdminCreated(e) => Change::AdminCreated(NewAdmin {
            admin_id: e.admin_id,
            org_id: envelope.orgid,
            email: e.email.clone(),
            first_name: e.first_name.clone(),
            last_name: e.last_name.clone(),
            role: e.role.as_str(),
            created_at: envelope.occurred_at().ok_or_else(|| {
                anyhow!(
                    "envelope {} has an unreadable time {:?}",
                    envelope.id,
                    envelope.time
                )
            })?,
            mfa_required: e.mfa_required,
        }),
        Event::AdminRemoved(e) => Change::AdminRemoved {
            admin_id: e.admin_id,
        },
        Event::MfaRequired(e) => Change::MfaRequired {
            admin_id: e.admin_id,
            source: e.source,
        },
        Event::MfaRequirementRemoved(e) => Change::MfaRequirementRemoved {
            admin_id: e.admin_id,
        },
        Event::MfaEnrollmentCompleted(e) => Change::Enrolled {
            admin_id: e.admin_id,
        },
        Event::MfaLocked(e) => Change::Locked {
            admin_id: e.admin_id,
        },
        _ => return Ok(None),
    }))
}

const ORG_CREATED: &str = "
    INSERT INTO orgs (org_id, name) VALUES ($1, $2)
    ON CONFLICT (org_id) DO UPDATE SET name = EXCLUDED.name";

const GLOBAL_MFA: &str = "UPDATE orgs SET global_mfa_required = $2 WHERE org_id = $1";

/// Inserts the admin and counts them in their organisation (creating its row if the admin
/// somehow came first; `org.created` then fills in the name).
const ADMIN_CREATED: &str = "
    WITH created AS (
        INSERT INTO admins (admin_id, org_id, email, first_name, last_name, role, created_at,
                            mfa_required, requirement_source)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8 THEN $9::text END)
        ON CONFLICT (admin_id) DO NOTHING
        RETURNING org_id, mfa_required
    )
    INSERT INTO orgs (org_id, name, admins, without_mfa_required)
    SELECT org_id, '', 1, CASE WHEN mfa_required THEN 0 ELSE 1 END FROM created
    ON CONFLICT (org_id) DO UPDATE
    SET admins = orgs.admins + EXCLUDED.admins,
        without_mfa_required = orgs.without_mfa_required + EXCLUDED.without_mfa_required";

const ADMIN_REMOVED: &str = "
    WITH removed AS (DELETE FROM admins WHERE admin_id = $1 RETURNING org_id, mfa_required)
    UPDATE orgs
    SET admins = orgs.admins - 1,
        without_mfa_required = orgs.without_mfa_required - CASE WHEN removed.mfa_required THEN 0 ELSE 1 END
    FROM removed WHERE orgs.org_id = removed.org_id";

/// Every sub-statement sees the row as it was before, so `before` is the old requirement.
const MFA_REQUIRED: &str = "
    WITH before AS (SELECT org_id, mfa_required FROM admins WHERE admin_id = $1),
         changed AS (UPDATE admins SET mfa_required = true, requirement_source = $2 WHERE admin_id = $1)
    UPDATE orgs SET without_mfa_required = orgs.without_mfa_required - 1
    FROM before WHERE orgs.org_id = before.org_id AND NOT before.mfa_required";

const MFA_REQUIREMENT_REMOVED: &str = "
    WITH before AS (SELECT org_id, mfa_required FROM admins WHERE admin_id = $1),
         changed AS (UPDATE admins SET mfa_required = false, requirement_source = NULL WHERE admin_id = $1)
    UPDATE orgs SET without_mfa_required = orgs.without_mfa_required + 1
    FROM before WHERE orgs.org_id = before.org_id AND before.mfa_required";

const ENROLLED: &str = "UPDATE admins SET enrolled = true, locked = false WHERE admin_id = $1";

const LOCKED: &str = "UPDATE admins SET locked = true WHERE admin_id = $1";

/// The statement that applies a change (run in the batch's transaction, whose `search_path`
/// names the schema).
pub fn statement(change: &Change) -> Statement {
    let (sql, params): (&'static str, Vec<Box<dyn ToSql + Sync + Send>>) = match change {
        Change::OrgCreated { org_id, name } => {
            (ORG_CREATED, vec![Box::new(*org_id), Box::new(name.clone())])
        }
        Change::GlobalMfa { org_id, required } => {
            (GLOBAL_MFA, vec![Box::new(*org_id), Box::new(*required)])
        }
        Change::AdminCreated(a) => (
            ADMIN_CREATED,
            vec![
                Box::new(a.admin_id),
                Box::new(a.org_id),
                Box::new(a.email.clone()),
                Box::new(a.first_name.clone()),
                Box::new(a.last_name.clone()),
                Box::new(a.role),
                Box::new(a.created_at),
                Box::new(a.mfa_required),
                Box::new(RequirementSource::Default.as_str()),
            ],
        ),
        Change::AdminRemoved { admin_id } => (ADMIN_REMOVED, vec![Box::new(*admin_id)]),
        Change::MfaRequired { admin_id, source } => (
            MFA_REQUIRED,
            vec![Box::new(*admin_id), Box::new(source.as_str())],
        ),
        Change::MfaRequirementRemoved { admin_id } => {
            (MFA_REQUIREMENT_REMOVED, vec![Box::new(*admin_id)])
        }
        Change::Enrolled { admin_id } => (ENROLLED, vec![Box::new(*admin_id)]),
        Change::Locked { admin_id } => (LOCKED, vec![Box::new(*admin_id)]),
    };
    Statement { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use gatehouse_events::envelope::EnvelopeParts;
    use gatehouse_events::types::{AdminCreated, LoginFailed, MfaRequired};
    use gatehouse_events::{Actor, Role};

    fn envelope(event: &Event, org: Uuid) -> Envelope {
        let parts = EnvelopeParts {
            id: Uuid::now_v7(),
            org_id: org,
            actor: Actor::System,
            correlation_id: Uuid::now_v7(),
            auth_method: None,
            time: Utc
                .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
                .single()
                .expect("a valid time"),
        };
        Envelope::new(&parts, event, 7, 1)
    }

    #[test]
    fn a_created_admin_takes_the_event_time_and_the_organisation_of_the_envelope() {
        let (org, admin) = (Uuid::now_v7(), Uuid::now_v7());
        let event = Event::AdminCreated(AdminCreated {
            admin_id: admin,
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            role: Role::HelpDesk,
            mfa_required: false,
        });
        let env = envelope(&event, org);
        let Some(Change::AdminCreated(new)) = change(&env, &event).expect("a readable envelope")
        else {
            panic!("admin.created creates an admin");
        };
        assert_eq!(new.org_id, org);
        assert_eq!(new.role, "help_desk");
        assert_eq!(Some(new.created_at), env.occurred_at());
        assert!(!new.mfa_required);
    }

    #[test]
    fn a_requirement_keeps_its_source() {
        let admin = Uuid::now_v7();
        let event = Event::MfaRequired(MfaRequired {
            admin_id: admin,
            source: RequirementSource::Global,
        });
        let got = change(&envelope(&event, Uuid::now_v7()), &event).expect("a readable envelope");
        assert_eq!(
            got,
            Some(Change::MfaRequired {
                admin_id: admin,
                source: RequirementSource::Global
            })
        );
    }

    #[test]
    fn login_events_do_not_touch_the_model() {
        let event = Event::LoginFailed(LoginFailed {
            admin_id: Uuid::now_v7(),
            reason: "invalid_password".into(),
            client_ip: "127.0.0.1".into(),
            user_agent: "test".into(),
        });
        assert_eq!(
            change(&envelope(&event, Uuid::now_v7()), &event).expect("readable"),
            None
        );
    }
}
