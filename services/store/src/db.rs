//! Pools, database creation and migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Config, NoTls};

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// How to reach Postgres.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub url: String,
    pub pool_size: usize,
}

/// A pool of connections to Gatehouse's database. Cheap to clone (handlers clone it per
/// request): the pool and the parsed URL are shared.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    pub config: Arc<Config>,
}

impl Db {
    /// A connection from the pool; the error says so, with the pool's own cause beneath it (so
    /// callers still tell "Postgres is out of reach" from other failures).
    pub async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .context("getting a Postgres connection")
    }

    /// Connects, failing with one clear line when Postgres cannot be reached.
    pub async fn connect(cfg: &DbConfig) -> anyhow::Result<Db> {
        let config = Config::from_str(&cfg.url)
            .map_err(|e| anyhow!("DATABASE_URL is not a valid Postgres URL: {e}"))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("building the Postgres pool")?;
        let db = Db {
            pool,
            config: Arc::new(config),
        };
        let _probe = db
            .pool
            .get()
            .await
            .map_err(|e| unreachable_error(&db.config, &e.to_string()))?;
        Ok(db)
    }

    /// Creates the database named in the URL if it does not exist (connecting to `postgres`).
    pub async fn create_if_missing(url: &str) -> anyhow::Result<()> {
        let config = Config::from_str(url)
            .map_err(|e| anyhow!("DATABASE_URL is not a valid Postgres URL: {e}"))?;
        let name = config.get_dbname().unwrap_or("postgres").to_owned();
        let mut admin = config.clone();
        admin.dbname("postgres");
        let (client, conn) = admin
            .connect(NoTls)
            .await
            .map_err(|e| unreachable_error(&config, &e.to_string()))?;
        let task = tokio::spawn(conn);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .context("looking up the database")?
            .is_some();
        if !exists {
            let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            match client.batch_execute(&sql).await {
                Ok(()) => tracing::info!(database = %name, "created the database"),
                // Another process created it between our look-up and our create.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
                Err(e) => return Err(e).context(format!("creating database {name}")),
            }
        }
        drop(client);
        let _ = task.await;
        Ok(())
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut client = self
            .pool
            .get()
            .await
            .context("getting a connection to migrate")?;
        // Several processes may start at once: one migrates, the others wait for it.
        client
            .batch_execute("SELECT pg_advisory_lock(7231001)")
            .await
            .context("taking the migration lock")?;
        let client_ref: &mut tokio_postgres::Client = &mut client;
        let result = embedded::migrations::runner().run_async(client_ref).await;
        client
            .batch_execute("SELECT pg_advisory_unlock(7231001)")
            .await
            .context("releasing the migration lock")?;
        result.context("applying migrations")?;
        Ok(())
    }

    /// Opens a dedicated connection (for LISTEN or session advisory locks).
    pub async fn dedicated(
        &self,
    ) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let (client, conn) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| unreachable_error(&self.config, &e.to_string()))?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "dedicated Postgres connection closed");
            }
        });
        Ok((client, task))
    }
}

/// One line saying which service, where, and how to start it.
pub fn unreachable_error(config: &Config, cause: &str) -> anyhow::Error {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    anyhow!(
        "cannot reach Postgres at {host}:{port} (DATABASE_URL): {cause}. Start it (e.g. `pg_ctlcluster 15 main start`) or point DATABASE_URL at a running server."
    )
}

/// A connection that LISTENs on a channel; notifications arrive on `notifications`, which closes
/// when the connection does.
pub struct Listener {
    pub client: tokio_postgres::Client,
    pub notifications: tokio::sync::mpsc::Receiver<String>,
}

impl Db {
    /// Opens a dedicated connection listening on `channel`. Bursts of notifications are
    /// coalesced: a full queue drops the extra ones, since each only says "look again".
    pub async fn listen(&self, channel: &str) -> anyhow::Result<Listener> {
        let (client, mut conn) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| unreachable_error(&self.config, &e.to_string()))?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            use futures::StreamExt;
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        let _ = tx.try_send(n.payload().to_owned());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "listening connection closed");
                        break;
                    }
                }
            }
        });
        let quoted = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
        client
            .batch_execute(&quoted)
            .await
            .context("subscribing to notifications")?;
        Ok(Listener {
            client,
            notifications: rx,
        })
    }
}
