//! Test support for Gatehouse's black-box tests against real Postgres and real NATS.
//!
//! - [`TestEnv`]: a fresh database (copied from a migrated template) and a NATS stream and
//!   subject prefix of the test's own, all removed when the test ends, so tests run in parallel
//!   and twice in a row.
//! - [`browser::Browser`]: a headless Chromium through a chromedriver of a test's own.
//! - [`producer::Producer`]: events made through the command service and published by the real
//!   relay, for tests of downstream consumers.
//! - [`faults`]: a NATS server and a Postgres cluster of a test's own, to stop and start under
//!   load (`services/gatehouse/tests/faults.rs`) without touching the shared ones.
//!
//! The services are found through `GATEHOUSE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `GATEHOUSE_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`).

pub mod browser;
pub mod faults;
pub mod producer;
pub mod smtp;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use gatehouse_store::{Db, DbConfig};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use uuid::Uuid;

pub fn admin_database_url() -> String {
    std::env::var("GATEHOUSE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn nats_url() -> String {
    std::env::var("GATEHOUSE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The URL of another database on the same server.
pub fn database_url(name: &str) -> String {
    let base = admin_database_url();
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => format!("{base}/{name}"),
    }
}

async fn admin_client() -> anyhow::Result<tokio_postgres::Client> {
    let config = tokio_postgres::Config::from_str(&admin_database_url())?;
    let (client, conn) = config
        .connect(NoTls)
        .await
        .context("connecting to the test Postgres")?;
    tokio::spawn(conn);
    Ok(client)
}

/// The migrated template every test database is copied from; its name changes with the
/// migrations, so a changed migration gets a new template.
async fn template() -> anyhow::Result<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for f in &files {
        hasher.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes().to_vec())
                .unwrap_or_default(),
        );
        hasher.update(std::fs::read(f)?);
    }
    let name = format!("gh_template_{}", &hex::encode(hasher.finalize())[..12]);

    let client = admin_client().await?;
    // One process builds the template; the others wait for it and find it built.
    client
        .batch_execute("SELECT pg_advisory_lock(7231002)")
        .await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let building = format!("gh_building_{}", Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await?;
        {
            let db = Db::connect(&DbConfig {
                url: database_url(&building),
                pool_size: 1,
            })
            .await?;
            db.migrate().await?;
            db.pool.close();
        }
        client
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .context("publishing the template")?;
    }
    client
        .batch_execute("SELECT pg_advisory_unlock(7231002)")
        .await?;
    Ok(name)
}

/// A database and a NATS stream and prefix of one test's own.
pub struct TestEnv {
    pub db: Db,
    pub db_name: String,
    pub db_url: String,
    pub nats: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
    /// The JetStream stream's name (`GATEHOUSE_NATS_STREAM` for this test).
    pub stream: String,
    /// The first token of every subject (`GATEHOUSE_NATS_PREFIX` for this test).
    pub prefix: String,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        Self::try_new()
            .await
            .expect("the test environment (Postgres and NATS) must be reachable")
    }

    async fn try_new() -> anyhow::Result<TestEnv> {
        let template = template().await?;
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("gh_test_{id}");
        let client = admin_client().await?;
        // Copying a template fails while another session is connected to it; retry briefly.
        let mut tries = 0;
        loop {
            match client
                .batch_execute(&format!("CREATE DATABASE {db_name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "template busy, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).context("creating the test database"),
            }
        }
        let db_url = database_url(&db_name);
        let db = Db::connect(&DbConfig {
            url: db_url.clone(),
            pool_size: 8,
        })
        .await?;
        let nats = async_nats::connect(nats_url())
            .await
            .context("connecting to the test NATS")?;
        let jetstream = async_nats::jetstream::new(nats.clone());
        Ok(TestEnv {
            db,
            db_name,
            db_url,
            nats,
            jetstream,
            stream: format!("GH_TEST_{}", id.to_uppercase()),
            prefix: format!("ght{}", &id[..16]),
        })
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.db.pool.close();
        let db_name = self.db_name.clone();
        let stream = self.stream.clone();
        // Dropping needs async I/O; a runtime of its own on a plain thread keeps it independent
        // of whether the test's runtime is still running.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = admin_client().await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
                        .await;
                }
                if let Ok(nats) = async_nats::connect(nats_url()).await {
                    let js = async_nats::jetstream::new(nats);
                    let _ = js.delete_stream(&stream).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Waits until `check` returns `Some`, polling every 20 ms, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An append of `events` to `org` by the system, with no expectations: how tests write history
/// straight into the store.
pub fn system_append(
    org: Uuid,
    events: Vec<gatehouse_events::Event>,
) -> gatehouse_store::AppendRequest {
    gatehouse_store::AppendRequest {
        org_id: org,
        actor: gatehouse_events::Actor::System,
        correlation_id: Uuid::now_v7(),
        time: chrono::Utc::now(),
        auth_method: None,
        events,
        expected: vec![],
        org_position: None,
        statements: vec![],
    }
}

/// `admin.created` of an administrator named Ada Lovelace, at `<id>@example.com`.
pub fn admin_created(admin: Uuid, mfa_required: bool) -> gatehouse_events::Event {
    gatehouse_events::Event::AdminCreated(gatehouse_events::types::AdminCreated {
        admin_id: admin,
        email: format!("{admin}@example.com"),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        role: gatehouse_events::Role::Administrator,
        mfa_required,
    })
}
