//! Getting in: the password step, Verify Your Identity, Set Up MFA requests and enrollment.
//!
//! Secrets are checked here, before the pure deciders of `gatehouse_domain::login` turn the
//! verdicts into events: passwords with argon2id off the runtime, TOTP codes against the
//! factor's sealed secret and its last accepted step. Session rows, factor rows and link rows
//! are written in the same transaction as the events, with the admin's stream version
//! expected, so two racing requests (the same code twice, the same link twice) cannot both win:
//! the loser decides again on fresh rows and is refused.

use chrono::{DateTime, Utc};
use gatehouse_auth::factor::{self, Link};
use gatehouse_auth::secretbox::SecretKey;
use gatehouse_auth::session::{self, Session, Stage};
use gatehouse_auth::totp::{self, TotpSecret};
use gatehouse_auth::{link_token, principal, throttle};
use gatehouse_domain::login::{self as rules, Client, CodeOutcome, PasswordOutcome};
use gatehouse_domain::{AdminId, OrgId};

use crate::load;
use crate::service::{Commands, Origin, Outcome, Plan};
use crate::{CommandContext, CommandError};

/// A session that was just opened or promoted: its cookie value and CSRF token (to hand to the
/// client once) and where the login stands.
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub outcome: PasswordOutcome,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// What `POST /mfa/setup` shows: the new secret, once.
pub struct SetupOffer {
    pub otpauth_uri: String,
    pub secret: String,
    pub qr_png_base64: String,
}

/// `gatehouse_logins_total{outcome}`: password steps by outcome (for alerting on guessing).
fn count_login(outcome: &'static str) {
    metrics::counter!("gatehouse_logins_total", "outcome" => outcome).increment(1);
}

/// `gatehouse_mfa_codes_total{outcome}`: Verify Your Identity codes by outcome (lockouts included).
fn count_code(outcome: &'static str) {
    metrics::counter!("gatehouse_mfa_codes_total", "outcome" => outcome).increment(1);
}

/// Events of a login and of Verify Your Identity happen in a session.
const SESSION: Option<&str> = Some(gatehouse_domain::login::AUTH_SESSION);

fn seconds(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

fn open_secret(key: &SecretKey, sealed: &[u8], admin: AdminId) -> Result<TotpSecret, CommandError> {
    key.open(sealed, admin.0.as_bytes())
        .map(TotpSecret::from_bytes)
        .map_err(|e| {
            CommandError::Internal(anyhow::anyhow!(
                "a TOTP secret does not open with GATEHOUSE_SECRET_KEY: {e}"
            ))
        })
}

impl Commands {
    /// Refuses while the account or the address is throttled.
    async fn not_throttled(&self, email: &str, client: &Client) -> Result<(), CommandError> {
        match throttle::blocked_for(&self.db, email, &client.ip).await? {
            Some(wait) => Err(CommandError::Throttled {
                retry_after_secs: wait.as_secs().max(1),
            }),
            None => Ok(()),
        }
    }

    /// Checks `password` for the live admin with `email`; an unknown email costs the same and
    /// answers the same. Failures are throttled, and recorded as `login_failed` for known admins
    /// when `record_failure` is set.
    async fn check_password(
        &self,
        email: &str,
        password: String,
        client: &Client,
        expected_admin: Option<AdminId>,
        record_failure: bool,
    ) -> Result<principal::StoredCredentials, CommandError> {
        let email = email.trim().to_lowercase();
        self.not_throttled(&email, client).await?;
        let stored = principal::by_email(&self.db, &email)
            .await?
            .filter(|c| expected_admin.is_none_or(|id| c.admin_id == id));
        let hash = stored.as_ref().and_then(|c| c.password_hash.clone());
        if self.passwords.verify(password, hash).await? {
            throttle::clear_account(&self.db, &email).await?;
            if let Some(stored) = stored {
                return Ok(stored);
            }
        }
        throttle::record_failure(&self.db, &email, &client.ip).await?;
        if let (Some(stored), true) = (stored, record_failure) {
            self.record_password_failure(&stored, client).await?;
        }
        Err(CommandError::InvalidCredentials)
    }

    async fn record_password_failure(
        &self,
        stored: &principal::StoredCredentials,
        client: &Client,
    ) -> Result<(), CommandError> {
        let (admin, org) = (stored.admin_id, stored.org_id);
        self.execute(
            "login",
            org,
            Origin::admin(admin, SESSION),
            move |_| async move {
                let loaded = load::admin(&self.db, &self.kept, org, admin).await?;
                let events = rules::password_refused(&loaded.state, client)?;
                Ok(Plan::new(events, ()).expect(admin.0, &loaded))
            },
        )
        .await?;
        Ok(())
    }

    /// `POST /auth/login`: checks the password and opens a session, authenticated at once when
    /// no MFA applies, else pending until Verify Your Identity.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<Outcome<NewSession>, CommandError> {
        let stored = match self
            .check_password(email, password, client, None, true)
            .await
        {
            Ok(stored) => stored,
            Err(e) => {
                count_login(match &e {
                    CommandError::Throttled { .. } => "throttled",
                    CommandError::InvalidCredentials => "invalid_password",
                    _ => "error",
                });
                return Err(e);
            }
        };
        let (admin, org) = (stored.admin_id, stored.org_id);
        let token = link_token::generate()?;
        let csrf = link_token::generate()?.plaintext;
        let (token_hash, csrf_ref) = (&token.hash, &csrf);
        let outcome = self
            .execute(
                "login",
                org,
                Origin::admin(admin, SESSION),
                move |_| async move {
                    let loaded = load::admin(&self.db, &self.kept, org, admin).await?;
                    let (events, outcome) = rules::password_accepted(&loaded.state, client)?;
                    let stage = match outcome {
                        PasswordOutcome::Authenticated => Stage::Active,
                        PasswordOutcome::MfaPending { .. } => Stage::Pending,
                    };
                    let mut plan = Plan::new(events, outcome).expect(admin.0, &loaded);
                    plan.statements = vec![session::insert(
                        token_hash.clone(),
                        admin,
                        org,
                        stage,
                        csrf_ref.clone(),
                        client.ip.clone(),
                        client.user_agent.clone(),
                    )];
                    Ok(plan)
                },
            )
            .await?;
        count_login(match outcome.value {
            PasswordOutcome::Authenticated => "authenticated",
            PasswordOutcome::MfaPending { .. } => "mfa_pending",
        });
        Ok(Outcome {
            position: outcome.position,
            value: NewSession {
                token: token.plaintext,
                csrf_token: csrf,
                outcome: outcome.value,
            },
        })
    }

    /// `POST /auth/mfa`: Verify Your Identity. On success the pending session becomes active
    /// under a new token (returned); a wrong or reused code is refused, the fifth in a row locks.
    pub async fn verify_code(
        &self,
        session: &Session,
        code: &str,
        client: &Client,
    ) -> Result<Outcome<String>, CommandError> {
        let (admin, org) = (session.admin_id, session.org_id);
        let new_token = link_token::generate()?;
        let new_hash = &new_token.hash;
        let outcome = self
            .execute(
                "verify_mfa",
                org,
                Origin::admin(admin, SESSION),
                move |now| async move {
                    let loaded = load::admin(&self.db, &self.kept, org, admin).await?;
                    let step = match factor::load(&self.db, admin).await? {
                        Some(f) => {
                            let secret = open_secret(&self.secret_key, &f.secret_sealed, admin)?;
                            totp::verify(&secret, code.trim(), seconds(now), f.last_step)
                        }
                        None => None,
                    };
                    let (events, outcome) =
                        rules::code_checked(&loaded.state, step.is_some(), client)?;
                    let mut plan = Plan::new(events, outcome).expect(admin.0, &loaded);
                    if let (CodeOutcome::Accepted, Some(step)) = (outcome, step) {
                        plan.statements = vec![
                            factor::accept_step(admin, step),
                            session::activate(session.token_hash.clone(), new_hash.clone()),
                        ];
                    }
                    Ok(plan)
                },
            )
            .await?;
        count_code(match outcome.value {
            CodeOutcome::Accepted => "accepted",
            CodeOutcome::Refused { locked_now: false } => "invalid_code",
            CodeOutcome::Refused { locked_now: true } => "locked_now",
            CodeOutcome::Locked => "locked",
        });
        match outcome.value {
            CodeOutcome::Accepted => Ok(Outcome {
                position: outcome.position,
                value: new_token.plaintext,
            }),
            CodeOutcome::Refused { locked_now: false } => Err(CommandError::InvalidCode),
            CodeOutcome::Refused { locked_now: true } | CodeOutcome::Locked => {
                Err(gatehouse_domain::DomainError::MfaLocked.into())
            }
        }
    }

    /// An admin asks for their own Set Up MFA email: from Verify Your Identity (`via_session`)
    /// or by address on the login page.
    pub async fn request_own_mfa_reset(
        &self,
        admin: AdminId,
        org: OrgId,
        via_session: bool,
    ) -> Result<Outcome<()>, CommandError> {
        let auth_method = if via_session { SESSION } else { None };
        self.execute(
            "request_mfa_reset",
            org,
            Origin::admin(admin, auth_method),
            move |now| async move {
                let loaded = load::admin(&self.db, &self.kept, org, admin).await?;
                let events = rules::request_mfa_reset(None, &loaded.state, now)?;
                Ok(Plan::new(events, ()).expect(admin.0, &loaded))
            },
        )
        .await
    }

    /// The login page's "email me a Set Up MFA link": nothing happens for an address that names
    /// no live admin, and the caller cannot tell (the route answers before this runs).
    pub async fn request_mfa_reset_by_email(&self, email: &str) -> Result<(), CommandError> {
        let email = email.trim().to_lowercase();
        if let Some(stored) = principal::by_email(&self.db, &email).await? {
            self.request_own_mfa_reset(stored.admin_id, stored.org_id, false)
                .await?;
        }
        Ok(())
    }

    /// `POST /admins/{id}/mfa/reset`: another admin sends `target` a Set Up MFA email.
    pub async fn request_mfa_reset(
        &self,
        ctx: &CommandContext,
        target: AdminId,
    ) -> Result<Outcome<()>, CommandError> {
        let org = ctx.principal.org_id;
        self.execute(
            "request_mfa_reset",
            org,
            Origin::of(ctx),
            move |now| async move {
                let actor = self.actor(ctx).await?;
                let loaded = load::admin(&self.db, &self.kept, org, target).await?;
                let events = rules::request_mfa_reset(Some(&actor.state), &loaded.state, now)?;
                Ok(Plan::new(events, ()).expect(target.0, &loaded))
            },
        )
        .await
    }

    /// The live link a token names, or `LinkGone`.
    async fn live_link(&self, token: &str) -> Result<(Vec<u8>, Link), CommandError> {
        if !link_token::well_formed(token) {
            return Err(CommandError::LinkGone);
        }
        let hash = link_token::hash(token);
        match factor::find_link(&self.db, &hash).await? {
            Some(link) if link.is_live(Utc::now()) => Ok((hash, link)),
            _ => Err(CommandError::LinkGone),
        }
    }

    /// `POST /mfa/setup`: the link's admin proves email and password again and is offered a
    /// new secret (kept sealed on the link until a code confirms it).
    pub async fn start_mfa_setup(
        &self,
        token: &str,
        email: &str,
        password: String,
        client: &Client,
    ) -> Result<Outcome<SetupOffer>, CommandError> {
        let (hash, link) = self.live_link(token).await?;
        let stored = self
            .check_password(email, password, client, Some(link.admin_id), false)
            .await?;
        let (admin, org) = (link.admin_id, link.org_id);
        let secret = TotpSecret::generate()?;
        let sealed = self
            .secret_key
            .seal(secret.as_bytes(), admin.0.as_bytes())?;
        let offer = SetupOffer {
            otpauth_uri: totp::otpauth_uri(&secret, &stored.email)?,
            secret: secret.base32(),
            qr_png_base64: totp::qr_png_base64(&secret, &stored.email)?,
        };
        let (hash, sealed) = (&hash, &sealed);
        let outcome = self
            .execute(
                "start_mfa_enrollment",
                org,
                Origin::admin(admin, None),
                move |now| async move {
                    match factor::find_link(&self.db, hash).await? {
                        Some(link) if link.is_live(now) => {}
                        _ => return Err(CommandError::LinkGone),
                    }
                    let loaded = load::admin(&self.db, &self.kept, org, admin).await?;
                    let events = rules::start_enrollment(&loaded.state)?;
                    let mut plan = Plan::new(events, ()).expect(admin.0, &loaded);
                    plan.statements = vec![factor::offer_secret(hash.clone(), sealed.clone())];
                    Ok(plan)
                },
            )
            .await?;
        Ok(Outcome {
            position: outcome.position,
            value: offer,
        })
    }

    /// `POST /mfa/setup/complete`: a valid code for the offered secret makes it the admin's
    /// factor, clears the lockout, spends the admin's links and ends all their sessions.
    pub async fn complete_mfa_setup(
        &self,
        token: &str,
        code: &str,
    ) -> Result<Outcome<()>, CommandError> {
        let (hash, link) = self.live_link(token).await?;
        let (admin, org) = (link.admin_id, link.org_id);
        let hash = &hash;
        self.execute(
            "complete_mfa_enrollment",
            org,
            Origin::admin(admin, None),
            move |now| async move {
                let link = match factor::find_link(&self.db, hash).await? {
                    Some(link) if link.is_live(now) => link,
                    _ => return Err(CommandError::LinkGone),
                };
                let sealed = link
                    .pending_secret_sealed
                    .ok_or(CommandError::SetupNotStarted)?;
                let secret = open_secret(&self.secret_key, &sealed, admin)?;
                let step = totp::verify(&secret, code.trim(), seconds(now), 0)
                    .ok_or(CommandError::InvalidCode)?;
                let loaded = load::admin(&self.db, &self.kept, org, admin).await?;
                let events = rules::complete_enrollment(&loaded.state)?;
                let mut plan = Plan::new(events, ()).expect(admin.0, &loaded);
                plan.statements = vec![
                    factor::replace(admin, org, sealed, step),
                    factor::spend_links(admin),
                    session::revoke_all(admin),
                ];
                Ok(plan)
            },
        )
        .await
    }
}
