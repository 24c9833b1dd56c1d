//! The issue-7 scenarios against `gatehouse serve` with every role, as users run it.
//!
//! One stage serves them all: the organisations and administrators are appended straight into
//! the store ([`crate::seed`]), then one `gatehouse serve` starts and its projections catch up
//! before anything is measured. The ceilings that need many Postgres connections (64 for the
//! one-row inserts, a pool of 32 for the ceiling server) are measured just before serve starts:
//! beside serve's own pool of 32 (and whatever else uses the shared Postgres) they would not fit
//! under Postgres's default `max_connections` of 100. The groups then run in an order that
//! keeps them apart: the commands, the widget, the memory reading they lead to, the projection
//! lag, the long stream, the login storm, and the bulk last (its 10,000 events and emails would
//! weigh on whatever followed).
//!
//! - [`commands`]: `PUT /admins/{id}/mfa` over 64 connections (scenario 1).
//! - [`widget`]: the widget's page of 50 from 100,000 admins, against the ceiling server (5).
//! - [`lag`]: from a command's answer to the widget showing it, under load (4).
//! - [`long_stream`]: a command on an admin with a 100,000-event stream (9); it appends that
//!   stream itself, once the memory was read, so that the memory reading is of what issue 7
//!   names (100,000 admins, scenarios 1 and 5) and not of 100,000 logins applied besides.
//! - [`login`]: the login storm, 100 password logins at once beside the widget at 16
//!   connections, against cores ÷ one argon2id verify (8); it seeds its own organisation of
//!   admins with a password, after the long stream and before the bulk.
//! - [`bulk`]: one bulk Require MFA of 10,000 admins (3).
//! - [`relay`]: the long history drained to JetStream (6); it runs before this stage, over the
//!   long history (see [`crate::run`]).
//! - [`peer`]: the command service in-process against cqrs-es + postgres-es (2), measured by
//!   `gatehouse-peer-bench` on databases of its own; it runs first, before anything else loads
//!   the machine (see [`crate::run`]).

pub mod bulk;
pub mod commands;
pub mod lag;
pub mod login;
pub mod long_stream;
pub mod peer;
pub mod relay;
pub mod widget;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use hyper::header::HeaderName;
use uuid::Uuid;

use crate::env::{Env, Org};
use crate::load::{self, Conn};
use crate::report::Row;
use crate::run::keep;
use crate::server::{Server, free_addr};
use crate::{Group, ceiling, seed};

use commands::Fleet;

/// The groups measured against the stage.
pub const GROUPS: &[Group] = &[
    Group::Commands,
    Group::Bulk,
    Group::Widget,
    Group::Lag,
    Group::History,
    Group::Login,
    Group::Memory,
];

/// Concurrent connections of the loaded scenarios (issue 7).
pub const CONNECTIONS: usize = 64;

/// Administrators of the widget's organisation (issue 7, scenarios 5 and 11).
pub const WIDGET_ADMINS: usize = 100_000;

/// How long serve's projections and relay may take to catch up with what was appended.
const CATCH_UP: Duration = Duration::from_secs(30 * 60);

const MIN_POSITION: HeaderName = HeaderName::from_static("gatehouse-min-position");

/// What the scenarios share.
pub struct Stage<'a> {
    pub env: &'a Env<'a>,
    pub server: Server,
    pub client: tokio_postgres::Client,
    /// The 16-organisation fleet and the one-organisation fleet (commands and lag).
    pub fleets: Option<(Arc<Fleet>, Arc<Fleet>)>,
    /// The widget's organisation and its admins (widget, memory, login, bulk).
    pub widget: Option<(Org, Vec<Uuid>)>,
    /// The lag's organisation and its one probed admin.
    pub lag: Option<(Org, Uuid)>,
    pub ceilings: Ceilings,
}

/// The ceilings measured before serve started, for the groups that run.
#[derive(Default)]
pub struct Ceilings {
    /// One-row INSERT transactions per second over [`CONNECTIONS`] connections.
    pub insert_tx: Option<anyhow::Result<f64>>,
    /// The ceiling server's page of 50, loaded as the widget is.
    pub widget: Option<anyhow::Result<load::Report>>,
}

impl Ceilings {
    async fn measure(env: &Env<'_>, client: &tokio_postgres::Client) -> Ceilings {
        let args = env.args;
        let mut ceilings = Ceilings::default();
        if args.runs(Group::Commands) {
            let measured =
                ceiling::insert_transactions(env, CONNECTIONS, duration(args.quick)).await;
            if let Ok(rate) = &measured {
                println!("one-row INSERT transactions, {CONNECTIONS} connections: {rate:.0} tx/s");
            }
            ceilings.insert_tx = Some(measured);
        }
        if args.runs(Group::Widget) {
            let measured = widget::ceiling_load(env, client, duration(args.quick)).await;
            if let Ok(report) = &measured {
                println!(
                    "ceiling server page: {}",
                    report.summary().unwrap_or_default()
                );
            }
            ceilings.widget = Some(measured);
        }
        ceilings
    }
}

/// A ceiling measured before serve started, or why it could not be.
pub fn measured_ceiling<T>(measured: &Option<anyhow::Result<T>>) -> anyhow::Result<&T> {
    match measured {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => bail!("its ceiling could not be measured: {e:#}"),
        None => bail!("its ceiling was not measured"),
    }
}

/// A load's duration: shorter with --quick.
fn duration(quick: bool) -> Duration {
    Duration::from_secs(if quick { 5 } else { 20 })
}

impl Stage<'_> {
    /// A load's duration: shorter with --quick.
    pub fn duration(&self) -> Duration {
        duration(self.env.args.quick)
    }

    /// A fresh connection to serve.
    pub async fn conn(&self) -> anyhow::Result<Conn> {
        Conn::open(self.server.addr).await
    }
}

/// Sets the stage and runs the selected groups on it; a group that fails is reported and the
/// others still run.
pub async fn measure(env: &Env<'_>, rows: &mut Vec<Row>) {
    let stage = match prepare(env).await {
        Ok(stage) => stage,
        Err(e) => {
            eprintln!("the serve scenarios could not be set up: {e:#}");
            return;
        }
    };
    run_groups(&stage, rows).await;
    stage.server.stop().await;
}

/// Runs the selected groups one after the other, each on a settled serve (see [`settle`]).
async fn run_groups(stage: &Stage<'_>, rows: &mut Vec<Row>) {
    let args = stage.env.args;
    let loaded_peak = stage.server.process.peak_rss_mb();
    let mut rate = None;
    if args.runs(Group::Commands) {
        let measured = commands::measure(stage).await;
        rate = measured.as_ref().ok().map(|m| m.rate);
        keep(rows, "commands", measured.map(|m| m.rows));
    }
    if args.runs(Group::Widget) {
        settle_or_say(stage).await;
        keep(rows, "widget", widget::measure(stage).await);
    }
    if args.runs(Group::Memory) {
        keep(rows, "memory", memory(stage, loaded_peak));
    }
    if args.runs(Group::Lag) {
        settle_or_say(stage).await;
        keep(rows, "lag", lag::measure(stage, rate).await);
    }
    if args.runs(Group::History) {
        settle_or_say(stage).await;
        keep(rows, "history", long_stream::measure(stage).await);
    }
    if args.runs(Group::Login) {
        settle_or_say(stage).await;
        keep(rows, "login", login::measure(stage).await);
    }
    if args.runs(Group::Bulk) {
        settle_or_say(stage).await;
        keep(rows, "bulk", bulk::measure(stage).await);
    }
}

/// Settles serve before a group, or says why it could not (the group still runs).
async fn settle_or_say(stage: &Stage<'_>) {
    let started = Instant::now();
    match settle(stage).await {
        Ok(()) => println!(
            "  serve settled in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("serve did not settle: {e:#}"),
    }
}

/// Waits until what the previous group left behind is done: the read models and the relay at
/// the store's head, and the mailer's consumer with nothing pending or unacknowledged (a
/// command scenario leaves thousands of Set Up MFA emails to send). Otherwise that work would
/// share the machine with the next group's load and count against it.
pub async fn settle(stage: &Stage<'_>) -> anyhow::Result<()> {
    let key = match (&stage.widget, &stage.fleets, &stage.lag) {
        (Some((org, _)), _, _) | (_, _, Some((org, _))) => org.key.clone(),
        (None, Some((fleet, _)), None) => fleet.key(0),
        (None, None, None) => return Ok(()),
    };
    let head: i64 = stage
        .client
        .query_one("SELECT last_position FROM store_head", &[])
        .await
        .context("reading the store head")?
        .get(0);
    caught_up(stage, &key, head).await?;
    let env = stage.env;
    let nats = async_nats::connect(&env.args.nats)
        .await
        .context("connecting to NATS")?;
    let js = async_nats::jetstream::new(nats);
    let stream = js
        .get_stream(&env.stream)
        .await
        .context("the benchmark's stream")?;
    let mut mailer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&format!(
            "{}_mailer",
            env.prefix
        ))
        .await
        .map_err(|e| anyhow::anyhow!("the mailer's consumer: {e}"))?;
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let info = mailer.info().await.context("the mailer's consumer")?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the mailer still had {} messages to handle after {CATCH_UP:?}",
                info.num_pending + info.num_ack_pending as u64
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serve's peak RSS once the admins were loaded, and after the scenarios that ran since.
fn memory(stage: &Stage<'_>, loaded_peak: anyhow::Result<f64>) -> anyhow::Result<Vec<Row>> {
    let args = stage.env.args;
    let loaded = loaded_peak?;
    let after = stage.server.process.peak_rss_mb()?;
    let ran: Vec<&str> = [(Group::Commands, "1"), (Group::Widget, "5")]
        .iter()
        .filter(|(g, _)| args.runs(*g))
        .map(|(_, n)| *n)
        .collect();
    let admins = stage.widget.as_ref().map_or(0, |(_, ids)| ids.len());
    Ok(vec![
        Row::new(
            &format!("serve peak RSS after loading {admins} admins"),
            "MB",
        )
        .value(loaded)
        .rss(loaded),
        Row::new(
            &format!(
                "serve peak RSS after loading, then scenarios {}",
                if ran.is_empty() {
                    "(none)".to_owned()
                } else {
                    ran.join(" and ")
                }
            ),
            "MB",
        )
        .value(after)
        .rss(after),
    ])
}

/// Appends what the selected groups need, starts serve and waits until it caught up.
async fn prepare<'a>(env: &'a Env<'a>) -> anyhow::Result<Stage<'a>> {
    let args = env.args;
    let started = Instant::now();
    println!("setting the stage for the serve scenarios…");
    let client = env.connect().await?;
    let store = seed::store(&env.database_url()).await?;
    ceiling::prepare(&store, &client).await?;
    let fleets = if args.runs_any(&[Group::Commands, Group::Lag]) {
        Some(commands::seed_fleets(env, &store).await?)
    } else {
        None
    };
    let widget = if args.runs_any(&[Group::Widget, Group::Memory, Group::Login, Group::Bulk]) {
        let org = env
            .create_org("Widget", "owner@widget.bench.example")
            .await?;
        let n = if args.runs_any(&[Group::Widget, Group::Memory, Group::Login]) {
            WIDGET_ADMINS
        } else {
            bulk::ADMINS * bulk::REPEATS
        };
        let ids = seed::admins(&store, &org, n, false).await?;
        Some((org, ids))
    } else {
        None
    };
    let lag = if args.runs(Group::Lag) {
        let org = env.create_org("Lag", "owner@lag.bench.example").await?;
        let probe = seed::admins(&store, &org, 1, false).await?;
        let probe = *probe.first().context("the probe admin")?;
        Some((org, probe))
    } else {
        None
    };
    store.pool.close();
    println!(
        "  appended in {:.1} s; measuring the ceilings that need many connections",
        started.elapsed().as_secs_f64()
    );
    let ceilings = Ceilings::measure(env, &client).await;
    println!("  starting gatehouse serve (every role)");
    let addr = free_addr()?;
    let server = Server::start(
        env.serve("api,relay,projections,mailer", addr),
        addr,
        "gatehouse serve",
    )
    .await?;
    let stage = Stage {
        env,
        server,
        client,
        fleets,
        widget,
        lag,
        ceilings,
    };
    // With only the long-stream group, the stage has no organisation yet: nothing to wait for.
    if let Ok(key) = any_key(&stage) {
        let head = env.head(&stage.client).await?;
        caught_up(&stage, &key, head).await?;
    }
    println!(
        "  serve caught up after {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(stage)
}

/// An API key of one of the stage's organisations (for reads that only wait).
fn any_key(stage: &Stage<'_>) -> anyhow::Result<String> {
    stage
        .fleets
        .as_ref()
        .map(|(f, _)| f.key(0))
        .or(stage.widget.as_ref().map(|(o, _)| o.key.clone()))
        .or(stage.lag.as_ref().map(|(o, _)| o.key.clone()))
        .context("no organisation on the stage")
}

/// Waits until every read model has applied `position` (asked with `Gatehouse-Min-Position`,
/// which waits up to 5 s a request) and the relay has published it.
pub async fn caught_up(stage: &Stage<'_>, key: &str, position: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + CATCH_UP;
    let mut conn = stage.conn().await?;
    loop {
        let mut request = load::request(Method::GET, "/api/v1/home/widgets", Some(key), None)?;
        request
            .headers_mut()
            .insert(MIN_POSITION, load::number_header(position));
        let answer = conn.send(request).await?;
        if answer.status.is_success() {
            break;
        }
        if answer.status != hyper::StatusCode::SERVICE_UNAVAILABLE {
            answer.success()?;
        }
        if Instant::now() > deadline {
            bail!("the read models did not reach position {position} within {CATCH_UP:?}");
        }
    }
    loop {
        if relay::cursor(&stage.client).await? >= position {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the relay did not reach position {position} within {CATCH_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
