//! The run: its database and stream (dropped at the end, also when interrupted), the long
//! history and the scenarios over it (the relay's backlog, the CLI, as-of and the HTTP export),
//! then the scenarios against `gatehouse serve` with every role ([`crate::scenarios`]); each
//! beside its raw ceiling measured in the same run. The peer comparison (scenario 2) runs
//! first, on databases of its own, while nothing else of the run loads the machine.

use std::time::Instant;

use anyhow::{Context, bail};
use chrono::Utc;
use uuid::Uuid;

use crate::env::{Env, Org, connect};
use crate::report::{self, Row, quantile};
use crate::server::{Server, free_addr};
use crate::{Args, Group, history, scenarios};

/// Rows per keyset batch of the raw scan ceiling (the export reads in batches too).
const SCAN_BATCH: i64 = 1_000;

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let tag = format!("{}_{}", std::process::id(), Utc::now().timestamp());
    let env = Env {
        args,
        database: format!("gatehouse_bench_{tag}"),
        stream: format!("GATEHOUSE_BENCH_{tag}"),
        prefix: format!("gatehousebench{tag}"),
    };
    let admin = connect(&format!("{}/postgres", args.postgres)).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", env.database))
        .await
        .context("creating the benchmark's database")?;
    // Interrupted (Ctrl-C, or a TERM), the benchmark still removes its database and stream.
    let result = tokio::select! {
        result = scenarios(&env) => result,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    if args.keep && result.is_ok() {
        println!(
            "kept: DATABASE_URL={} and the stream {} (drop with: psql -c 'DROP DATABASE {} WITH (FORCE)')",
            env.database_url(),
            env.stream,
            env.database
        );
    } else {
        cleanup(&env, &admin).await;
    }
    let rows = result?;
    println!("\n{}", report::table(&rows));
    report::write(&args.output, &rows)?;
    println!("written to {}", args.output.display());
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

async fn cleanup(env: &Env<'_>, admin: &tokio_postgres::Client) {
    let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", env.database);
    if let Err(e) = admin.batch_execute(&drop).await {
        eprintln!("could not drop {}: {e}", env.database);
    }
    if let Ok(nats) = async_nats::connect(&env.args.nats).await {
        let js = async_nats::jetstream::new(nats);
        let _ = js.delete_stream(&env.stream).await;
        let _ = js.delete_stream(&env.ceiling_stream().0).await;
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&env.database));
}

async fn scenarios(env: &Env<'_>) -> anyhow::Result<Vec<Row>> {
    let args = env.args;
    let mut rows = Vec::new();
    if args.runs(Group::Peer) {
        match &args.peer {
            Some(binary) => keep(
                &mut rows,
                "peer",
                scenarios::peer::measure(env, binary).await,
            ),
            None => eprintln!(
                "the peer scenario is skipped: no --peer binary (scripts/bench builds \
                 bench/peer and passes it)"
            ),
        }
    }
    env.output(&["migrate"]).await?;
    if args.runs_any(&[Group::Relay, Group::Cli, Group::Http]) {
        long_history(env, &mut rows).await?;
    }
    if args.runs_any(scenarios::GROUPS) {
        scenarios::measure(env, &mut rows).await;
    }
    Ok(rows)
}

/// The long history, then the scenarios over it: the relay first (its backlog is the whole
/// history only while no other `serve` has relayed it), then the CLI and the HTTP ones.
async fn long_history(env: &Env<'_>, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let args = env.args;
    let events = args.events();
    let tiny = env.create_org("Tiny", "owner@tiny.bench.example").await?;
    let big = env
        .create_org("Long history", "owner@long.bench.example")
        .await?;

    println!(
        "generating {events} events ({} admins) in one organisation…",
        args.admins
    );
    let started = Instant::now();
    let mut client = env.connect().await?;
    let history = history::generate(
        &mut client,
        big.id,
        big.owner,
        args.admins,
        events,
        |done| {
            if done % 100_000 == 0 {
                println!("  {done} events");
            }
        },
    )
    .await?;
    client
        .batch_execute("VACUUM ANALYZE events")
        .await
        .context("analysing the events table")?;
    println!(
        "generated in {:.1} s ({} to {})",
        started.elapsed().as_secs_f64(),
        history.from,
        history.to
    );
    if args.runs(Group::Relay) {
        keep(rows, "relay", scenarios::relay::measure(env).await);
    }
    if !args.runs_any(&[Group::Cli, Group::Http]) {
        return Ok(());
    }
    let total: i64 = client
        .query_one("SELECT count(*) FROM events WHERE org_id = $1", &[&big.id])
        .await
        .context("counting the organisation's events")?
        .get(0);
    let total = total as f64;

    // The ceiling of reading the history: a keyset scan of the events table.
    let scan_secs = keyset_scan(&client, big.id).await?;
    let scan_rate = total / scan_secs;
    println!("keyset scan: {scan_rate:.0} events/s");

    if args.runs(Group::Cli) {
        let org = big.id.to_string();
        let tiny_org = tiny.id.to_string();
        let cli = Cli {
            env,
            org: &org,
            tiny_org: &tiny_org,
            total,
            scan_rate,
        };
        keep(rows, "CLI", cli.measure().await);
    }
    if args.runs(Group::Http) {
        keep(
            rows,
            "HTTP",
            over_http(env, &big, &history, scan_rate).await,
        );
    }
    Ok(())
}

/// Adds a group's rows, or says why the group could not be measured (the others still are).
pub fn keep(rows: &mut Vec<Row>, group: &str, measured: anyhow::Result<Vec<Row>>) {
    match measured {
        Ok(measured) => rows.extend(measured),
        Err(e) => eprintln!("the {group} scenarios failed: {e:#}"),
    }
}

/// The scenarios run through the CLI against the long history.
struct Cli<'a> {
    env: &'a Env<'a>,
    org: &'a str,
    tiny_org: &'a str,
    total: f64,
    scan_rate: f64,
}

impl Cli<'_> {
    async fn measure(&self) -> anyhow::Result<Vec<Row>> {
        let (env, org, total, scan_rate) = (self.env, self.org, self.total, self.scan_rate);
        let mut rows = Vec::new();
        // Verification from the store against the scan.
        let (secs, rss) = env.measured(&["audit", "verify", "--org", org]).await?;
        rows.push(
            Row::new("audit verify --org", "events/s")
                .against(total / secs, scan_rate)
                .rss(rss),
        );

        // Export: rate against the scan, peak memory against the idle bound.
        let (_, idle_rss) = env
            .measured(&[
                "audit",
                "export",
                "--org",
                self.tiny_org,
                "--format",
                "ndjson",
            ])
            .await?;
        let (secs, rss) = env
            .measured(&["audit", "export", "--org", org, "--format", "ndjson"])
            .await?;
        rows.push(
            Row::new("audit export ndjson, CLI", "events/s")
                .against(total / secs, scan_rate)
                .rss(rss),
        );
        rows.push(
            Row::new(
                "audit export ndjson, CLI peak RSS vs 1.2 x idle + 20 MB",
                "MB",
            )
            .against(rss, 1.2 * idle_rss + 20.0),
        );

        // Rebuilding every read model (the audit model included) against the scan.
        let (secs, rss) = env.measured(&["projections", "rebuild"]).await?;
        rows.push(
            Row::new("projections rebuild (all read models)", "events/s")
                .against(total / secs, scan_rate)
                .rss(rss),
        );
        let (secs, rss) = env
            .measured(&["audit", "export", "--org", org, "--format", "csv"])
            .await?;
        rows.push(
            Row::new("audit export csv, CLI", "events/s")
                .against(total / secs, scan_rate)
                .rss(rss),
        );
        Ok(rows)
    }
}

/// As-of and the export over HTTP.
async fn over_http(
    env: &Env<'_>,
    big: &Org,
    history: &history::History,
    scan_rate: f64,
) -> anyhow::Result<Vec<Row>> {
    let addr = free_addr()?;
    let server = Server::start(env.serve("api", addr), addr, "gatehouse serve --roles api").await?;
    let measured = as_of_and_export(env, &server, &big.key, history, scan_rate).await;
    server.stop().await;
    measured
}

async fn as_of_and_export(
    env: &Env<'_>,
    server: &Server,
    key: &str,
    history: &history::History,
    scan_rate: f64,
) -> anyhow::Result<Vec<Row>> {
    let args = env.args;
    let mut rows = Vec::new();
    let idle = server.process.rss_mb()?;
    let http = reqwest::Client::new();
    let requests = if args.quick { 50 } else { 300 };
    let mut latencies = Vec::with_capacity(requests);
    let span = (history.to - history.from).num_milliseconds().max(1);
    for i in 0..requests {
        let offset = (i as i64 * 7_919 * 1_000_003) % span;
        let t = history.from + chrono::Duration::milliseconds(offset);
        let url = format!(
            "{}/api/v1/audit/admins-without-mfa-required?as_of={}",
            server.base,
            gatehouse_events::format_time(t)
        );
        let started = Instant::now();
        let answer = http
            .get(&url)
            .header("x-api-key", key)
            .send()
            .await
            .context("asking for as_of")?;
        let status = answer.status();
        let _ = answer.bytes().await.context("reading as_of")?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!("as_of answered {status}");
        }
    }
    let p50 = quantile(&mut latencies, 0.5);
    let p99 = quantile(&mut latencies, 0.99);
    rows.push(
        Row::new("as_of over the long history (p99 vs 200 ms target)", "ms")
            .against(p99, 200.0)
            .latency(p50, p99),
    );

    let started = Instant::now();
    let mut answer = http
        .get(format!("{}/api/v1/audit/export?format=ndjson", server.base))
        .header("x-api-key", key)
        .send()
        .await
        .context("asking for the export")?;
    if !answer.status().is_success() {
        bail!("the export answered {}", answer.status());
    }
    let mut lines = 0u64;
    while let Some(chunk) = answer.chunk().await.context("reading the export")? {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = server.process.peak_rss_mb()?;
    rows.push(
        Row::new("audit export ndjson, HTTP", "events/s")
            .against(lines as f64 / secs, scan_rate)
            .rss(peak),
    );
    rows.push(
        Row::new(
            "serve peak RSS during the export vs 1.2 x idle + 20 MB",
            "MB",
        )
        .against(peak, 1.2 * idle + 20.0),
    );
    Ok(rows)
}

/// Reads every event of the organisation in keyset batches, as an export would; answers the
/// seconds it took.
async fn keyset_scan(client: &tokio_postgres::Client, org: Uuid) -> anyhow::Result<f64> {
    let statement = client
        .prepare(
            "SELECT position, envelope::text, chain FROM events
             WHERE org_id = $1 AND position > $2 ORDER BY position LIMIT $3",
        )
        .await
        .context("preparing the scan")?;
    let started = Instant::now();
    let mut after = 0i64;
    let mut bytes = 0usize;
    loop {
        let rows = client
            .query(&statement, &[&org, &after, &SCAN_BATCH])
            .await
            .context("scanning events")?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for row in &rows {
            let text: &str = row.get(1);
            bytes += text.len();
        }
    }
    std::hint::black_box(bytes);
    Ok(started.elapsed().as_secs_f64())
}
