//! One method per command. Each reads what its decider needs, decides, and appends with the
//! versions it read as expectations; a conflict means a concurrent change won, so it reads and
//! decides again (up to [`MAX_ATTEMPTS`] times). Setting one admin's MFA requirement, the hot
//! command, first decides on the states the process keeps, unread, and reads only if the append
//! refuses them.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use gatehouse_auth::secretbox::SecretKey;
use gatehouse_auth::{ApiKeyCache, Passwords, password, rows};
use gatehouse_domain::decide::{self, BulkRequireMfa, NewAdmin};
use gatehouse_domain::policy;
use gatehouse_domain::{AdminId, AdminState, DomainError, OrgId, OrgName, OrgState, Role};
use gatehouse_events::{Actor, Event};
use gatehouse_store::read::StreamKind;
use gatehouse_store::{AppendError, AppendRequest, Db, Expected, GroupAppender, Statement};
use uuid::Uuid;

use crate::load::{self, Loaded};
use crate::{CommandContext, CommandError};

/// How often a command is decided again after losing a race before it answers 409.
pub const MAX_ATTEMPTS: usize = 25;

/// A command's answer and the global position of its last event (or of the store head when it
/// changed nothing), for read-your-writes.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    pub value: T,
    pub position: i64,
}

/// What a decision wants written.
pub(crate) struct Plan<T> {
    pub(crate) events: Vec<Event>,
    pub(crate) expected: Vec<(Uuid, Expected)>,
    pub(crate) org_position: Option<i64>,
    pub(crate) statements: Vec<Statement>,
    pub(crate) value: T,
}

impl<T> Plan<T> {
    pub(crate) fn new(events: Vec<Event>, value: T) -> Plan<T> {
        Plan {
            events,
            expected: vec![],
            org_position: None,
            statements: vec![],
            value,
        }
    }

    pub(crate) fn expect<S>(mut self, stream: Uuid, loaded: &Loaded<S>) -> Plan<T> {
        self.expected.push((stream, loaded.expected()));
        self
    }
}

/// Who a command's events are attributed to, how they authenticated, and the id tying them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) actor: Actor,
    pub(crate) correlation_id: Uuid,
    pub(crate) auth_method: Option<&'static str>,
}

impl Origin {
    /// An administrator's request, with their authentication method.
    pub(crate) fn of(ctx: &CommandContext) -> Origin {
        Origin {
            actor: Actor::Admin(ctx.principal.admin_id.0),
            correlation_id: ctx.correlation_id,
            auth_method: Some(ctx.principal.auth_method.as_str()),
        }
    }

    /// Gatehouse itself (the command line).
    pub(crate) fn system() -> Origin {
        Origin {
            actor: Actor::System,
            correlation_id: Uuid::now_v7(),
            auth_method: None,
        }
    }

    /// An administrator acting on their own account outside a session or API key (logging in,
    /// the Set Up MFA link), or from a session (`auth_method` `session`).
    pub(crate) fn admin(admin: AdminId, auth_method: Option<&'static str>) -> Origin {
        Origin {
            actor: Actor::Admin(admin.0),
            correlation_id: Uuid::now_v7(),
            auth_method,
        }
    }
}

/// The command service.
#[derive(Clone)]
pub struct Commands {
    pub(crate) db: Db,
    pub(crate) passwords: Passwords,
    /// Seals TOTP secrets at rest (`GATEHOUSE_SECRET_KEY`).
    pub(crate) secret_key: Arc<SecretKey>,
    /// Admins' and organisations' folded states, so a command reads only what a stream gained
    /// since, or nothing when it may decide on them (see [`Commands::set_mfa_requirement`]).
    pub(crate) kept: Arc<load::Kept>,
    /// Appends with the other commands in flight: one transaction and one flush per group.
    pub(crate) appender: GroupAppender,
    /// The principals of API keys this process has seen, emptied here as soon as a command of
    /// this process revokes a key or removes an admin (other processes learn it from Postgres).
    pub(crate) api_keys: ApiKeyCache,
}

/// Whether appending `events` may have ended an API key: a revocation, or its holder's removal.
fn ends_api_keys(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::ApiKeyRevoked(_) | Event::AdminRemoved(_)))
}

fn fold_admin(state: &AdminState, events: &[Event], at: DateTime<Utc>) -> AdminState {
    events
        .iter()
        .filter(|e| e.stream_id() == state.id.0)
        .fold(state.clone(), |s, e| s.evolve(e, at))
}

impl Commands {
    pub fn new(db: Db, passwords: Passwords, secret_key: SecretKey) -> Commands {
        Commands {
            appender: GroupAppender::new(db.clone()),
            api_keys: ApiKeyCache::new(db.clone()),
            db,
            passwords,
            secret_key: Arc::new(secret_key),
            kept: Arc::new(load::Kept::default()),
        }
    }

    /// The cache through which requests find who an API key belongs to.
    pub fn api_keys(&self) -> &ApiKeyCache {
        &self.api_keys
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// Runs `decide` and appends its plan, deciding again on a concurrency conflict. `decide` is
    /// a plain closure returning a future (not an `async` closure) so that the command's future
    /// is `Send` and handlers can await it on any runtime thread.
    pub(crate) async fn execute<T, F, Fut>(
        &self,
        name: &'static str,
        org: OrgId,
        origin: Origin,
        mut decide: F,
    ) -> Result<Outcome<T>, CommandError>
    where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: Future<Output = Result<Plan<T>, CommandError>>,
    {
        let started = Instant::now();
        let result = self.attempts(org, origin, &mut decide).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_refusal() => "refused",
            Err(CommandError::Conflict) => "conflict",
            Err(CommandError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        metrics::counter!("gatehouse_commands_total", "command" => name, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("gatehouse_command_duration_seconds", "command" => name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn attempts<T, F, Fut>(
        &self,
        org: OrgId,
        origin: Origin,
        decide: &mut F,
    ) -> Result<Outcome<T>, CommandError>
    where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: Future<Output = Result<Plan<T>, CommandError>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            // One time per attempt: the events' time and the state answered agree.
            let now = Utc::now();
            let plan = decide(now).await?;
            if plan.events.is_empty() && plan.statements.is_empty() {
                let position = self.db.head().await?;
                return Ok(Outcome {
                    value: plan.value,
                    position,
                });
            }
            let count = plan.events.len() as u64;
            let ends_keys = ends_api_keys(&plan.events);
            let request = AppendRequest {
                org_id: org.0,
                actor: origin.actor,
                correlation_id: origin.correlation_id,
                time: now,
                auth_method: origin.auth_method,
                events: plan.events,
                expected: plan.expected,
                org_position: plan.org_position,
                statements: plan.statements,
            };
            match self.appender.append(request).await {
                Ok(appended) => {
                    metrics::counter!("gatehouse_events_appended_total").increment(count);
                    self.kept.advance(&appended.envelopes);
                    if ends_keys {
                        self.api_keys.forget_all();
                    }
                    let position = match appended.last_position() {
                        Some(p) => p,
                        None => self.db.head().await?,
                    };
                    return Ok(Outcome {
                        value: plan.value,
                        position,
                    });
                }
                Err(AppendError::Conflict) => continue,
                Err(AppendError::Unique(c)) if c == rows::EMAIL_CONSTRAINT => {
                    return Err(CommandError::EmailTaken);
                }
                Err(AppendError::Unique(c)) => {
                    return Err(CommandError::Internal(anyhow::anyhow!(
                        "unexpected unique violation on {c}"
                    )));
                }
                Err(AppendError::Other(e)) => {
                    // The append may have committed (its answer lost with the connection).
                    if ends_keys {
                        self.api_keys.forget_all();
                    }
                    return Err(e.into());
                }
            }
        }
        Err(CommandError::Conflict)
    }

    pub(crate) async fn actor(
        &self,
        ctx: &CommandContext,
    ) -> Result<Loaded<AdminState>, CommandError> {
        Ok(load::admin(
            &self.db,
            &self.kept,
            ctx.principal.org_id,
            ctx.principal.admin_id,
        )
        .await?)
    }

    /// Creates an organisation and its owner (from the command line: the actor is the system).
    pub async fn create_org(
        &self,
        name: &str,
        owner: NewAdmin,
        password: String,
    ) -> Result<Outcome<(OrgId, AdminId)>, CommandError> {
        let name = OrgName::parse(name)?;
        password::check_policy(&password, owner.email.as_str())
            .map_err(|e| DomainError::invalid("password", &e.to_string()))?;
        let hash = self.passwords.hash(password).await?;
        let org_id = OrgId::generate();
        let owner_id = owner.id;
        let (name, owner, hash) = (&name, &owner, &hash);
        self.execute(
            "create_org",
            org_id,
            Origin::system(),
            move |_| async move {
                let events = decide::create_org(&OrgState::default(), org_id, name.clone(), owner)?;
                let mut plan = Plan::new(events, (org_id, owner_id));
                plan.expected = vec![
                    (org_id.0, Expected::NoStream),
                    (owner_id.0, Expected::NoStream),
                ];
                plan.statements = vec![rows::insert_admin(
                    owner_id,
                    org_id,
                    &owner.email,
                    Role::AdministratorWithBilling,
                    Some(hash.clone()),
                )];
                Ok(plan)
            },
        )
        .await
    }

    /// Creates an administrator in the caller's organisation.
    pub async fn create_admin(
        &self,
        ctx: &CommandContext,
        admin: NewAdmin,
        password: String,
    ) -> Result<Outcome<AdminState>, CommandError> {
        // Cheap refusals first: hashing costs CPU, so only authorised, valid requests pay for it.
        if !policy::can_manage_admins(ctx.principal.role) {
            return Err(DomainError::Forbidden.into());
        }
        password::check_policy(&password, admin.email.as_str())
            .map_err(|e| DomainError::invalid("password", &e.to_string()))?;
        let hash = self.passwords.hash(password).await?;
        let org_id = ctx.principal.org_id;
        let (admin, hash) = (&admin, &hash);
        self.execute(
            "create_admin",
            org_id,
            Origin::of(ctx),
            move |now| async move {
                let actor = self.actor(ctx).await?;
                let org = load::org(&self.db, &self.kept, org_id).await?;
                let existing = load::admin(&self.db, &self.kept, org_id, admin.id).await?;
                let events =
                    decide::create_admin(&actor.state, &org.state, &existing.state, admin)?;
                let state = fold_admin(&existing.state, &events, now);
                let mut plan = Plan::new(events, state)
                    .expect(ctx.principal.admin_id.0, &actor)
                    .expect(org_id.0, &org)
                    .expect(admin.id.0, &existing);
                plan.statements = vec![rows::insert_admin(
                    admin.id,
                    org_id,
                    &admin.email,
                    admin.role,
                    Some(hash.clone()),
                )];
                Ok(plan)
            },
        )
        .await
    }

    /// Removes an administrator, their email claim and their API keys.
    pub async fn remove_admin(
        &self,
        ctx: &CommandContext,
        target: AdminId,
    ) -> Result<Outcome<()>, CommandError> {
        let org_id = ctx.principal.org_id;
        self.execute(
            "remove_admin",
            org_id,
            Origin::of(ctx),
            move |_| async move {
                let actor = self.actor(ctx).await?;
                let loaded = load::admin(&self.db, &self.kept, org_id, target).await?;
                let events = decide::remove_admin(&actor.state, &loaded.state)?;
                let mut plan = Plan::new(events, ())
                    .expect(actor.state.id.0, &actor)
                    .expect(target.0, &loaded);
                plan.statements = rows::remove_admin(target);
                Ok(plan)
            },
        )
        .await
    }

    /// Requires MFA for one admin or removes the requirement.
    ///
    /// The first attempt decides on the actor's, the target's and the organisation's states as
    /// this process last knew them, without reading, when it keeps all three (the states it read
    /// or appended last): the append expects each one's version, so had another process moved
    /// one on, the append refuses and the next attempt reads. Only a decision to append is made
    /// that way; a refusal or "nothing to change" is answered from the streams as read.
    pub async fn set_mfa_requirement(
        &self,
        ctx: &CommandContext,
        target: AdminId,
        required: bool,
    ) -> Result<Outcome<AdminState>, CommandError> {
        let org_id = ctx.principal.org_id;
        let actor_id = ctx.principal.admin_id;
        let ids = [actor_id, target];
        let decide = move |admins: &load::Admins, org: &Loaded<OrgState>, now: DateTime<Utc>| {
            let (Some(actor), Some(loaded)) = (admins.get(&actor_id), admins.get(&target)) else {
                return Err(anyhow::anyhow!("an admin state is missing from a load").into());
            };
            let events =
                decide::set_mfa_requirement(&actor.state, &org.state, &loaded.state, required)?;
            let state = fold_admin(&loaded.state, &events, now);
            Ok::<_, CommandError>(
                Plan::new(events, state)
                    .expect(org_id.0, org)
                    .expect(target.0, loaded)
                    .expect(actor_id.0, actor),
            )
        };
        let mut first = true;
        self.execute("set_mfa_requirement", org_id, Origin::of(ctx), move |now| {
            let may_trust_kept = std::mem::take(&mut first);
            async move {
                if may_trust_kept
                    && let Some((admins, org)) = load::kept_admins_and_org(&self.kept, org_id, &ids)
                    && let Ok(plan) = decide(&admins, &org, now)
                    && !plan.events.is_empty()
                {
                    return Ok(plan);
                }
                // The actor, the target and the organisation in one read.
                let (admins, org) =
                    load::admins_and_org(&self.db, &self.kept, org_id, &ids).await?;
                decide(&admins, &org, now)
            }
        })
        .await
    }

    /// Requires MFA for many admins, all or nothing.
    pub async fn require_mfa_bulk(
        &self,
        ctx: &CommandContext,
        ids: &[AdminId],
    ) -> Result<Outcome<BulkRequireMfa>, CommandError> {
        let org_id = ctx.principal.org_id;
        if !policy::can_manage_mfa_of(ctx.principal.role, Role::ReadOnly) {
            return Err(DomainError::Forbidden.into());
        }
        self.execute(
            "require_mfa_bulk",
            org_id,
            Origin::of(ctx),
            move |_| async move {
                let actor = self.actor(ctx).await?;
                let loaded = load::admins(&self.db, &self.kept, org_id, ids).await?;
                let states: Vec<AdminState> = loaded.values().map(|l| l.state.clone()).collect();
                let outcome = decide::require_mfa_bulk(&actor.state, ids, &states)?;
                let mut plan = Plan::new(outcome.events.clone(), outcome);
                plan.expected = loaded.iter().map(|(id, l)| (id.0, l.expected())).collect();
                Ok(plan)
            },
        )
        .await
    }

    /// Turns the Global MFA Requirement on or off; answers whether it is now on.
    pub async fn set_global_mfa(
        &self,
        ctx: &CommandContext,
        on: bool,
    ) -> Result<Outcome<bool>, CommandError> {
        let org_id = ctx.principal.org_id;
        self.execute(
            "set_global_mfa",
            org_id,
            Origin::of(ctx),
            move |_| async move {
                let actor = self.actor(ctx).await?;
                if !on {
                    let org = load::org(&self.db, &self.kept, org_id).await?;
                    let events = decide::disable_global_mfa(&actor.state, &org.state)?;
                    return Ok(Plan::new(events, false).expect(org_id.0, &org));
                }
                if !policy::can_change_global_mfa(actor.state.role) {
                    return Err(DomainError::Forbidden.into());
                }
                // Read the organisation's position first: any event appended after it, such as a
                // new admin, makes this decision stale and the append refuses it.
                let (org_position, _) = self.db.org_head(org_id.0).await?;
                let org = load::org(&self.db, &self.kept, org_id).await?;
                let ids: Vec<AdminId> = self
                    .db
                    .org_streams(org_id.0, StreamKind::Admin)
                    .await?
                    .into_iter()
                    .map(AdminId)
                    .collect();
                let admins = load::admins(&self.db, &self.kept, org_id, &ids).await?;
                let states: Vec<AdminState> = admins.into_values().map(|l| l.state).collect();
                let events = decide::enable_global_mfa(&actor.state, &org.state, &states)?;
                let mut plan = Plan::new(events, true).expect(org_id.0, &org);
                plan.org_position = Some(org_position);
                Ok(plan)
            },
        )
        .await
    }

    /// Shows or hides the Admins Without MFA Required widget on the caller's Home page.
    pub async fn set_home_widget(
        &self,
        ctx: &CommandContext,
        visible: bool,
    ) -> Result<Outcome<()>, CommandError> {
        let org_id = ctx.principal.org_id;
        self.execute(
            "set_home_widget",
            org_id,
            Origin::of(ctx),
            move |_| async move {
                let actor = self.actor(ctx).await?;
                let events = decide::set_home_widget(&actor.state, visible)?;
                Ok(Plan::new(events, ()).expect(actor.state.id.0, &actor))
            },
        )
        .await
    }

    /// Records that the caller read the audit history; answers the position of that record.
    pub async fn record_audit_access(
        &self,
        ctx: &CommandContext,
        action: &str,
        query: std::collections::BTreeMap<String, String>,
    ) -> Result<Outcome<()>, CommandError> {
        let org_id = ctx.principal.org_id;
        self.execute("record_audit_access", org_id, Origin::of(ctx), move |_| {
            let query = query.clone();
            async move {
                let actor = self.actor(ctx).await?;
                let events = decide::record_audit_access(&actor.state, action, query)?;
                Ok(Plan::new(events, ()).expect(actor.state.id.0, &actor))
            }
        })
        .await
    }

    /// Creates an API key for the caller; the plaintext is in the answer and nowhere else.
    pub async fn create_api_key(
        &self,
        ctx: &CommandContext,
        name: &str,
    ) -> Result<Outcome<(Uuid, String, DateTime<Utc>)>, CommandError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(
                DomainError::invalid("name", "must be 1 to 100 printable characters").into(),
            );
        }
        let org_id = ctx.principal.org_id;
        let key = gatehouse_auth::api_key::generate()?;
        let key_id = Uuid::now_v7();
        let key = &key;
        self.execute(
            "create_api_key",
            org_id,
            Origin::of(ctx),
            move |now| async move {
                let actor = self.actor(ctx).await?;
                let events = decide::create_api_key(&actor.state, key_id)?;
                let mut plan = Plan::new(events, (key_id, key.plaintext.clone(), now))
                    .expect(actor.state.id.0, &actor);
                plan.statements = vec![rows::insert_api_key(
                    key_id,
                    actor.state.id,
                    org_id,
                    key.hash.clone(),
                    name.to_owned(),
                    now,
                )];
                Ok(plan)
            },
        )
        .await
    }

    /// Revokes one of the caller's API keys.
    pub async fn revoke_api_key(
        &self,
        ctx: &CommandContext,
        key_id: Uuid,
    ) -> Result<Outcome<()>, CommandError> {
        let org_id = ctx.principal.org_id;
        let admin = ctx.principal.admin_id;
        self.execute(
            "revoke_api_key",
            org_id,
            Origin::of(ctx),
            move |_| async move {
                let actor = self.actor(ctx).await?;
                let live = gatehouse_auth::api_key::is_live(&self.db, key_id, admin).await?;
                let events = decide::revoke_api_key(&actor.state, key_id, live)?;
                let mut plan = Plan::new(events, ()).expect(admin.0, &actor);
                plan.statements = vec![rows::revoke_api_key(key_id, admin)];
                Ok(plan)
            },
        )
        .await
    }
}
