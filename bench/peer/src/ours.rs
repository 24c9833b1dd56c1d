//! Gatehouse's side: `Commands::set_mfa_requirement` called in-process on its own freshly
//! migrated database, as the HTTP handler calls it (a new command context per command, the
//! organisation's owner as the caller, authenticated by API key), without HTTP.
//!
//! The organisations are created through the command service (`create_org`, one argon2 hash
//! each); their admins are appended through the store with their credential rows, as
//! `bench/src/seed.rs` does for the other scenarios: what the command service appends, without
//! one argon2 hash per admin.

use anyhow::Context;
use chrono::Utc;
use gatehouse_auth::principal::AuthMethod;
use gatehouse_auth::secretbox::SecretKey;
use gatehouse_auth::{Passwords, Principal};
use gatehouse_commands::{CommandContext, Commands};
use gatehouse_domain::decide::NewAdmin;
use gatehouse_domain::{AdminId, Email, OrgId, PersonName, Role};
use gatehouse_events::types::AdminCreated;
use gatehouse_events::{Actor, Event};
use gatehouse_store::{AppendRequest, Db, DbConfig, Expected};
use uuid::Uuid;

use crate::load::{ADMINS, ORGS, Side, org_of};

const OWNER_PASSWORD: &str = "correct horse battery staple, peer bench";

/// The command service over its own database, the organisations' owners and the admins.
pub struct Ours {
    commands: Commands,
    owners: Vec<Principal>,
    admins: Vec<AdminId>,
}

impl Ours {
    /// Migrates the database at `url` and seeds [`ORGS`] organisations and [`ADMINS`] admins
    /// without MFA required.
    pub async fn prepare(url: &str, pool_size: usize) -> anyhow::Result<Ours> {
        let db = Db::connect(&DbConfig {
            url: url.to_owned(),
            pool_size,
        })
        .await?;
        db.migrate().await?;
        let commands = Commands::new(db.clone(), Passwords::default(), SecretKey::random()?);
        let mut owners = Vec::with_capacity(ORGS);
        for i in 0..ORGS {
            owners.push(create_org(&commands, i).await?);
        }
        let admins: Vec<AdminId> = (0..ADMINS).map(|_| AdminId::generate()).collect();
        for (i, owner) in owners.iter().enumerate() {
            let own: Vec<AdminId> = (0..ADMINS)
                .filter(|a| org_of(*a) == i)
                .map(|a| admins[a])
                .collect();
            append_admins(&db, owner, &own).await?;
        }
        Ok(Ours {
            commands,
            owners,
            admins,
        })
    }

    pub fn close(&self) {
        self.commands.db().pool.close();
    }
}

impl Side for Ours {
    async fn flip(&self, a: usize, required: bool) -> anyhow::Result<()> {
        let ctx = CommandContext::new(self.owners[org_of(a)].clone());
        self.commands
            .set_mfa_requirement(&ctx, self.admins[a], required)
            .await
            .context("set_mfa_requirement")?;
        Ok(())
    }
}

/// Creates organisation `i` with its owner; answers the owner as an API key's principal.
async fn create_org(commands: &Commands, i: usize) -> anyhow::Result<Principal> {
    let email = format!("owner@peer-{i}.bench.example");
    let owner = NewAdmin {
        id: AdminId::generate(),
        email: Email::parse(&email)?,
        first_name: PersonName::parse("first_name", "Peer")?,
        last_name: PersonName::parse("last_name", "Owner")?,
        role: Role::AdministratorWithBilling,
        mfa_required: None,
    };
    let created = commands
        .create_org(&format!("Peer {i}"), owner, OWNER_PASSWORD.to_owned())
        .await
        .context("creating an organisation")?;
    let (org_id, admin_id) = created.value;
    Ok(Principal {
        admin_id,
        org_id,
        email,
        role: Role::AdministratorWithBilling,
        auth_method: AuthMethod::ApiKey,
    })
}

/// Appends `ids` as managers of `owner`'s organisation, created by the owner, in one append.
async fn append_admins(db: &Db, owner: &Principal, ids: &[AdminId]) -> anyhow::Result<()> {
    let OrgId(org) = owner.org_id;
    let mut events = Vec::with_capacity(ids.len());
    let mut statements = Vec::with_capacity(ids.len());
    for &id in ids {
        let email = format!("peer-{}@bench.example", id.0.simple());
        statements.push(gatehouse_auth::rows::insert_admin(
            id,
            owner.org_id,
            &Email::parse(&email)?,
            Role::Manager,
            None,
        ));
        events.push(Event::AdminCreated(AdminCreated {
            admin_id: id.0,
            email,
            first_name: "Peer".to_owned(),
            last_name: "Admin".to_owned(),
            role: Role::Manager,
            mfa_required: false,
        }));
    }
    db.append(AppendRequest {
        org_id: org,
        actor: Actor::Admin(owner.admin_id.0),
        correlation_id: Uuid::now_v7(),
        time: Utc::now(),
        auth_method: Some(AuthMethod::ApiKey.as_str()),
        events,
        expected: ids.iter().map(|id| (id.0, Expected::NoStream)).collect(),
        org_position: None,
        statements,
    })
    .await
    .map_err(anyhow::Error::new)
    .context("appending admins")?;
    Ok(())
}
