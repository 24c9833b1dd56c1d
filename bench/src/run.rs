//! The scenarios: a long history, then the audit export, verification, rebuild and as-of, each
//! beside its raw ceiling measured in the same run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use serde::Deserialize;
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::Args;
use crate::history;
use crate::report::{self, Row, quantile};

/// 32 bytes, public on purpose: the benchmark seals no real TOTP secret.
const BENCH_SECRET_KEY: &str = "Z2F0ZWhvdXNlLWJlbmNoLW5vdC1hLXJlYWwta2V5ISE=";
const OWNER_PASSWORD: &str = "correct horse battery staple, bench";
/// Rows per keyset batch of the raw scan ceiling (the export reads in batches too).
const SCAN_BATCH: i64 = 1_000;

/// What `gatehouse org create --json` prints.
#[derive(Debug, Deserialize)]
struct CreatedOrg {
    org_id: Uuid,
    owner_id: Uuid,
    api_key: Option<String>,
}

/// The benchmark's own database and stream, and how to run the binary against them.
struct Env<'a> {
    args: &'a Args,
    database: String,
    stream: String,
    prefix: String,
}

impl Env<'_> {
    fn database_url(&self) -> String {
        format!("{}/{}", self.args.postgres, self.database)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.args.gatehouse);
        command
            .args(args)
            .env("DATABASE_URL", self.database_url())
            .env("NATS_URL", &self.args.nats)
            .env("GATEHOUSE_NATS_STREAM", &self.stream)
            .env("GATEHOUSE_NATS_PREFIX", &self.prefix)
            .env("GATEHOUSE_SECRET_KEY", BENCH_SECRET_KEY)
            .env(
                "GATEHOUSE_MAILDIR",
                std::env::temp_dir().join(&self.database),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs the binary to its end; answers its standard output, failing with its errors.
    async fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .output()
            .await
            .with_context(|| format!("running gatehouse {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "gatehouse {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).context("gatehouse printed something that is not UTF-8")
    }

    /// Runs the binary under `/usr/bin/time`, its output discarded; answers the seconds it took
    /// and its peak resident memory in MB.
    async fn measured(&self, args: &[&str]) -> anyhow::Result<(f64, f64)> {
        let rss_file =
            std::env::temp_dir().join(format!("{}-rss-{}", self.database, Uuid::new_v4()));
        let mut command = Command::new("/usr/bin/time");
        command
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss_file)
            .arg(&self.args.gatehouse)
            .args(args)
            .env("DATABASE_URL", self.database_url())
            .env("NATS_URL", &self.args.nats)
            .env("GATEHOUSE_SECRET_KEY", BENCH_SECRET_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let out = command
            .output()
            .await
            .context("running /usr/bin/time (apt-get install time)")?;
        let secs = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "gatehouse {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let kb: f64 = std::fs::read_to_string(&rss_file)
            .context("reading /usr/bin/time's report")?
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .parse()
            .context("/usr/bin/time's peak RSS")?;
        let _ = std::fs::remove_file(&rss_file);
        Ok((secs, kb / 1024.0))
    }
}

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
    cleanup(&env, &admin).await;
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

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

async fn cleanup(env: &Env<'_>, admin: &tokio_postgres::Client) {
    let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", env.database);
    if let Err(e) = admin.batch_execute(&drop).await {
        eprintln!("could not drop {}: {e}", env.database);
    }
    if let Ok(nats) = async_nats::connect(&env.args.nats).await {
        let js = async_nats::jetstream::new(nats);
        let _ = js.delete_stream(&env.stream).await;
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&env.database));
}

async fn create_org(env: &Env<'_>, name: &str, email: &str) -> anyhow::Result<CreatedOrg> {
    let out = env
        .output(&[
            "org",
            "create",
            "--name",
            name,
            "--owner-email",
            email,
            "--owner-password",
            OWNER_PASSWORD,
            "--print-api-key",
            "--json",
        ])
        .await?;
    serde_json::from_str(out.trim()).context("reading `org create --json`")
}

async fn scenarios(env: &Env<'_>) -> anyhow::Result<Vec<Row>> {
    let args = env.args;
    let mut rows = Vec::new();
    env.output(&["migrate"]).await?;
    let tiny = create_org(env, "Tiny", "owner@tiny.bench.example").await?;
    let big = create_org(env, "Long history", "owner@long.bench.example").await?;

    println!(
        "generating {} events ({} admins) in one organisation…",
        args.events, args.admins
    );
    let started = Instant::now();
    let mut client = connect(&env.database_url()).await?;
    let history = history::generate(
        &mut client,
        big.org_id,
        big.owner_id,
        args.admins,
        args.events,
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
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE org_id = $1",
            &[&big.org_id],
        )
        .await
        .context("counting the organisation's events")?
        .get(0);
    let total = total as f64;

    // The ceiling of reading the history: a keyset scan of the events table.
    let scan_secs = keyset_scan(&client, big.org_id).await?;
    let scan_rate = total / scan_secs;
    println!("keyset scan: {scan_rate:.0} events/s");

    let org = big.org_id.to_string();
    let tiny_org = tiny.org_id.to_string();
    let cli = Cli {
        env,
        org: &org,
        tiny_org: &tiny_org,
        total,
        scan_rate,
    };
    keep(&mut rows, "CLI", cli.measure().await);

    // As-of and the HTTP export, against `gatehouse serve` over loopback.
    let key = big.api_key.context("org create printed no API key")?;
    let server = Server::start(env).await?;
    keep(
        &mut rows,
        "HTTP",
        over_http(env, &server, &key, &history, scan_rate).await,
    );
    server.stop().await;
    Ok(rows)
}

/// Adds a group's rows, or says why the group could not be measured (the others still are).
fn keep(rows: &mut Vec<Row>, group: &str, measured: anyhow::Result<Vec<Row>>) {
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
    server: &Server,
    key: &str,
    history: &history::History,
    scan_rate: f64,
) -> anyhow::Result<Vec<Row>> {
    let args = env.args;
    let mut rows = Vec::new();
    let idle = server.rss_mb()?;
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
    let peak = server.peak_rss_mb()?;
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

/// `gatehouse serve --roles api` on a free loopback port.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(env: &Env<'_>) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = env.command(&["serve", "--roles", "api"]);
        command
            .env("GATEHOUSE_LISTEN", &listen)
            .env("GATEHOUSE_PUBLIC_URL", format!("http://{listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().context("starting gatehouse serve")?;
        let base = format!("http://{listen}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = http.get(format!("{base}/healthz")).send().await
                && answer.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("gatehouse serve did not answer /healthz within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server { child, base })
    }

    fn status_field(&self, field: &str) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading the server's /proc status")?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .context("no such field in /proc status")?
            .parse()
            .context("a size in kB")?;
        Ok(kb / 1024.0)
    }

    /// The resident memory now, in MB.
    fn rss_mb(&self) -> anyhow::Result<f64> {
        self.status_field("VmRSS:")
    }

    /// The peak resident memory so far, in MB.
    fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        self.status_field("VmHWM:")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
