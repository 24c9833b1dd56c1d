//! The load generator: N tasks, each with its own keep-alive HTTP/1.1 connection, sending
//! requests back to back (or paced to a total rate) for a duration or until a stop flag, timing
//! every answer.
//!
//! Gatehouse and the ceiling server are loaded by this same code, so their figures compare: a
//! cost of the client (on a 2-core machine it shares the CPU with the server) weighs on both.
//! It speaks plain hyper rather than a pooled client so that a connection is exactly one task's,
//! opened before the clock starts and kept for the whole run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::report::{Row, quantile};

/// A request as the load generator sends it.
pub type Req = Request<Full<Bytes>>;

/// The header carrying an API key.
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The largest part of a failed answer's body kept to explain the failure.
const FAILURE_EXCERPT: usize = 300;

/// A request to `path` on the loopback server, with an API key and a JSON body when given.
pub fn request(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Req> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "127.0.0.1");
    if let Some(key) = key {
        builder = builder.header(API_KEY, key);
    }
    let body = match body {
        Some(json) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(json).context("encoding a request body")?)
        }
        None => Bytes::new(),
    };
    builder
        .body(Full::new(body))
        .with_context(|| format!("building a request to {path}"))
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("an answer that is not JSON")
    }

    /// The `Gatehouse-Position` header of a command's answer.
    pub fn position(&self) -> anyhow::Result<i64> {
        self.headers
            .get("gatehouse-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .context("a command answer without a Gatehouse-Position")
    }

    /// Fails unless the status is 2xx, quoting the start of the body.
    pub fn success(self) -> anyhow::Result<Answer> {
        if self.status.is_success() {
            Ok(self)
        } else {
            bail!("{}", self.failure())
        }
    }

    fn failure(&self) -> String {
        let end = self.body.len().min(FAILURE_EXCERPT);
        format!(
            "{}: {}",
            self.status,
            String::from_utf8_lossy(&self.body[..end])
        )
    }
}

/// One keep-alive HTTP/1.1 connection to a server.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("starting HTTP/1.1")?;
        tokio::spawn(async move {
            // Ends when the connection closes; a failure shows in the next send.
            let _ = connection.await;
        });
        Ok(Conn { addr, sender })
    }

    /// Sends `request` and reads its whole answer. A connection the server closed is opened
    /// again before sending.
    pub async fn send(&mut self, request: Req) -> anyhow::Result<Answer> {
        if self.sender.is_closed() {
            *self = Conn::open(self.addr).await?;
        }
        self.sender
            .ready()
            .await
            .context("waiting for the connection")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .context("sending a request")?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading an answer")?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// When a load stops.
#[derive(Clone)]
pub enum Until {
    /// After this long (requests in flight then finish).
    Elapsed(Duration),
    /// When the flag is set.
    Flag(Arc<AtomicBool>),
}

/// How to load a server.
#[derive(Clone)]
pub struct Plan {
    /// Concurrent tasks, one connection each.
    pub connections: usize,
    pub until: Until,
    /// Requests per second in all, spread evenly over the tasks; `None`: back to back.
    pub rate: Option<f64>,
}

/// What a load measured. Latencies are those of 2xx answers only.
#[derive(Debug, Default)]
pub struct Report {
    pub ok: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    pub secs: f64,
    latencies_ms: Vec<f64>,
}

impl Report {
    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The median and 99th percentile latency of the 2xx answers, in milliseconds.
    pub fn p50_p99(&self) -> (f64, f64) {
        let mut latencies = self.latencies_ms.clone();
        (
            quantile(&mut latencies, 0.5),
            quantile(&mut latencies, 0.99),
        )
    }

    /// A row of the 2xx rate against `ceiling`, with the latencies of the 2xx answers.
    pub fn row(&self, scenario: &str, unit: &str, ceiling: f64) -> Row {
        let (p50, p99) = self.p50_p99();
        Row::new(scenario, unit)
            .against(self.rate(), ceiling)
            .latency(p50, p99)
    }

    /// Fails when nothing succeeded; otherwise says how it went, failures included.
    pub fn summary(&self) -> anyhow::Result<String> {
        let failures = match &self.first_failure {
            Some(first) => format!(", {} failed (first: {first})", self.failed),
            None => String::new(),
        };
        if self.ok == 0 {
            bail!("no request succeeded{failures}");
        }
        Ok(format!(
            "{} ok in {:.1} s: {:.0}/s{failures}",
            self.ok,
            self.secs,
            self.rate()
        ))
    }

    /// " (N failed)" for a scenario's name when requests failed, else nothing.
    pub fn failures(&self) -> String {
        if self.failed == 0 {
            String::new()
        } else {
            format!(" ({} failed)", self.failed)
        }
    }

    fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies_ms.extend(other.latencies_ms);
    }

    fn record(&mut self, started: Instant, answer: anyhow::Result<Answer>) {
        let failure = match answer {
            Ok(answer) if answer.status.is_success() => {
                self.ok += 1;
                self.latencies_ms
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                return;
            }
            Ok(answer) => answer.failure(),
            Err(e) => format!("{e:#}"),
        };
        self.failed += 1;
        self.first_failure.get_or_insert(failure);
    }
}

/// Builds the `i`th request of task `task`.
pub trait MakeRequest: Fn(usize, u64) -> anyhow::Result<Req> + Send + Sync + 'static {}
impl<F: Fn(usize, u64) -> anyhow::Result<Req> + Send + Sync + 'static> MakeRequest for F {}

/// Loads the server at `addr` as `plan` says, with the requests `make` builds. Connections are
/// opened before the clock starts.
pub async fn run(addr: SocketAddr, plan: &Plan, make: impl MakeRequest) -> anyhow::Result<Report> {
    let tasks = plan.connections.max(1);
    let conns = futures::future::try_join_all((0..tasks).map(|_| Conn::open(addr))).await?;
    let make = Arc::new(make);
    let started = Instant::now();
    let interval = plan
        .rate
        .map(|rate| Duration::from_secs_f64(tasks as f64 / rate.max(0.001)));
    let mut set = JoinSet::new();
    for (task, conn) in conns.into_iter().enumerate() {
        let worker = Worker {
            task,
            conn,
            make: make.clone(),
            until: plan.until.clone(),
            started,
            // Tasks are staggered over one interval, so a paced load is even, not bursty.
            pace: interval
                .map(|every| (started + every.mul_f64(task as f64 / tasks as f64), every)),
        };
        set.spawn(worker.run());
    }
    let mut report = Report::default();
    while let Some(done) = set.join_next().await {
        report.merge(done.context("a load task panicked")??);
    }
    report.secs = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One task of a load.
struct Worker<F> {
    task: usize,
    conn: Conn,
    make: Arc<F>,
    until: Until,
    started: Instant,
    pace: Option<(Instant, Duration)>,
}

impl<F: MakeRequest> Worker<F> {
    async fn run(mut self) -> anyhow::Result<Report> {
        let mut report = Report::default();
        let mut ticks = self.pace.map(|(first, every)| {
            let mut ticks = tokio::time::interval_at(first.into(), every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        let mut i = 0u64;
        loop {
            if let Some(ticks) = &mut ticks {
                ticks.tick().await;
            }
            if self.done() {
                break;
            }
            let request = (self.make)(self.task, i)?;
            let sent = Instant::now();
            let answer = self.conn.send(request).await;
            report.record(sent, answer);
            i += 1;
        }
        Ok(report)
    }

    /// Whether to stop before the next request.
    fn done(&self) -> bool {
        match &self.until {
            Until::Elapsed(limit) => self.started.elapsed() >= *limit,
            Until::Flag(stop) => stop.load(Ordering::Relaxed),
        }
    }
}

/// A header value from a number (always valid).
pub fn number_header(n: i64) -> HeaderValue {
    HeaderValue::from(n)
}
