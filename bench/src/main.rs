//! `gatehouse-bench`: measures Gatehouse against this machine's ceilings, in one run.
//!
//! It makes its own database and JetStream stream, builds a long organisation history, runs
//! each scenario through the real `gatehouse` binary (the CLI, or `gatehouse serve` over
//! loopback HTTP), measures the matching raw ceiling in the same run, prints a table and writes
//! `bench-results.json`. It reports; it never fails on a number. See docs/benchmarks.md.
//!
//! - [`run`]: the run's order, the long-history scenarios (CLI, as-of, HTTP export).
//! - [`env`]: the benchmark's database and stream, and running the binary against them.
//! - [`server`]: child processes (`gatehouse serve`, the ceiling server) and their memory.
//! - [`load`]: the HTTP load generator shared by every HTTP scenario and ceiling.
//! - [`history`]: the long organisation history, written straight into the store's tables.
//! - [`seed`]: many administrators at once, appended through the store (no argon2 per admin).
//! - [`ceiling`]: the raw ceilings (Postgres inserts, JetStream publishes) and
//!   [`ceiling_server`], the minimal axum + deadpool-postgres server run as its own process.
//! - [`scenarios`]: the issue-7 scenarios against `gatehouse serve` with every role, and the
//!   peer comparison (scenario 2), run through `gatehouse-peer-bench` (`bench/peer/`).
//! - [`report`]: rows, the table and `bench-results.json`.

mod ceiling;
mod ceiling_server;
mod env;
mod history;
mod load;
mod report;
mod run;
mod scenarios;
mod seed;
mod server;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The first argument that runs the widget query's ceiling server instead of the benchmark
/// (the benchmark starts itself so, as a separate process; not for users, so not in --help).
const CEILING_SERVER: &str = "ceiling-server";

/// A group of scenarios: each is measured on its own, and one failing leaves the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Group {
    /// audit verify, export and projections rebuild through the CLI (the long history).
    Cli,
    /// as-of and the HTTP export (the long history).
    Http,
    /// the long history's backlog drained to JetStream by the relay.
    Relay,
    /// PUT /admins/{id}/mfa over 64 connections (16 organisations, and one).
    Commands,
    /// one POST /admins/require-mfa of 10,000 admins.
    Bulk,
    /// the widget's page of 50 from 100,000 admins, over 64 connections.
    Widget,
    /// from a command's answer to the widget showing it, under load.
    Lag,
    /// PUT /admins/{id}/mfa on an admin with a 100,000-event stream vs a fresh one.
    History,
    /// 100 password logins at once beside the widget at 16 connections.
    Login,
    /// serve's peak RSS after 100,000 admins and the commands and widget scenarios.
    Memory,
    /// The command service in-process against cqrs-es + postgres-es (needs --peer).
    Peer,
}

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse-bench",
    about = "Benchmarks Gatehouse against this machine's ceilings"
)]
pub struct Args {
    /// Shorter loads, fewer requests and a smaller long history (unless --events says).
    #[arg(long)]
    pub quick: bool,
    /// Events in the long organisation history, which is also the relay's backlog
    /// [default: 1,000,000; 100,000 with --quick].
    #[arg(long)]
    pub events: Option<usize>,
    /// Administrators in that organisation.
    #[arg(long, default_value_t = 1_000)]
    pub admins: usize,
    /// The scenario groups to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Group>,
    /// Postgres server (the benchmark creates and drops a database of its own on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// NATS server (the benchmark creates and deletes a stream of its own on it).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The `gatehouse` binary to measure (build it with --release).
    #[arg(long)]
    pub gatehouse: PathBuf,
    /// The `gatehouse-peer-bench` binary of the peer group (build it with --release from
    /// bench/peer/Cargo.toml); without it, that group is skipped.
    #[arg(long)]
    pub peer: Option<PathBuf>,
    /// Where the results go.
    #[arg(long, default_value = "bench-results.json")]
    pub output: PathBuf,
    /// Leaves the database and the stream in place at the end (for profiling a scenario
    /// again by hand); says how to reach and drop them.
    #[arg(long)]
    pub keep: bool,
}

impl Args {
    /// The long history's size.
    pub fn events(&self) -> usize {
        self.events
            .unwrap_or(if self.quick { 100_000 } else { 1_000_000 })
    }

    /// Whether `group` runs.
    pub fn runs(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }

    /// Whether any of `groups` runs.
    pub fn runs_any(&self, groups: &[Group]) -> bool {
        groups.iter().any(|g| self.runs(*g))
    }
}

#[tokio::main]
async fn main() {
    let result = if std::env::args().nth(1).as_deref() == Some(CEILING_SERVER) {
        let server = ceiling_server::ServerArgs::parse_from(std::env::args().skip(1));
        ceiling_server::serve(&server).await
    } else {
        run::run(&Args::parse()).await
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
