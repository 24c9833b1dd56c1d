//! The benchmark's own database and JetStream stream, and how to run the `gatehouse` binary
//! against them (to its end, under `/usr/bin/time`, or as `gatehouse serve`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::process::Command;
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::Args;

/// 32 bytes, public on purpose: the benchmark seals no real TOTP secret.
const BENCH_SECRET_KEY: &str = "Z2F0ZWhvdXNlLWJlbmNoLW5vdC1hLXJlYWwta2V5ISE=";
const OWNER_PASSWORD: &str = "correct horse battery staple, bench";

/// What `gatehouse org create --json` prints.
#[derive(Debug, Deserialize)]
pub struct CreatedOrg {
    pub org_id: Uuid,
    pub owner_id: Uuid,
    pub api_key: Option<String>,
}

/// An organisation the benchmark created, with its owner's API key.
#[derive(Debug, Clone)]
pub struct Org {
    pub id: Uuid,
    pub owner: Uuid,
    pub key: String,
}

/// The benchmark's own database and stream, and how to run the binary against them.
pub struct Env<'a> {
    pub args: &'a Args,
    pub database: String,
    pub stream: String,
    pub prefix: String,
}

impl Env<'_> {
    pub fn database_url(&self) -> String {
        format!("{}/{}", self.args.postgres, self.database)
    }

    /// The scratch JetStream stream of the relay's ceiling, and its subject prefix.
    pub fn ceiling_stream(&self) -> (String, String) {
        (
            format!("{}_CEILING", self.stream),
            format!("{}ceiling", self.prefix),
        )
    }

    pub fn command(&self, args: &[&str]) -> Command {
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

    /// `gatehouse serve --roles <roles>` listening on `listen`, its output discarded.
    pub fn serve(&self, roles: &str, listen: SocketAddr) -> Command {
        let mut command = self.command(&["serve", "--roles", roles]);
        command
            .env("GATEHOUSE_LISTEN", listen.to_string())
            .env("GATEHOUSE_PUBLIC_URL", format!("http://{listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Runs the binary to its end; answers its standard output, failing with its errors.
    pub async fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .output()
            .await
            .with_context(|| format!("running gatehouse {}", args.join(" ")))?;
        ensure_success(args, &out)?;
        String::from_utf8(out.stdout).context("gatehouse printed something that is not UTF-8")
    }

    /// Runs the binary under `/usr/bin/time`, its output discarded; answers the seconds it took
    /// and its peak resident memory in MB.
    pub async fn measured(&self, args: &[&str]) -> anyhow::Result<(f64, f64)> {
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
        ensure_success(args, &out)?;
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

    /// Creates an organisation with `gatehouse org create` (its owner's password hashed with
    /// argon2, like any owner's) and answers its owner's API key too.
    pub async fn create_org(&self, name: &str, email: &str) -> anyhow::Result<Org> {
        let out = self
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
        let created: CreatedOrg =
            serde_json::from_str(out.trim()).context("reading `org create --json`")?;
        Ok(Org {
            id: created.org_id,
            owner: created.owner_id,
            key: created.api_key.context("org create printed no API key")?,
        })
    }

    /// A connection to the benchmark's database.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.database_url()).await
    }

    /// The store's last position.
    pub async fn head(&self, client: &tokio_postgres::Client) -> anyhow::Result<i64> {
        Ok(client
            .query_one("SELECT last_position FROM store_head", &[])
            .await
            .context("reading the store's head")?
            .get(0))
    }
}

/// Fails with the binary's own error output unless it succeeded.
fn ensure_success(args: &[&str], out: &std::process::Output) -> anyhow::Result<()> {
    if !out.status.success() {
        bail!(
            "gatehouse {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to Postgres at {}", without_credentials(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection: {e}");
        }
    });
    Ok(client)
}

/// The URL without its user and password, fit for a message.
pub fn without_credentials(url: &str) -> &str {
    url.rsplit_once('@').map_or(url, |(_, host)| host)
}
