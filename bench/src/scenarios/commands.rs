//! Scenario 1: `PUT /admins/{id}/mfa` over 64 connections, each command flipping its admin's
//! requirement, distinct admins spread over 16 organisations (and the one-organisation
//! variant), against one-row INSERT transactions over 64 Postgres connections (measured before
//! serve started, see [`super`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use gatehouse_store::Db;
use hyper::Method;
use serde_json::json;
use uuid::Uuid;

use super::{CONNECTIONS, Stage, measured_ceiling};
use crate::env::{Env, Org};
use crate::load::{self, Plan, Req, Until};
use crate::report::Row;
use crate::seed;

/// Organisations of the spread variant.
pub const ORGS: usize = 16;

/// Admins each load task cycles through: a command never waits on another task's admin.
const PER_TASK: usize = 8;

/// Admins that commands flip. Admin `a` belongs to task `a % CONNECTIONS` and to organisation
/// `a % orgs`, so every task stays within one organisation and no two tasks share an admin.
/// Each admin's requirement is tracked here, so every command changes something.
pub struct Fleet {
    orgs: Vec<Org>,
    admins: Vec<Uuid>,
    required: Vec<AtomicBool>,
}

impl Fleet {
    /// Appends `CONNECTIONS * PER_TASK` admins without MFA required, spread over `orgs`.
    async fn seed(store: &Db, orgs: Vec<Org>) -> anyhow::Result<Fleet> {
        let total = CONNECTIONS * PER_TASK;
        let mut per_org = Vec::with_capacity(orgs.len());
        for org in &orgs {
            per_org.push(seed::admins(store, org, total / orgs.len(), false).await?);
        }
        let admins = (0..total)
            .map(|a| {
                per_org[a % orgs.len()]
                    .get(a / orgs.len())
                    .copied()
                    .context("an admin of the fleet")
            })
            .collect::<anyhow::Result<Vec<Uuid>>>()?;
        Ok(Fleet {
            required: admins.iter().map(|_| AtomicBool::new(false)).collect(),
            orgs,
            admins,
        })
    }

    /// The API key of organisation `i`.
    pub fn key(&self, i: usize) -> String {
        self.orgs[i % self.orgs.len()].key.clone()
    }

    /// The `i`th command of load task `task`: flip its next admin's requirement.
    pub fn flip(&self, task: usize, i: u64) -> anyhow::Result<Req> {
        let round = usize::try_from(i % PER_TASK as u64).context("a round")?;
        let a = (task % CONNECTIONS) + CONNECTIONS * round;
        let required = !self.required[a].fetch_xor(true, Ordering::Relaxed);
        let org = &self.orgs[a % self.orgs.len()];
        load::request(
            Method::PUT,
            &format!("/api/v1/admins/{}/mfa", self.admins[a]),
            Some(&org.key),
            Some(&json!({ "required": required })),
        )
    }
}

/// Creates the 16 organisations (with `gatehouse org create`) and both fleets: one spread over
/// the 16, one in the first alone.
pub async fn seed_fleets(env: &Env<'_>, store: &Db) -> anyhow::Result<(Arc<Fleet>, Arc<Fleet>)> {
    let mut orgs = Vec::with_capacity(ORGS);
    for i in 1..=ORGS {
        orgs.push(
            env.create_org(
                &format!("Commands {i}"),
                &format!("owner@commands-{i}.bench.example"),
            )
            .await?,
        );
    }
    let single = vec![orgs[0].clone()];
    Ok((
        Arc::new(Fleet::seed(store, orgs).await?),
        Arc::new(Fleet::seed(store, single).await?),
    ))
}

/// The scenario's rows, and the spread variant's rate (the lag scenario runs at half of it).
pub struct Measured {
    pub rows: Vec<Row>,
    pub rate: f64,
}

pub async fn measure(stage: &Stage<'_>) -> anyhow::Result<Measured> {
    let (spread, single) = stage.fleets.as_ref().context("no fleets were seeded")?;
    let duration = stage.duration();
    let ceiling = *measured_ceiling(&stage.ceilings.insert_tx)?;
    let mut rows = Vec::new();
    let mut rate = 0.0;
    for (fleet, name) in [(spread, "16 orgs"), (single, "1 org")] {
        let plan = Plan {
            connections: CONNECTIONS,
            until: Until::Elapsed(duration),
            rate: None,
        };
        let report = load::run(stage.server.addr, &plan, flipper(fleet)).await?;
        println!("PUT /admins/{{id}}/mfa, {name}: {}", report.summary()?);
        if rate == 0.0 {
            rate = report.rate();
        }
        rows.push(report.row(
            &format!(
                "PUT /admins/{{id}}/mfa, {CONNECTIONS} connections, {name}{} vs one-row INSERT tx",
                report.failures()
            ),
            "cmds/s",
            ceiling,
        ));
    }
    Ok(Measured { rows, rate })
}

/// The load's request builder: flips over `fleet`, which the load's tasks share.
pub fn flipper(fleet: &Arc<Fleet>) -> impl load::MakeRequest {
    let fleet = fleet.clone();
    move |task, i| fleet.flip(task, i)
}
