//! `gatehouse-bench`: measures Gatehouse against this machine's ceilings, in one run.
//!
//! It makes its own database and JetStream stream, builds a long organisation history, runs
//! each scenario through the real `gatehouse` binary (the CLI, or `gatehouse serve` over
//! loopback HTTP), measures the matching raw ceiling in the same run, prints a table and writes
//! `bench-results.json`. It reports; it never fails on a number. See docs/benchmarks.md.

mod history;
mod report;
mod run;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse-bench",
    about = "Benchmarks Gatehouse against this machine's ceilings"
)]
pub struct Args {
    /// Fewer requests per scenario (the history keeps its size).
    #[arg(long)]
    pub quick: bool,
    /// Events in the long organisation history.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Administrators in that organisation.
    #[arg(long, default_value_t = 1_000)]
    pub admins: usize,
    /// Postgres server (the benchmark creates and drops a database of its own on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// NATS server (the benchmark creates and deletes a stream of its own on it).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The `gatehouse` binary to measure (build it with --release).
    #[arg(long)]
    pub gatehouse: PathBuf,
    /// Where the results go.
    #[arg(long, default_value = "bench-results.json")]
    pub output: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run::run(&args).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
