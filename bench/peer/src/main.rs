//! `gatehouse-peer-bench`: issue 7, scenario 2. The same command workload through Gatehouse's
//! command service and through cqrs-es + postgres-es, in-process (no HTTP), each on its own
//! database of the same Postgres, alternated in rounds within one run; prints one result row
//! (`bench/src/report.rs`'s shape) as JSON on stdout, its progress on stderr. `gatehouse-bench
//! --only peer` runs it (docs/benchmarks.md).
//!
//! - [`admin`]: the peer's `Admin` aggregate, with the rule of Gatehouse's decider.
//! - [`peer`]: cqrs-es + postgres-es on its database.
//! - [`ours`]: `gatehouse_commands::Commands` on its freshly migrated database.
//! - [`load`]: the workload both run (8 tasks, 512 admins over 16 organisations).
//! - [`report`]: the row, the median and the quantiles.

mod admin;
mod load;
mod ours;
mod peer;
mod report;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sqlx::{Connection, Executor, PgConnection};

use load::{Fleet, Run, Side, TASKS, Until};
use ours::Ours;
use peer::{Peer, Store};
use report::{Row, median, quantile};

/// The allocator `gatehouse` runs on, so that ours runs as shipped; cqrs-es runs on it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Connections in each side's pool: enough for every task (Gatehouse's command holds two
/// while it reads, its group appender one) and few enough that both pools fit, beside other
/// users, under Postgres's default `max_connections` of 100.
const POOL: usize = 16;

/// Warm-up: every task goes this many times through its admins on each side first, so that
/// each side's connections, prepared statements and kept states exist before the clock runs.
const WARM_UP_PASSES: usize = 2;

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse-peer-bench",
    about = "Gatehouse's command service against cqrs-es + postgres-es, in-process"
)]
struct Args {
    /// Postgres server (two databases of this run's own are created on it and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Seconds each side runs in each round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds; each runs both sides, the first of them alternating from round to round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// How postgres-es loads the aggregate.
    #[arg(long, value_enum, default_value = "snapshot")]
    store: Store,
}

/// The run's two databases.
struct Databases {
    ours: String,
    peer: String,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(&Args::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let tag = format!("{}_{}", std::process::id(), chrono::Utc::now().timestamp());
    let dbs = Databases {
        ours: format!("gatehouse_peer_ours_{tag}"),
        peer: format!("gatehouse_peer_cqrs_{tag}"),
    };
    let mut admin = PgConnection::connect(&format!("{}/postgres", args.postgres))
        .await
        .context("connecting to Postgres")?;
    for name in [&dbs.ours, &dbs.peer] {
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .with_context(|| format!("creating {name}"))?;
    }
    // Interrupted, the run still drops its databases.
    let result = tokio::select! {
        result = measure(args, &dbs) => result,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    for name in [&dbs.ours, &dbs.peer] {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = admin.execute(drop.as_str()).await {
            eprintln!("could not drop {name}: {e}");
        }
    }
    let row = result?;
    println!(
        "{}",
        serde_json::to_string(&row).context("encoding the row")?
    );
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        // Without signal handlers, never: the default action ends the process.
        _ => std::future::pending().await,
    }
}

/// One side, its fleet's requirements, and the rates and latencies of its rounds.
struct Measured<S> {
    name: &'static str,
    side: Arc<S>,
    fleet: Fleet,
    rates: Vec<f64>,
    latencies: Vec<f64>,
    failures: usize,
    first_failure: Option<String>,
}

impl<S: Side> Measured<S> {
    fn new(name: &'static str, side: S) -> Measured<S> {
        Measured {
            name,
            side: Arc::new(side),
            fleet: Fleet::default(),
            rates: vec![],
            latencies: vec![],
            failures: 0,
            first_failure: None,
        }
    }

    async fn warm_up(&mut self) -> anyhow::Result<()> {
        let run = load::run(&self.side, &mut self.fleet, Until::Passes(WARM_UP_PASSES)).await?;
        eprintln!(
            "  warm-up, {}: {} commands, {:.0} cmds/s",
            self.name,
            run.commands,
            run.rate()
        );
        if let Some(e) = run.first_failure {
            anyhow::bail!("{} failed while warming up: {e}", self.name);
        }
        Ok(())
    }

    async fn round(&mut self, round: usize, duration: Duration) -> anyhow::Result<()> {
        let mut run: Run = load::run(&self.side, &mut self.fleet, Until::Elapsed(duration)).await?;
        let (p50, p99) = (
            quantile(&mut run.latencies, 0.5),
            quantile(&mut run.latencies, 0.99),
        );
        eprintln!(
            "  round {round}, {}: {:.0} cmds/s, p50 {p50:.2} ms, p99 {p99:.2} ms{}",
            self.name,
            run.rate(),
            failed(run.failures)
        );
        self.rates.push(run.rate());
        self.latencies.append(&mut run.latencies);
        self.failures += run.failures;
        self.first_failure = self.first_failure.take().or(run.first_failure);
        Ok(())
    }

    /// The median rate, the p50 and p99 over every round's commands.
    fn summary(&mut self) -> (f64, f64, f64) {
        let rate = median(&mut self.rates);
        let p50 = quantile(&mut self.latencies, 0.5);
        let p99 = quantile(&mut self.latencies, 0.99);
        if let Some(e) = &self.first_failure {
            eprintln!(
                "  {} failures, {}, the first: {e}",
                self.name, self.failures
            );
        }
        eprintln!(
            "{}: median {rate:.0} cmds/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
            self.name
        );
        (rate, p50, p99)
    }
}

fn failed(failures: usize) -> String {
    if failures == 0 {
        String::new()
    } else {
        format!(", {failures} failed")
    }
}

async fn measure(args: &Args, dbs: &Databases) -> anyhow::Result<Row> {
    let url = |name: &str| format!("{}/{name}", args.postgres);
    eprintln!(
        "seeding both sides (16 organisations, {} admins each)…",
        load::ADMINS
    );
    let ours = Ours::prepare(&url(&dbs.ours), POOL).await?;
    let peer = Peer::prepare(&url(&dbs.peer), POOL, args.store).await?;
    let mut ours = Measured::new("ours", ours);
    let mut peer = Measured::new("cqrs-es", peer);
    ours.warm_up().await?;
    peer.warm_up().await?;
    let duration = Duration::from_secs(args.seconds);
    for round in 1..=args.rounds {
        if round % 2 == 1 {
            ours.round(round, duration).await?;
            peer.round(round, duration).await?;
        } else {
            peer.round(round, duration).await?;
            ours.round(round, duration).await?;
        }
    }
    ours.side.close();
    peer.side.close().await;
    let (ours_rate, p50, p99) = ours.summary();
    let (peer_rate, peer_p50, peer_p99) = peer.summary();
    let mut name = format!(
        "set MFA requirement in-process, {TASKS} tasks vs cqrs-es + postgres-es ({}; \
         its p50 {peer_p50:.2} ms, p99 {peer_p99:.2} ms)",
        args.store.describe()
    );
    for side in [(ours.name, ours.failures), (peer.name, peer.failures)] {
        if side.1 > 0 {
            name.push_str(&format!(", {} failed of {}", side.1, side.0));
        }
    }
    Ok(Row::new(name, ours_rate, peer_rate, p50, p99))
}
