//! The peer's side: cqrs-es's `CqrsFramework` over postgres-es on its own database, executing
//! [`AdminCommand::SetMfaRequirement`] on the [`Admin`] aggregate. No query processors: Gatehouse's
//! command path updates no read model in the command either (its projections follow the store).

use std::str::FromStr;

use anyhow::Context;
use clap::ValueEnum;
use cqrs_es::AggregateError;
use gatehouse_domain::{DomainError, Role};
use postgres_es::{PostgresCqrs, postgres_aggregate_cqrs, postgres_cqrs, postgres_snapshot_cqrs};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, raw_sql};
use uuid::Uuid;

use crate::admin::{Admin, AdminCommand, Caller};
use crate::load::{ADMINS, ORGS, Side, org_of};

/// How postgres-es loads an aggregate (its three `PersistedEventStore`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    /// Every event of the aggregate's stream, folded on each command (`postgres_cqrs`).
    Events,
    /// A snapshot every [`SNAPSHOT_EVERY`] events, then the events after it
    /// (`postgres_snapshot_cqrs`).
    Snapshot,
    /// Only the state, rewritten with each command's events (`postgres_aggregate_cqrs`).
    Aggregate,
}

/// Events between the snapshot store's snapshots.
pub const SNAPSHOT_EVERY: usize = 16;

impl Store {
    /// How the scenario's name says it.
    pub fn describe(self) -> String {
        match self {
            Store::Events => "event store".to_owned(),
            Store::Snapshot => format!("snapshot every {SNAPSHOT_EVERY}"),
            Store::Aggregate => "aggregate store".to_owned(),
        }
    }
}

/// The framework over its own database, the organisations' owners and the admins.
pub struct Peer {
    cqrs: PostgresCqrs<Admin>,
    pool: PgPool,
    owners: Vec<Caller>,
    admins: Vec<Uuid>,
}

impl Peer {
    /// Creates postgres-es's tables in the database at `url` and creates [`ADMINS`] admins
    /// without MFA required, spread over [`ORGS`] organisations, through the framework.
    pub async fn prepare(url: &str, pool_size: usize, store: Store) -> anyhow::Result<Peer> {
        let options = PgConnectOptions::from_str(url).context("the peer's database URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(u32::try_from(pool_size).context("the pool's size")?)
            .connect_with(options)
            .await
            .context("connecting to the peer's database")?;
        raw_sql(include_str!("schema.sql"))
            .execute(&pool)
            .await
            .context("creating postgres-es's tables")?;
        let cqrs = match store {
            Store::Events => postgres_cqrs(pool.clone(), vec![], ()),
            Store::Snapshot => postgres_snapshot_cqrs(pool.clone(), vec![], SNAPSHOT_EVERY, ()),
            Store::Aggregate => postgres_aggregate_cqrs(pool.clone(), vec![], ()),
        };
        let owners: Vec<Caller> = (0..ORGS)
            .map(|_| Caller {
                org_id: Uuid::now_v7(),
                role: Role::AdministratorWithBilling,
            })
            .collect();
        let admins: Vec<Uuid> = (0..ADMINS).map(|_| Uuid::now_v7()).collect();
        for (a, &admin_id) in admins.iter().enumerate() {
            let create = AdminCommand::Create {
                admin_id,
                org_id: owners[org_of(a)].org_id,
                role: Role::Manager,
                mfa_required: false,
            };
            execute(&cqrs, admin_id, create)
                .await
                .context("creating an admin")?;
        }
        Ok(Peer {
            cqrs,
            pool,
            owners,
            admins,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Side for Peer {
    async fn flip(&self, a: usize, required: bool) -> anyhow::Result<()> {
        let command = AdminCommand::SetMfaRequirement {
            caller: self.owners[org_of(a)],
            required,
        };
        execute(&self.cqrs, self.admins[a], command)
            .await
            .context("SetMfaRequirement")
    }
}

async fn execute(
    cqrs: &PostgresCqrs<Admin>,
    admin: Uuid,
    command: AdminCommand,
) -> Result<(), AggregateError<DomainError>> {
    cqrs.execute(&admin.to_string(), command).await
}
