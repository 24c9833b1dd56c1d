//! The fault suite: the real `gatehouse serve` binary under load while the test breaks what it
//! stands on, then proof that nothing acknowledged was lost and nothing was done by half.
//!
//! How it works:
//! - Every test runs processes of its own and never touches the shared services' lifecycle:
//!   `gatehouse serve` children (killed with SIGKILL when the test says, and when dropped), a
//!   `nats-server` of its own where NATS is the fault, a Postgres cluster of its own where
//!   Postgres is the fault ([`gatehouse_tests::faults`]). The shared Postgres and NATS only ever
//!   hold the test's own database and stream ([`TestEnv`]), dropped at the end.
//! - The load: one HTTP client per administrator, each alternating
//!   `PUT /api/v1/admins/{id}/mfa` (true, false, …) and now and then
//!   `POST /api/v1/admins/{id}/mfa/reset`, plus a bulk `POST /api/v1/admins/require-mfa` over
//!   thousands of administrators (appended straight to the store through `gatehouse_store`'s
//!   own append, since creating 10,000 admins over HTTP would cost 10,000 argon2 hashes). Every
//!   request and its answer (or the lack of one) is recorded.
//! - The faults: `kill -9` of `serve` in the middle of the burst and of a 10,000-admin bulk,
//!   and again while the mailer writes the bulk's 10,000 Set Up MFA emails;
//!   NATS killed for 30 s under load and restarted; Postgres stopped (`pg_ctl stop -m
//!   immediate`) under load and started again; and, on three NATS servers clustered on loopback
//!   (stream replicas 3) with two `serve` processes behind the load (each client moves to the
//!   other process when one stops answering), the node leading the stream and the process whose
//!   relay is active (`gatehouse_relay_active` on `/metrics`) both killed at once: the standby
//!   relay must take over, and a downstream durable consumer of the test's own must be given
//!   every event, with its stored id.
//! - The proof, after the fault ([`verify`]): every 2xx answer's `Gatehouse-Position` names its
//!   own event in the store (the bulk's: all its events, found by its `correlationid`); a bulk
//!   is in the store entirely or not at all; positions are gapless; the stream holds exactly one
//!   message per event (count == store head, every `Nats-Msg-Id` once and equal to the stored
//!   event id); every read model reaches the head (awaited with `Gatehouse-Min-Position`) and
//!   equals the state folded from the store; the mailer settles and the Maildir holds no email
//!   twice (distinct `Message-ID`s, at most three Set Up MFA emails per admin, each one a ledger
//!   row that was sent or may have been sent).
//!
//! The bulk meets `kill -9` twice: 700 ms after it was sent (in the runs so far always while it
//! was being decided, so it was wholly absent; had it committed, it must be wholly present), and,
//! sent again, the moment its 10,000 events are committed (the store head is polled; its answer
//! is most likely lost, and it must be wholly present: a third send finds every admin already
//! required).
//! While NATS is down every command is still acknowledged (only resets over the hourly limit
//! get 429). While Postgres is down every answer is a 503 with `Retry-After` in the contract's
//! error format, arriving within the pool's timeouts (waiting then creating, 5 s each, plus a
//! margin): no hang; once it is back, the same `serve` process answers 2xx again, its pool having
//! recovered by itself.
//!
//! Waiting is by polling conditions with deadlines; the only fixed pauses are the faults' own
//! durations (the NATS outage, the moment of the first kill during the bulk). A failing test (or
//! any test with `GATEHOUSE_FAULTS_KEEP=1`) keeps its serve logs and Maildir and prints where.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::Utc;
use gatehouse_domain::{AdminId, Email, OrgId};
use gatehouse_events::types::AdminCreated;
use gatehouse_events::{Actor, Event, Role};
use gatehouse_store::{AppendRequest, Db, DbConfig, Expected};
use gatehouse_tests::faults::{NatsCluster, NatsServer, PostgresServer};
use gatehouse_tests::{TestEnv, eventually, nats_url};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// How long the pipeline may take to settle after a fault (the mailer's JetStream ack wait,
/// after which a message a killed process held is delivered again, is 60 s).
const PATIENCE: Duration = Duration::from_secs(240);

/// The pool waits this long for a connection (`gatehouse_store::db`), and as long to create one.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Set Up MFA emails per admin per hour (`gatehouse_mailer::ledger::SETUP_EMAILS_PER_HOUR`).
const SETUP_EMAILS_PER_HOUR: usize = 3;

/// Clients (one per administrator) in every burst.
const CLIENTS: usize = 16;

const MFA_REQUIRED: &str = "gatehouse.admin.mfa_required.v1";
const MFA_REMOVED: &str = "gatehouse.admin.mfa_requirement_removed.v1";
const RESET_REQUESTED: &str = "gatehouse.admin.mfa_reset_requested.v1";
const ADMIN_CREATED: &str = "gatehouse.admin.created.v1";

/// A directory of the test's own, removed when dropped, kept (and named) when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("gatehouse-{what}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("GATEHOUSE_FAULTS_KEEP").is_some() {
            eprintln!(
                "the test's files (serve logs, Maildir) are kept in {}",
                self.0.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// What `gatehouse` is pointed at.
struct Deployment {
    database_url: String,
    /// One server's URL, or a cluster's, comma-separated.
    nats_url: String,
    stream: String,
    prefix: String,
    /// `GATEHOUSE_NATS_REPLICAS`: 1 on a single server, 3 on a cluster.
    replicas: usize,
    files: TempDir,
}

impl Deployment {
    fn new(database_url: String, nats_url: String, stream: &str, prefix: &str) -> Deployment {
        Deployment {
            database_url,
            nats_url,
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            replicas: 1,
            files: TempDir::new("faults"),
        }
    }

    fn maildir(&self) -> PathBuf {
        self.files.0.join("mail")
    }

    fn gatehouse(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.env("DATABASE_URL", &self.database_url)
            .env("NATS_URL", &self.nats_url)
            .env("GATEHOUSE_NATS_STREAM", &self.stream)
            .env("GATEHOUSE_NATS_PREFIX", &self.prefix)
            .env("GATEHOUSE_NATS_REPLICAS", self.replicas.to_string())
            .env("GATEHOUSE_SECRET_KEY", SECRET_KEY)
            .env_remove("GATEHOUSE_SMTP_URL")
            .env("GATEHOUSE_MAILDIR", self.maildir())
            .env("GATEHOUSE_PUBLIC_URL", "http://127.0.0.1:8080")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// `gatehouse org create --json --print-api-key`.
    fn org_create(&self) -> Org {
        let created = common::org_create(self.gatehouse(), "owner@acme.example");
        let uuid = |field: &str| -> Uuid {
            created[field]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect(field)
        };
        Org {
            id: uuid("org_id"),
            owner: uuid("owner_id"),
            key: created["api_key"].as_str().expect("an API key").to_owned(),
        }
    }
}

struct Org {
    id: Uuid,
    owner: Uuid,
    key: String,
}

/// A `gatehouse serve` child process, killed when dropped.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    /// Starts `serve` on a free port, its stderr appended to the deployment's log, and waits
    /// until it is ready.
    async fn start(deployment: &Deployment) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(deployment.files.0.join("serve.log"))
            .expect("the serve log");
        let child = deployment
            .gatehouse()
            .arg("serve")
            .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("serve starts");
        let serve = Serve {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        common::await_success(&format!("{}/readyz", serve.base), Duration::from_secs(120)).await;
        serve
    }

    /// SIGKILL, as a crash or the OOM killer would, and reaps it.
    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn http() -> reqwest::Client {
    // A hang shows as a missing answer after 60 s, not as a stuck test.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// What a request asked.
#[derive(Debug, Clone)]
enum Ask {
    SetMfa { admin: Uuid, required: bool },
    Reset { admin: Uuid },
    Bulk { ids: Arc<Vec<Uuid>> },
}

/// One request and what came back.
#[derive(Debug, Clone)]
struct Answer {
    ask: Ask,
    sent_at: Instant,
    took: Duration,
    /// `None`: no answer at all (the connection broke).
    status: Option<u16>,
    position: Option<i64>,
    retry_after: bool,
    body: Option<Value>,
    /// The request repeats one that got no success answer, so it may find its change applied.
    maybe_repeat: bool,
}

impl Answer {
    fn is_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

async fn send(ask: Ask, request: reqwest::RequestBuilder, maybe_repeat: bool) -> Answer {
    let sent_at = Instant::now();
    let mut answer = Answer {
        ask,
        sent_at,
        took: Duration::ZERO,
        status: None,
        position: None,
        retry_after: false,
        body: None,
        maybe_repeat,
    };
    if let Ok(response) = request.send().await {
        answer.status = Some(response.status().as_u16());
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        answer.position = header("gatehouse-position").and_then(|v| v.parse().ok());
        answer.retry_after = header("retry-after").is_some();
        match response.bytes().await {
            Ok(bytes) => answer.body = serde_json::from_slice(&bytes).ok(),
            // The status arrived but the body did not: the answer is not complete.
            Err(_) => answer.status = None,
        }
    }
    answer.took = sent_at.elapsed();
    answer
}

/// The load: one client per administrator until `stop`, recording every answer.
struct Load {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: CancellationToken,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Client `i` talks to `bases[i % bases.len()]` and, like a load balancer's health check,
    /// moves to the next base after a request without an answer. `give_up_unanswered`: a client
    /// stops at its first request without an answer (the server was killed); otherwise clients
    /// keep going through failures.
    fn start(bases: &[&str], key: &str, admins: &[Uuid], give_up_unanswered: bool) -> Load {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let bases: Arc<Vec<String>> = Arc::new(bases.iter().map(|b| (*b).to_owned()).collect());
        let clients = admins
            .iter()
            .enumerate()
            .map(|(client, &admin)| {
                let (answers, stop, bases, key) =
                    (answers.clone(), stop.clone(), bases.clone(), key.to_owned());
                tokio::spawn(async move {
                    let http = http();
                    let mut want = true;
                    let mut repeat = false;
                    let mut i = 0u64;
                    let mut at = client % bases.len();
                    while !stop.is_cancelled() {
                        i += 1;
                        let url = format!("{}/api/v1/admins/{admin}", bases[at]);
                        let answer = if i.is_multiple_of(5) {
                            let request = http
                                .post(format!("{url}/mfa/reset"))
                                .header("x-api-key", &key);
                            send(Ask::Reset { admin }, request, false).await
                        } else {
                            let request = http
                                .put(format!("{url}/mfa"))
                                .header("x-api-key", &key)
                                .json(&json!({ "required": want }));
                            let ask = Ask::SetMfa {
                                admin,
                                required: want,
                            };
                            let answer = send(ask, request, repeat).await;
                            if answer.is_success() {
                                want = !want;
                                repeat = false;
                            } else {
                                repeat = true;
                            }
                            answer
                        };
                        let unanswered = answer.status.is_none();
                        if unanswered {
                            at = (at + 1) % bases.len();
                        }
                        if !answer.is_success() {
                            // Failures come fast; do not spin on them.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        lock(&answers).push(answer);
                        if unanswered && give_up_unanswered {
                            break;
                        }
                    }
                })
            })
            .collect();
        Load {
            answers,
            stop,
            clients,
        }
    }

    fn answers(&self) -> Vec<Answer> {
        lock(&self.answers).clone()
    }

    fn successes_since(&self, since: Instant) -> usize {
        lock(&self.answers)
            .iter()
            .filter(|a| a.sent_at >= since && a.is_success())
            .count()
    }

    async fn await_successes_since(&self, since: Instant, n: usize, what: &str) {
        eventually(PATIENCE, what, || async {
            (self.successes_since(since) >= n).then_some(())
        })
        .await;
    }

    async fn finish(self) -> Vec<Answer> {
        self.stop.cancel();
        for client in self.clients {
            client.await.expect("a load client does not panic");
        }
        lock(&self.answers).clone()
    }
}

/// Locks a mutex; a poisoned one (a client panicked) still holds the answers.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Creates `n` administrators over HTTP (with MFA not required), in parallel.
async fn create_admins(base: &str, key: &str, n: usize) -> Vec<Uuid> {
    let http = http();
    let requests = (0..n).map(|i| {
        http.post(format!("{base}/api/v1/admins"))
            .header("x-api-key", key)
            .json(&json!({
                "email": format!("client{i}@acme.example"), "first_name": "Client",
                "last_name": format!("{i}"), "role": "administrator",
                "password": "a long enough password", "mfa_required": false,
            }))
            .send()
    });
    let mut ids = Vec::new();
    for response in futures::future::join_all(requests).await {
        let admin: Value = response
            .expect("POST /admins")
            .error_for_status()
            .expect("201")
            .json()
            .await
            .expect("an Admin");
        ids.push(
            admin["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("an id"),
        );
    }
    ids
}

/// Appends the creation of `n` administrators without MFA required, as the owner, a thousand
/// per append, through the store's own append (envelopes, chain, positions as usual) with their
/// credential rows (an address for their emails, no password), as the command service would.
async fn seed_admins(database_url: &str, org: &Org, n: usize) -> Vec<Uuid> {
    let db = Db::connect(&DbConfig {
        url: database_url.to_owned(),
        pool_size: 1,
    })
    .await
    .expect("the store");
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(1000) {
        let mut events = Vec::with_capacity(chunk.len());
        let mut statements = Vec::with_capacity(chunk.len());
        for &id in chunk {
            let email = format!("bulk-{}@acme.example", id.simple());
            statements.push(gatehouse_auth::rows::insert_admin(
                AdminId(id),
                OrgId(org.id),
                &Email::parse(&email).expect("a valid address"),
                Role::Manager,
                None,
            ));
            events.push(Event::AdminCreated(AdminCreated {
                admin_id: id,
                email,
                first_name: "Bulk".into(),
                last_name: "Admin".into(),
                role: Role::Manager,
                mfa_required: false,
            }));
        }
        db.append(AppendRequest {
            org_id: org.id,
            actor: Actor::Admin(org.owner),
            correlation_id: Uuid::new_v4(),
            time: Utc::now(),
            auth_method: Some("api-key"),
            events,
            expected: chunk.iter().map(|&id| (id, Expected::NoStream)).collect(),
            org_position: None,
            statements,
        })
        .await
        .expect("the admins are appended");
    }
    db.pool.close();
    ids
}

/// Returns once the store's head reached `target` (polled often: the moment matters).
async fn await_head(db: &Db, target: i64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if db.head().await.expect("the store's head") >= target {
            return;
        }
        assert!(
            Instant::now() <= deadline,
            "the head never reached {target}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn bulk_require(base: &str, key: &str, ids: Arc<Vec<Uuid>>) -> Answer {
    let request = http()
        .post(format!("{base}/api/v1/admins/require-mfa"))
        .header("x-api-key", key)
        .json(&json!({ "admin_ids": *ids }));
    send(Ask::Bulk { ids }, request, false).await
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a connection to the test's database");
    tokio::spawn(conn);
    client
}

/// One stored event, as the checks need it.
#[derive(Debug)]
struct Stored {
    event_id: Uuid,
    stream_id: Uuid,
    event_type: String,
    correlation: String,
}

/// What the checks found, for the test's own report.
struct Verified {
    head: i64,
    acknowledged: usize,
    emails: Emails,
}

/// The emails the Maildir holds, after the mailer settled.
struct Emails {
    files: usize,
    /// Set Up MFA emails in the Maildir, per admin.
    setup_per_admin: HashMap<Uuid, usize>,
    /// Ledger rows per state (`sent`, `skipped`, `unknown`: interrupted mid-send, maybe sent).
    states: BTreeMap<String, usize>,
}

/// Everything the module doc promises, checked after a fault.
impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "store head {}, {} acknowledged commands found, {} emails each sent once (ledger: {:?})",
            self.head, self.acknowledged, self.emails.files, self.emails.states
        )
    }
}

async fn verify(
    deployment: &Deployment,
    js: &jetstream::Context,
    base: &str,
    org: &Org,
    answers: &[Answer],
) -> Verified {
    let db = pg(&deployment.database_url).await;
    let head: i64 = db
        .query_one("SELECT last_position FROM store_head", &[])
        .await
        .expect("the store's head")
        .get(0);
    let rows = db
        .query(
            "SELECT position, event_id, stream_id, event_type, envelope->>'correlationid'
             FROM events ORDER BY position",
            &[],
        )
        .await
        .expect("the events");
    let mut events: BTreeMap<i64, Stored> = BTreeMap::new();
    for row in rows {
        events.insert(
            row.get(0),
            Stored {
                event_id: row.get(1),
                stream_id: row.get(2),
                event_type: row.get(3),
                correlation: row.get(4),
            },
        );
    }
    // Gapless: positions 1..=head, each once.
    assert_eq!(
        events.len() as i64,
        head,
        "the store holds one event per position"
    );
    assert!(events.keys().copied().eq(1..=head), "positions are gapless");

    // Every acknowledged command is in the store, at the position it answered.
    let mut by_correlation: HashMap<&str, Vec<&Stored>> = HashMap::new();
    for e in events.values() {
        by_correlation.entry(&e.correlation).or_default().push(e);
    }
    let mut acknowledged = 0;
    for answer in answers.iter().filter(|a| a.is_success()) {
        acknowledged += 1;
        let position = answer
            .position
            .unwrap_or_else(|| panic!("a 2xx answer without Gatehouse-Position: {answer:?}"));
        assert!(
            position <= head,
            "{answer:?} answered a position after the head {head}"
        );
        let at = events.get(&position);
        match &answer.ask {
            Ask::SetMfa { admin, required } => {
                let body = answer.body.as_ref().expect("an Admin");
                assert_eq!(body["mfa"]["required"], *required, "{answer:?}");
                let kind = if *required { MFA_REQUIRED } else { MFA_REMOVED };
                let own = at.is_some_and(|e| e.stream_id == *admin && e.event_type == kind);
                // A repeat may find its change made by the request that lost its answer.
                assert!(
                    own || answer.maybe_repeat,
                    "{answer:?} is not in the store: {at:?}"
                );
            }
            Ask::Reset { admin } => {
                let e = at.expect("the reset's event");
                assert_eq!(
                    (e.stream_id, e.event_type.as_str()),
                    (*admin, RESET_REQUESTED)
                );
            }
            Ask::Bulk { ids } => {
                let body = answer.body.as_ref().expect("a bulk answer");
                let required: HashSet<Uuid> =
                    serde_json::from_value(body["required"].clone()).expect("the required ids");
                let already: Vec<Uuid> = serde_json::from_value(body["already_required"].clone())
                    .expect("the already required ids");
                assert_eq!(required.len() + already.len(), ids.len());
                if !required.is_empty() {
                    let e = at.expect("the bulk's last event");
                    let all = &by_correlation[e.correlation.as_str()];
                    assert!(all.iter().all(|e| e.event_type == MFA_REQUIRED));
                    let subjects: HashSet<Uuid> = all.iter().map(|e| e.stream_id).collect();
                    assert_eq!(
                        all.len(),
                        required.len(),
                        "the bulk's events, by correlationid"
                    );
                    assert_eq!(subjects, required);
                }
            }
        }
    }

    // A bulk, answered or not, is in the store wholly or not at all: per correlationid, the
    // requirement events over its admins cover all of them.
    let mut bulks: Vec<&Arc<Vec<Uuid>>> = Vec::new();
    for answer in answers {
        if let Ask::Bulk { ids } = &answer.ask
            && !bulks.iter().any(|b| Arc::ptr_eq(b, ids))
        {
            bulks.push(ids);
        }
    }
    for ids in bulks {
        let members: HashSet<Uuid> = ids.iter().copied().collect();
        let mut groups: HashMap<&str, usize> = HashMap::new();
        for e in events.values() {
            if e.event_type == MFA_REQUIRED && members.contains(&e.stream_id) {
                *groups.entry(&e.correlation).or_default() += 1;
            }
        }
        assert!(
            groups.values().all(|&n| n == ids.len()),
            "a bulk over {} admins was applied by half: {groups:?}",
            ids.len()
        );
    }

    verify_stream(js, &deployment.stream, &events, head).await;
    verify_read_models(&db, base, org, head).await;
    let emails = verify_emails(&db, js, deployment).await;
    Verified {
        head,
        acknowledged,
        emails,
    }
}

/// The stream holds each event exactly once: count == head, each `Nats-Msg-Id` once and equal
/// to the stored event's id at its `Gatehouse-Position`.
async fn verify_stream(
    js: &jetstream::Context,
    name: &str,
    events: &BTreeMap<i64, Stored>,
    head: i64,
) {
    let head = u64::try_from(head).expect("a positive head");
    eventually(PATIENCE, "the relay publishing up to the head", || async {
        let mut stream = js.get_stream(name).await.ok()?;
        let count = stream.info().await.ok()?.state.messages;
        assert!(
            count <= head,
            "the stream holds {count} messages for {head} events"
        );
        (count == head).then_some(())
    })
    .await;
    let stream = js.get_stream(name).await.expect("the stream");
    let mut ids = HashSet::new();
    for sequence in 1..=head {
        let message = stream
            .get_raw_message(sequence)
            .await
            .expect("a stored message");
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| panic!("message {sequence} has no {name}"))
        };
        let id: Uuid = header("Nats-Msg-Id").parse().expect("a UUID");
        let position: i64 = header("Gatehouse-Position").parse().expect("a position");
        assert!(ids.insert(id), "Nats-Msg-Id {id} twice in the stream");
        assert_eq!(events[&position].event_id, id, "message {sequence}");
    }
}

/// Every read model reaches the head and says what the store says.
async fn verify_read_models(db: &tokio_postgres::Client, base: &str, org: &Org, head: i64) {
    // The admins' requirement as folded from the store.
    let rows = db
        .query(
            "SELECT DISTINCT ON (stream_id) stream_id, event_type,
                    (envelope->'data'->>'mfa_required')::boolean
             FROM events WHERE org_id = $1 AND event_type = ANY($2)
             ORDER BY stream_id, position DESC",
            &[&org.id, &vec![ADMIN_CREATED, MFA_REQUIRED, MFA_REMOVED]],
        )
        .await
        .expect("the requirements");
    let expected: HashMap<Uuid, bool> = rows
        .iter()
        .map(|r| {
            let kind: String = r.get(1);
            let required = match kind.as_str() {
                MFA_REQUIRED => true,
                MFA_REMOVED => false,
                _ => r
                    .get::<_, Option<bool>>(2)
                    .expect("mfa_required at creation"),
            };
            (r.get(0), required)
        })
        .collect();

    let http = http();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        let key = org.key.clone();
        async move {
            // 503 `not_caught_up` after 5 s: ask again until the deadline.
            eventually(PATIENCE, &format!("{url} at position {head}"), || async {
                let response = http
                    .get(&url)
                    .header("x-api-key", &key)
                    .header("Gatehouse-Min-Position", head.to_string())
                    .send()
                    .await
                    .ok()?;
                if response.status() != 200 {
                    return None;
                }
                response.json::<Value>().await.ok()
            })
            .await
        }
    };
    let mut listed: HashMap<Uuid, bool> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = get(match &cursor {
            Some(c) => format!("/api/v1/admins?limit=200&cursor={c}"),
            None => "/api/v1/admins?limit=200".to_owned(),
        })
        .await;
        for admin in page["admins"].as_array().expect("admins") {
            let id = admin["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("an id");
            let required = admin["mfa"]["required"].as_bool().expect("required");
            assert!(listed.insert(id, required).is_none(), "{id} listed twice");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        listed.len(),
        expected.len(),
        "the admins read model lists every admin"
    );
    let differing: Vec<_> = expected
        .iter()
        .filter(|(id, required)| listed.get(id) != Some(required))
        .collect();
    assert!(
        differing.is_empty(),
        "the admins read model differs: {differing:?}"
    );

    let widgets = get("/api/v1/home/widgets".to_owned()).await;
    let without = expected.values().filter(|r| !**r).count();
    assert_eq!(widgets["admins_without_mfa_required"]["count"], without);

    // The audit model: one record per event of the organisation, once it reaches the head
    // (the reads above wait only for the models they use).
    eventually(
        PATIENCE,
        &format!("the audit model at position {head}"),
        || async {
            let at: i64 = db
                .query_one("SELECT position FROM proj_audit.checkpoint", &[])
                .await
                .ok()?
                .get(0);
            (at >= head).then_some(())
        },
    )
    .await;
    let missing: i64 = db
        .query_one(
            "SELECT count(*) FROM events e WHERE e.org_id = $1 AND e.position <= $2
             AND NOT EXISTS (SELECT 1 FROM proj_audit.records r WHERE r.position = e.position)",
            &[&org.id, &head],
        )
        .await
        .expect("the audit model")
        .get(0);
    assert_eq!(missing, 0, "events without their audit record");
    let extra: i64 = db
        .query_one(
            "SELECT count(*) FROM proj_audit.records r
             WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.position = r.position)",
            &[],
        )
        .await
        .expect("the audit model")
        .get(0);
    assert_eq!(extra, 0, "audit records without their event");
    let widget_rows: i64 = db
        .query_one(
            "SELECT count(*) FROM proj_home_widgets.widgets WHERE org_id = $1",
            &[&org.id],
        )
        .await
        .expect("the home widgets model")
        .get(0);
    assert_eq!(
        widget_rows as usize,
        expected.len(),
        "one widget row per admin"
    );
}

/// The mailer settles (its consumer has nothing pending or unacknowledged), then the Maildir
/// holds no email twice. Answers the number of emails.
async fn verify_emails(
    db: &tokio_postgres::Client,
    js: &jetstream::Context,
    deployment: &Deployment,
) -> Emails {
    let consumer_name = format!("{}_mailer", deployment.prefix);
    eventually(PATIENCE, "the mailer to settle", || async {
        let stream = js.get_stream(&deployment.stream).await.ok()?;
        let mut consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&consumer_name)
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        let settled = info.num_pending == 0 && info.num_ack_pending == 0;
        let sending: i64 = db
            .query_one(
                "SELECT count(*) FROM mail_deliveries WHERE state IN ('sending', 'failed')",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (settled && sending == 0).then_some(())
    })
    .await;

    let ledger: HashMap<String, (Uuid, String, String)> = db
        .query(
            "SELECT message_id, admin_id, kind, state FROM mail_deliveries",
            &[],
        )
        .await
        .expect("the ledger")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut setup_per_admin: HashMap<Uuid, usize> = HashMap::new();
    let new = deployment.maildir().join("new");
    let files = match std::fs::read_dir(&new) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    for file in &files {
        let message_id = message_id(file);
        assert!(
            seen.insert(message_id.clone()),
            "{message_id} was sent twice"
        );
        let (admin, kind, state) = ledger
            .get(&message_id)
            .unwrap_or_else(|| panic!("{message_id} has no ledger row"));
        assert!(
            state == "sent" || state == "unknown",
            "{message_id} is {state} but was sent"
        );
        if kind == "setup" {
            *setup_per_admin.entry(*admin).or_default() += 1;
        }
    }
    for (message_id, (_, _, state)) in &ledger {
        if state == "sent" {
            assert!(
                seen.contains(message_id),
                "{message_id} is recorded as sent but absent"
            );
        }
    }
    let over: Vec<_> = setup_per_admin
        .iter()
        .filter(|(_, n)| **n > SETUP_EMAILS_PER_HOUR)
        .collect();
    assert!(
        over.is_empty(),
        "more Set Up MFA emails than the hourly limit: {over:?}"
    );
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, state) in ledger.values() {
        *states.entry(state.clone()).or_default() += 1;
    }
    Emails {
        files: files.len(),
        setup_per_admin,
        states,
    }
}

fn message_id(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("a message file");
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.strip_prefix("Message-ID: ")
                .or_else(|| l.strip_prefix("Message-Id: "))
        })
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{} has no Message-ID", file.display()))
}

fn summary(answers: &[Answer]) -> String {
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let key = a.status.map_or("none".to_owned(), |s| s.to_string());
        *by_status.entry(key).or_default() += 1;
    }
    format!("{by_status:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_burst_and_a_bulk_of_10000_loses_nothing_acknowledged_and_halves_nothing() {
    let test_started = Instant::now();
    let env = TestEnv::new().await;
    let deployment = Deployment::new(env.db_url.clone(), nats_url(), &env.stream, &env.prefix);
    let mut serve = Serve::start(&deployment).await;
    let org = deployment.org_create();
    let clients = create_admins(&serve.base, &org.key, CLIENTS).await;
    let bulk_ids = Arc::new(seed_admins(&deployment.database_url, &org, 10_000).await);

    let started = Instant::now();
    let load = Load::start(&[&serve.base], &org.key, &clients, true);
    load.await_successes_since(started, 200, "200 acknowledged commands")
        .await;
    let bulk = {
        let (base, key, ids) = (serve.base.clone(), org.key.clone(), bulk_ids.clone());
        tokio::spawn(async move { bulk_require(&base, &key, ids).await })
    };
    // The kill lands while the 10,000-admin bulk is being decided and appended (it takes
    // seconds); whichever way it falls, the checks below hold.
    tokio::time::sleep(Duration::from_millis(700)).await;
    serve.kill_9();
    let bulk_answer = bulk.await.expect("the bulk request task");
    let mut answers = load.finish().await;
    eprintln!(
        "before the kill: {} (bulk answered: {:?})",
        summary(&answers),
        bulk_answer.status
    );
    assert!(
        answers.iter().any(|a| a.status.is_none()),
        "the kill cut requests"
    );
    answers.push(bulk_answer.clone());

    let mut serve = Serve::start(&deployment).await;
    // The bulk again, and a kill the moment its 10,000 events are committed: its answer is
    // (most likely) lost, and its events must all be there.
    let head = env.db.head().await.expect("the store's head");
    let again_started = Instant::now();
    let mut again = {
        let (base, key, ids) = (serve.base.clone(), org.key.clone(), bulk_ids.clone());
        tokio::spawn(async move { bulk_require(&base, &key, ids).await })
    };
    let committed = tokio::select! {
        answer = &mut again => Err(answer.expect("the bulk request task")),
        () = await_head(&env.db, head + 10_000) => Ok(()),
    };
    let mut serve = match committed {
        Ok(()) => {
            serve.kill_9();
            let cut = again.await.expect("the bulk request task");
            eprintln!(
                "the bulk cut by the kill was wholly absent from the store; sent again, it \
                 committed in {:?} and serve was killed at once (answered: {:?})",
                again_started.elapsed(),
                cut.status
            );
            answers.push(cut);
            let serve = Serve::start(&deployment).await;
            // A third time: every admin is already required, so the second was wholly applied.
            let third = bulk_require(&serve.base, &org.key, bulk_ids.clone()).await;
            assert_eq!(third.status, Some(200), "{:?}", third.body);
            assert_eq!(
                third.body.as_ref().map(|b| b["required"].clone()),
                Some(json!([])),
                "the bulk committed before the kill is wholly in the store"
            );
            answers.push(third);
            serve
        }
        Err(answer) => {
            // The first bulk was applied before the kill: this one had nothing to append.
            eprintln!("the bulk cut by the kill was wholly in the store");
            assert_eq!(answer.status, Some(200), "{:?}", answer.body);
            assert_eq!(
                answer.body.as_ref().map(|b| b["required"].clone()),
                Some(json!([]))
            );
            answers.push(answer);
            serve
        }
    };

    // A second kill while the mailer works through the 10,000 Set Up MFA emails.
    let maildir = deployment.maildir().join("new");
    eventually(
        PATIENCE,
        "the mailer halfway through the bulk's emails",
        || async {
            let sent = std::fs::read_dir(&maildir).map_or(0, |d| d.count());
            (sent >= 2_000).then_some(())
        },
    )
    .await;
    serve.kill_9();
    eprintln!(
        "killed again with {} emails in the Maildir",
        std::fs::read_dir(&maildir).map_or(0, |d| d.count())
    );
    let serve = Serve::start(&deployment).await;

    let js = jetstream::new(env.nats.clone());
    let verified = verify(&deployment, &js, &serve.base, &org, &answers).await;
    eprintln!(
        "verified after kill -9 in {:?}: {verified}",
        test_started.elapsed()
    );
    // Each of the 10,000 got its one Set Up MFA email, but for those interrupted mid-send by
    // the kill (maybe sent, never sent again).
    let emailed = bulk_ids
        .iter()
        .filter(|id| verified.emails.setup_per_admin.get(id) == Some(&1))
        .count();
    let interrupted = verified.emails.states.get("unknown").copied().unwrap_or(0);
    assert!(
        emailed + interrupted >= bulk_ids.len(),
        "{emailed} of the bulk's admins were emailed, {interrupted} emails were interrupted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_down_for_30_s_under_load_refuses_no_command_and_delivers_every_event_after() {
    let test_started = Instant::now();
    let env = TestEnv::new().await;
    let mut nats = NatsServer::start_new()
        .await
        .expect("a NATS server of the test's own");
    let deployment = Deployment::new(env.db_url.clone(), nats.url(), &env.stream, &env.prefix);
    let serve = Serve::start(&deployment).await;
    let org = deployment.org_create();
    let clients = create_admins(&serve.base, &org.key, CLIENTS).await;
    let bulk_ids = Arc::new(seed_admins(&deployment.database_url, &org, 1000).await);

    let started = Instant::now();
    let load = Load::start(&[&serve.base], &org.key, &clients, false);
    load.await_successes_since(started, 100, "100 acknowledged commands")
        .await;
    nats.stop().await.expect("NATS stops");
    let down = Instant::now();
    let bulk = bulk_require(&serve.base, &org.key, bulk_ids.clone()).await;
    assert_eq!(
        bulk.status,
        Some(200),
        "a bulk while NATS is down: {:?}",
        bulk.body
    );
    // The outage itself: its length is the fault, not a condition to await.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    let during = load.successes_since(down);
    nats.start().await.expect("NATS starts again");
    let up = Instant::now();
    load.await_successes_since(up, 100, "100 acknowledged commands after NATS is back")
        .await;
    let mut answers = load.finish().await;
    answers.push(bulk);
    eprintln!(
        "{} answers: {}; {during} acknowledged while NATS was down",
        answers.len(),
        summary(&answers)
    );
    assert!(during > 0, "commands were acknowledged while NATS was down");
    // No command refused because NATS was down: resets may be rate limited (429), nothing else.
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| {
            let rate_limited = matches!(a.ask, Ask::Reset { .. }) && a.status == Some(429);
            !(a.is_success() || rate_limited)
        })
        .collect();
    assert!(
        refused.is_empty(),
        "refused while NATS was down: {refused:?}"
    );

    let client = async_nats::connect(nats.url())
        .await
        .expect("the test's NATS");
    let js = jetstream::new(client);
    let verified = verify(&deployment, &js, &serve.base, &org, &answers).await;
    eprintln!(
        "verified after the NATS outage in {:?}: {verified}",
        test_started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_under_load_answers_503_at_once_and_the_pool_recovers_by_itself() {
    let test_started = Instant::now();
    let mut postgres = PostgresServer::start_new()
        .await
        .expect("a Postgres cluster of the test's own");
    let nats = NatsServer::start_new()
        .await
        .expect("a NATS server of the test's own");
    let deployment = Deployment::new(
        postgres.url("gatehouse_faults"),
        nats.url(),
        "GH_FAULTS",
        "ghfaults",
    );
    let mut serve = Serve::start(&deployment).await;
    let org = deployment.org_create();
    let clients = create_admins(&serve.base, &org.key, CLIENTS).await;

    let started = Instant::now();
    let load = Load::start(&[&serve.base], &org.key, &clients, false);
    load.await_successes_since(started, 100, "100 acknowledged commands")
        .await;
    postgres.stop().await.expect("Postgres stops");
    let down = Instant::now();
    // Enough requests meet the outage: two a client.
    eventually(PATIENCE, "requests sent while Postgres is down", || async {
        let n = load.answers().iter().filter(|a| a.sent_at >= down).count();
        (n >= 2 * CLIENTS).then_some(())
    })
    .await;
    // Postgres accepts connections a little before `pg_ctl start -w` returns: the outage is
    // over, for the checks below, when the start begins.
    let restarting = Instant::now();
    postgres.start().await.expect("Postgres starts again");
    let up = Instant::now();
    load.await_successes_since(up, 100, "100 acknowledged commands after Postgres is back")
        .await;
    let answers = load.finish().await;
    eprintln!("{} answers: {}", answers.len(), summary(&answers));
    assert!(serve.is_running(), "serve survives the outage");

    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent_at >= down && a.sent_at + a.took <= restarting)
        .collect();
    assert!(during.len() >= 2 * CLIENTS, "{}", during.len());
    let slowest = during.iter().map(|a| a.took).max().unwrap_or_default();
    eprintln!(
        "{} answered while Postgres was down, the slowest in {slowest:?}",
        during.len()
    );
    for a in &during {
        assert_eq!(a.status, Some(503), "{a:?}");
        assert!(a.retry_after, "503 with Retry-After: {a:?}");
        let error = &a.body.as_ref().expect("an error body")["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{a:?}"
        );
        // No hang: the pool gives up within its timeouts (waiting, then creating).
        assert!(a.took <= POOL_WAIT * 2 + Duration::from_secs(2), "{a:?}");
    }

    let client = async_nats::connect(nats.url())
        .await
        .expect("the test's NATS");
    let js = jetstream::new(client);
    let verified = verify(&deployment, &js, &serve.base, &org, &answers).await;
    eprintln!(
        "verified after the Postgres restart in {:?}: {verified}",
        test_started.elapsed()
    );
}

/// Whether `serve`'s relay is the active one, from its `/metrics` (`gatehouse_relay_active`).
async fn relay_active(base: &str) -> Option<bool> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_relay_active "))
        .map(|v| v.trim() == "1")
}

/// Which of `serves` runs the active relay, once exactly one does.
async fn active_relay(serves: &[Serve]) -> usize {
    eventually(PATIENCE, "exactly one active relay", || async {
        let mut active = Vec::new();
        for (i, serve) in serves.iter().enumerate() {
            if relay_active(&serve.base).await? {
                active.push(i);
            }
        }
        (active.len() == 1).then(|| active[0])
    })
    .await
}

/// A downstream consumer of the test's own, as a team consuming Gatehouse's events runs one: a
/// durable pull consumer (replicated like the stream) fetching through the faults, acknowledging
/// each message, recording the `Nats-Msg-Id` of every position it was given.
struct Probe {
    seen: Arc<Mutex<HashMap<i64, Uuid>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    async fn start(js: &jetstream::Context, stream: &str) -> Probe {
        let stream = js.get_stream(stream).await.expect("the stream");
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("downstream_probe".to_owned()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .expect("the probe's consumer");
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let stop = CancellationToken::new();
        let task = {
            let (seen, stop) = (seen.clone(), stop.clone());
            tokio::spawn(async move {
                use futures::StreamExt;
                while !stop.is_cancelled() {
                    let fetched = consumer
                        .fetch()
                        .max_messages(500)
                        .expires(Duration::from_secs(1))
                        .messages()
                        .await;
                    let Ok(mut messages) = fetched else {
                        // The node it asked is gone or electing: ask again.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    while let Some(Ok(message)) = messages.next().await {
                        let header = |name: &str| {
                            message
                                .headers
                                .as_ref()
                                .and_then(|h| h.get(name))
                                .map(|v| v.as_str().to_owned())
                        };
                        let position: i64 = header("Gatehouse-Position")
                            .and_then(|v| v.parse().ok())
                            .expect("every message names its position");
                        let id: Uuid = header("Nats-Msg-Id")
                            .and_then(|v| v.parse().ok())
                            .expect("every message has its event's id");
                        let before = lock(&seen).insert(position, id);
                        // Redelivered (an ack lost with a node): the same event, or a bug.
                        assert!(
                            before.is_none_or(|b| b == id),
                            "position {position} came as {before:?} and as {id}"
                        );
                        // An ack lost with a node means a redelivery, which the map absorbs.
                        let _ = message.ack().await;
                    }
                }
            })
        };
        Probe { seen, stop, task }
    }

    /// Waits until the probe was given every position up to the store's head, then checks each
    /// came with its stored event's id. Answers how many positions it saw.
    async fn saw_every_event(self, database_url: &str) -> usize {
        let db = pg(database_url).await;
        let stored: HashMap<i64, Uuid> = db
            .query("SELECT position, event_id FROM events", &[])
            .await
            .expect("the events")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let head = stored.len() as i64;
        eventually(PATIENCE, "the probe to see every event", || async {
            let seen = lock(&self.seen);
            (1..=head).all(|p| seen.contains_key(&p)).then_some(())
        })
        .await;
        self.stop.cancel();
        self.task.await.expect("the probe does not panic");
        let seen = lock(&self.seen);
        for (position, id) in seen.iter() {
            assert_eq!(stored.get(position), Some(id), "position {position}");
        }
        seen.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_cluster_losing_its_stream_leader_and_gatehouse_its_active_relay_under_load_delivers_every_event()
 {
    let test_started = Instant::now();
    let env = TestEnv::new().await;
    let mut cluster = NatsCluster::start_new(3)
        .await
        .expect("three NATS servers of the test's own, clustered");
    let mut deployment =
        Deployment::new(env.db_url.clone(), cluster.urls(), &env.stream, &env.prefix);
    deployment.replicas = 3;
    let mut serves = vec![
        Serve::start(&deployment).await,
        Serve::start(&deployment).await,
    ];
    let org = deployment.org_create();
    let clients = create_admins(&serves[0].base, &org.key, CLIENTS).await;

    let urls: Vec<String> = cluster.nodes.iter().map(NatsServer::url).collect();
    let js = jetstream::new(async_nats::connect(urls).await.expect("the cluster"));
    let mut stream = js.get_stream(&env.stream).await.expect("the stream");
    let info = stream.info().await.expect("the stream's info");
    assert_eq!(info.config.num_replicas, 3, "the stream is replicated");
    let probe = Probe::start(&js, &env.stream).await;

    let started = Instant::now();
    let bases: Vec<&str> = serves.iter().map(|s| s.base.as_str()).collect();
    let load = Load::start(&bases, &org.key, &clients, false);
    load.await_successes_since(started, 300, "300 acknowledged commands")
        .await;

    // Both at once, under load: the node leading the stream, and the process whose relay is
    // the active one.
    let leader = stream
        .info()
        .await
        .expect("the stream's info")
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("the stream has a leader");
    let active = active_relay(&serves).await;
    let killed = Instant::now();
    cluster
        .node(&leader)
        .expect("the leader is one of the nodes")
        .stop()
        .await
        .expect("the stream leader is killed");
    serves[active].kill_9();
    let survivor = &serves[1 - active];

    eventually(PATIENCE, "the standby relay to take over", || async {
        relay_active(&survivor.base)
            .await
            .unwrap_or(false)
            .then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    let new_leader = eventually(PATIENCE, "a new stream leader", || async {
        let mut stream = js.get_stream(&env.stream).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster
            .clone()
            .and_then(|c| c.leader)
            .filter(|l| *l != leader)
    })
    .await;
    load.await_successes_since(killed, 300, "300 acknowledged commands after the kills")
        .await;
    let answers = load.finish().await;
    eprintln!(
        "{} answers: {}; killed NATS node {leader} (stream leader) and serve #{active} (active \
         relay); the standby relay took over within {takeover:?}, {new_leader} leads the stream",
        answers.len(),
        summary(&answers),
    );

    let verified = verify(&deployment, &js, &survivor.base, &org, &answers).await;
    let seen = probe.saw_every_event(&deployment.database_url).await;
    eprintln!(
        "verified after losing the stream leader and the active relay in {:?}: {verified}; the \
         downstream consumer saw all {seen} events",
        test_started.elapsed()
    );
}
