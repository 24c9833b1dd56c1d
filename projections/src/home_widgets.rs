//! The `home_widgets` read model (schema `proj_home_widgets`): whether each admin shows the
//! Admins Without MFA Required widget on their Home page. An admin without a row (not applied
//! yet, or removed) shows it, as new admins do.

use gatehouse_events::types::WIDGET_ADMINS_WITHOUT_MFA_REQUIRED;
use gatehouse_events::{Envelope, Event};
use gatehouse_store::Statement;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The tables and checkpoint of the model, for any schema name.
pub const DDL: &str = include_str!("home_widgets.sql");

/// What one event does to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new admin, with the widget shown.
    AdminCreated {
        admin_id: Uuid,
        org_id: Uuid,
    },
    AdminRemoved {
        admin_id: Uuid,
    },
    AdminsWithoutMfaRequiredVisible {
        admin_id: Uuid,
        org_id: Uuid,
        visible: bool,
    },
}

/// The change an event makes, or `None` for events this model ignores (including widgets it
/// does not know, which later versions may add).
pub fn change(envelope: &Envelope, event: &Event) -> anyhow::Result<Option<Change>> {
    Ok(match event {
        Event::AdminCreated(e) => Some(Change::AdminCreated {
            admin_id: e.admin_id,
            org_id: envelope.orgid,
        }),
        Event::AdminRemoved(e) => Some(Change::AdminRemoved {
            admin_id: e.admin_id,
        }),
        Event::HomeWidgetChanged(e) if e.widget == WIDGET_ADMINS_WITHOUT_MFA_REQUIRED => {
            Some(Change::AdminsWithoutMfaRequiredVisible {
                admin_id: e.admin_id,
                org_id: envelope.orgid,
                visible: e.visible,
            })
        }
        _ => None,
    })
}

const ADMIN_CREATED: &str = "
    INSERT INTO widgets (admin_id, org_id) VALUES ($1, $2) ON CONFLICT (admin_id) DO NOTHING";

const ADMIN_REMOVED: &str = "DELETE FROM widgets WHERE admin_id = $1";

const VISIBLE: &str = "
    INSERT INTO widgets (admin_id, org_id, admins_without_mfa_required_visible) VALUES ($1, $2, $3)
    ON CONFLICT (admin_id) DO UPDATE
    SET admins_without_mfa_required_visible = EXCLUDED.admins_without_mfa_required_visible";

/// The statement that applies a change (run in the batch's transaction, whose `search_path`
/// names the schema).
pub fn statement(change: &Change) -> Statement {
    let (sql, params): (&'static str, Vec<Box<dyn ToSql + Sync + Send>>) = match change {
        Change::AdminCreated { admin_id, org_id } => {
            (ADMIN_CREATED, vec![Box::new(*admin_id), Box::new(*org_id)])
        }
        Change::AdminRemoved { admin_id } => (ADMIN_REMOVED, vec![Box::new(*admin_id)]),
        Change::AdminsWithoutMfaRequiredVisible {
            admin_id,
            org_id,
            visible,
        } => (
            VISIBLE,
            vec![Box::new(*admin_id), Box::new(*org_id), Box::new(*visible)],
        ),
    };
    Statement { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use gatehouse_events::Actor;
    use gatehouse_events::envelope::EnvelopeParts;
    use gatehouse_events::types::HomeWidgetChanged;

    fn envelope(event: &Event, org: Uuid) -> Envelope {
        let parts = EnvelopeParts {
            id: Uuid::now_v7(),
            org_id: org,
            actor: Actor::System,
            correlation_id: Uuid::now_v7(),
            auth_method: None,
            time: Utc::now(),
        };
        Envelope::new(&parts, event, 1, 1)
    }

    fn widget_changed(widget: &str, visible: bool) -> Event {
        Event::HomeWidgetChanged(HomeWidgetChanged {
            admin_id: Uuid::nil(),
            widget: widget.into(),
            visible,
        })
    }

    #[test]
    fn hiding_the_widget_is_recorded_with_the_admins_organisation() {
        let org = Uuid::now_v7();
        let event = widget_changed(WIDGET_ADMINS_WITHOUT_MFA_REQUIRED, false);
        assert_eq!(
            change(&envelope(&event, org), &event).expect("readable"),
            Some(Change::AdminsWithoutMfaRequiredVisible {
                admin_id: Uuid::nil(),
                org_id: org,
                visible: false
            })
        );
    }

    #[test]
    fn widgets_this_model_does_not_know_are_ignored() {
        let event = widget_changed("weather", false);
        assert_eq!(
            change(&envelope(&event, Uuid::now_v7()), &event).expect("readable"),
            None
        );
    }
}
