//! Which email an event calls for, decided from the event and the admin's state before it.
//! Pure: the current time is an argument.

use chrono::{DateTime, Duration, Utc};
use gatehouse_domain::AdminState;
use gatehouse_events::Event;
use uuid::Uuid;

/// How long a Set Up MFA link sent because MFA became required stays valid, from the event.
pub const REQUIREMENT_LINK_LIFETIME: Duration = Duration::hours(1);

/// A confirmation for an event older than this is not sent: the news is stale (e.g. a mailer
/// deployed for the first time reads the whole history of the stream).
pub const CONFIRMATION_STALE_AFTER: Duration = Duration::hours(24);

/// The kinds of email, as the ledger (`mail_deliveries.kind`) names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// A Set Up MFA link.
    Setup,
    /// "TOTP MFA reset was successful".
    ResetConfirmation,
}

impl MailKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            MailKind::Setup => "setup",
            MailKind::ResetConfirmation => "reset_confirmation",
        }
    }
}

/// Why a Set Up MFA email is sent (it changes the wording, not the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupReason {
    /// MFA became required and the admin is not enrolled.
    Required,
    /// The admin asked from the Verify Your Identity page (or by address).
    ResetBySelf,
    /// Another administrator reset the admin's MFA.
    ResetByAdmin,
}

/// An email an event calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Setup {
        admin_id: Uuid,
        reason: SetupReason,
        expires_at: DateTime<Utc>,
    },
    ResetConfirmation {
        admin_id: Uuid,
        replaced_previous: bool,
    },
}

impl Intent {
    pub fn kind(&self) -> MailKind {
        match self {
            Intent::Setup { .. } => MailKind::Setup,
            Intent::ResetConfirmation { .. } => MailKind::ResetConfirmation,
        }
    }

    pub fn admin_id(&self) -> Uuid {
        match self {
            Intent::Setup { admin_id, .. } | Intent::ResetConfirmation { admin_id, .. } => {
                *admin_id
            }
        }
    }

    /// Why the email must not be sent any more at `now`, if so.
    pub fn stale_at(&self, occurred_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<SkipReason> {
        match self {
            Intent::Setup { expires_at, .. } if *expires_at <= now => Some(SkipReason::LinkExpired),
            Intent::ResetConfirmation { .. } if now - occurred_at > CONFIRMATION_STALE_AFTER => {
                Some(SkipReason::Stale)
            }
            _ => None,
        }
    }
}

/// Why an email that an event called for was not sent (the ledger's `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The link would be dead on arrival.
    LinkExpired,
    /// A confirmation for an old event.
    Stale,
    /// The admin has no live credentials row (removed), or its address cannot be mailed.
    NoRecipient,
    /// More Set Up MFA emails for this admin in the last hour than [`crate::ledger::SETUP_EMAILS_PER_HOUR`].
    RateLimited,
}

impl SkipReason {
    const ALL: [SkipReason; 4] = [
        SkipReason::LinkExpired,
        SkipReason::Stale,
        SkipReason::NoRecipient,
        SkipReason::RateLimited,
    ];

    /// The reason the ledger names `s`.
    pub fn parse(s: &str) -> Option<SkipReason> {
        SkipReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The ledger's name for the reason. `mail_claim` (migration V7) writes two of them itself,
    /// "no recipient" and "rate limited"; [`crate::ledger::claim`] parses them back.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::LinkExpired => "link expired",
            SkipReason::Stale => "stale event",
            SkipReason::NoRecipient => "no recipient",
            SkipReason::RateLimited => "rate limited",
        }
    }
}

/// The email `event` (which happened at `at`) calls for, given the admin's state before it.
pub fn intent(event: &Event, at: DateTime<Utc>, before: &AdminState) -> Option<Intent> {
    match event {
        // A new admin is never enrolled.
        Event::AdminCreated(e) if e.mfa_required => Some(Intent::Setup {
            admin_id: e.admin_id,
            reason: SetupReason::Required,
            expires_at: at + REQUIREMENT_LINK_LIFETIME,
        }),
        Event::MfaRequired(e) if !before.enrolled => Some(Intent::Setup {
            admin_id: e.admin_id,
            reason: SetupReason::Required,
            expires_at: at + REQUIREMENT_LINK_LIFETIME,
        }),
        Event::MfaResetRequested(e) => Some(Intent::Setup {
            admin_id: e.admin_id,
            reason: if e.requested_by_self {
                SetupReason::ResetBySelf
            } else {
                SetupReason::ResetByAdmin
            },
            expires_at: e.expires_at,
        }),
        Event::MfaEnrollmentCompleted(e) => Some(Intent::ResetConfirmation {
            admin_id: e.admin_id,
            replaced_previous: e.replaced_previous,
        }),
        _ => None,
    }
}

/// Whether the mailer has anything to do with events of this type (so others are acknowledged
/// without reading the store).
pub fn concerns(event: &Event) -> bool {
    matches!(
        event,
        Event::AdminCreated(_)
            | Event::MfaRequired(_)
            | Event::MfaResetRequested(_)
            | Event::MfaEnrollmentCompleted(_)
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use gatehouse_domain::{AdminId, OrgId};
    use gatehouse_events::types::{
        AdminCreated, AdminRef, MfaEnrollmentCompleted, MfaRequired, MfaResetRequested,
    };
    use gatehouse_events::{RequirementSource, Role};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn admin() -> AdminState {
        AdminState::absent(AdminId(Uuid::nil()), OrgId(Uuid::nil()))
    }

    fn created(mfa_required: bool) -> Event {
        Event::AdminCreated(AdminCreated {
            admin_id: Uuid::nil(),
            email: "ada@example.com".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            role: Role::Administrator,
            mfa_required,
        })
    }

    fn required() -> Event {
        Event::MfaRequired(MfaRequired {
            admin_id: Uuid::nil(),
            source: RequirementSource::Admin,
        })
    }

    fn enrolled() -> Event {
        Event::MfaEnrollmentCompleted(MfaEnrollmentCompleted {
            admin_id: Uuid::nil(),
            method: "totp".into(),
            replaced_previous: false,
        })
    }

    #[test]
    fn a_new_admin_with_mfa_required_gets_a_link_valid_for_an_hour() {
        let intent = intent(&created(true), t0(), &admin());
        assert_eq!(
            intent,
            Some(Intent::Setup {
                admin_id: Uuid::nil(),
                reason: SetupReason::Required,
                expires_at: t0() + Duration::hours(1),
            })
        );
    }

    #[test]
    fn a_new_admin_without_mfa_gets_nothing() {
        assert_eq!(intent(&created(false), t0(), &admin()), None);
    }

    #[test]
    fn requiring_mfa_of_an_enrolled_admin_sends_nothing() {
        let before = admin()
            .evolve(&created(false), t0())
            .evolve(&enrolled(), t0());
        assert_eq!(intent(&required(), t0(), &before), None);
        let not_enrolled = admin().evolve(&created(false), t0());
        assert!(matches!(
            intent(&required(), t0(), &not_enrolled),
            Some(Intent::Setup { .. })
        ));
    }

    #[test]
    fn a_reset_request_links_until_its_own_expiry() {
        let expires_at = t0() + Duration::minutes(60);
        let event = Event::MfaResetRequested(MfaResetRequested {
            admin_id: Uuid::nil(),
            requested_by_self: true,
            expires_at,
        });
        let intent = intent(&event, t0(), &admin()).expect("an email");
        assert_eq!(
            intent,
            Intent::Setup {
                admin_id: Uuid::nil(),
                reason: SetupReason::ResetBySelf,
                expires_at,
            }
        );
        assert_eq!(intent.stale_at(t0(), t0() + Duration::minutes(59)), None);
        assert_eq!(
            intent.stale_at(t0(), expires_at),
            Some(SkipReason::LinkExpired)
        );
    }

    #[test]
    fn enrollment_confirmations_go_stale_after_a_day() {
        let intent = intent(&enrolled(), t0(), &admin()).expect("an email");
        assert_eq!(intent.kind(), MailKind::ResetConfirmation);
        assert_eq!(intent.stale_at(t0(), t0() + Duration::hours(23)), None);
        assert_eq!(
            intent.stale_at(t0(), t0() + Duration::hours(25)),
            Some(SkipReason::Stale)
        );
    }

    #[test]
    fn other_events_call_for_nothing() {
        let removed = Event::AdminRemoved(AdminRef {
            admin_id: Uuid::nil(),
        });
        assert!(!concerns(&removed));
        assert_eq!(intent(&removed, t0(), &admin()), None);
    }
}
