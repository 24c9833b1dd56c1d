//! Configuration by environment (SPEC §2); flags may override.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use gatehouse_auth::secretbox::SecretKey;

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Postgres URL of Gatehouse's database (created if missing by `serve` and `migrate`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/gatehouse",
        global = true
    )]
    pub database_url: String,
    /// NATS server with JetStream, or the nodes of a cluster separated by commas.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,
    /// Address the HTTP portal and API listen on.
    #[arg(
        long,
        env = "GATEHOUSE_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,
    /// Base of links in emails; its origin is the only one allowed for cookie requests.
    #[arg(
        long,
        env = "GATEHOUSE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub public_url: String,
    /// JetStream stream the relay publishes to.
    #[arg(
        long,
        env = "GATEHOUSE_NATS_STREAM",
        default_value = "GATEHOUSE_EVENTS",
        global = true
    )]
    pub nats_stream: String,
    /// First token of every subject.
    #[arg(
        long,
        env = "GATEHOUSE_NATS_PREFIX",
        default_value = "gatehouse",
        global = true
    )]
    pub nats_prefix: String,
    /// Replicas of the JetStream stream: 1 on a single server, 3 on a cluster (at most 5).
    #[arg(
        long,
        env = "GATEHOUSE_NATS_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u8).range(1..=5),
        global = true
    )]
    pub nats_replicas: u8,
    /// Seconds JetStream remembers a message id to drop the copies a retry publishes.
    #[arg(
        long,
        env = "GATEHOUSE_NATS_DUPLICATE_WINDOW",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub nats_duplicate_window: u64,
    /// Seconds the stream keeps a message; 0 keeps every message forever.
    #[arg(
        long,
        env = "GATEHOUSE_NATS_MAX_AGE",
        default_value_t = 0,
        global = true
    )]
    pub nats_max_age: u64,
    /// 32 bytes, base64: encrypts TOTP secrets at rest. Required outside `--demo`.
    #[arg(
        long,
        env = "GATEHOUSE_SECRET_KEY",
        hide_env_values = true,
        global = true
    )]
    pub secret_key: Option<String>,
    /// Send emails by SMTP (e.g. smtp://127.0.0.1:2525); unset writes them to the Maildir.
    #[arg(long, env = "GATEHOUSE_SMTP_URL", global = true)]
    pub smtp_url: Option<String>,
    /// Maildir for emails when no SMTP URL is set.
    #[arg(
        long,
        env = "GATEHOUSE_MAILDIR",
        default_value = "./var/mail",
        global = true
    )]
    pub maildir: String,
    /// Seconds a request's head (request line and headers) may take to arrive; a slower
    /// client is disconnected.
    #[arg(
        long,
        env = "GATEHOUSE_HEADER_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300),
        global = true
    )]
    pub header_timeout: u64,
    /// Requests served at once; more are refused at once with 503 `overloaded`.
    #[arg(
        long,
        env = "GATEHOUSE_MAX_CONCURRENT_REQUESTS",
        default_value_t = gatehouse_portal::MAX_CONCURRENT_REQUESTS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000),
        global = true
    )]
    pub max_concurrent_requests: usize,
    /// Size of the Postgres connection pool.
    #[arg(long, env = "GATEHOUSE_DB_POOL", default_value_t = 32, global = true)]
    pub db_pool: usize,
}

/// The demo's key: public, so only ever for demo data.
const DEMO_SECRET_KEY: [u8; 32] = *b"gatehouse-demo-key-not-a-secret!";

impl Config {
    /// The key that seals TOTP secrets at rest. Required outside `--demo`; a demo without one
    /// uses a fixed, public key (so its enrolled admins survive a restart), never for real data.
    pub fn secret_key(&self, demo: bool) -> anyhow::Result<SecretKey> {
        match &self.secret_key {
            Some(raw) => {
                SecretKey::from_base64(raw.trim()).map_err(|e| anyhow!("GATEHOUSE_SECRET_KEY {e}"))
            }
            None if demo => Ok(SecretKey::from_bytes(DEMO_SECRET_KEY)),
            None => bail!(
                "GATEHOUSE_SECRET_KEY is required outside --demo: 32 random bytes, base64 (e.g. `openssl rand -base64 32`)"
            ),
        }
    }

    /// How the mailer sends: SMTP when `GATEHOUSE_SMTP_URL` is set, else Maildir files.
    pub fn mailer_config(&self) -> gatehouse_mailer::MailerConfig {
        let transport = match &self.smtp_url {
            Some(url) => gatehouse_mailer::Transport::Smtp { url: url.clone() },
            None => gatehouse_mailer::Transport::Maildir {
                dir: self.maildir.clone().into(),
            },
        };
        gatehouse_mailer::MailerConfig::new(
            &self.nats_stream,
            &self.nats_prefix,
            &self.public_url,
            transport,
        )
    }

    /// Where and how the relay publishes, and the stream's settings; refuses settings JetStream
    /// cannot keep (a duplicate window longer than the max age).
    pub fn relay_config(&self) -> anyhow::Result<gatehouse_relay::RelayConfig> {
        let cfg = gatehouse_relay::RelayConfig {
            replicas: usize::from(self.nats_replicas),
            duplicate_window: Duration::from_secs(self.nats_duplicate_window),
            max_age: Duration::from_secs(self.nats_max_age),
            ..gatehouse_relay::RelayConfig::new(&self.nats_stream, &self.nats_prefix)
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn db_config(&self) -> gatehouse_store::DbConfig {
        gatehouse_store::DbConfig {
            url: self.database_url.clone(),
            pool_size: self.db_pool,
        }
    }
}

/// A part of the process that `serve --roles` can run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Relay,
    Projections,
    Mailer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Api, Role::Relay, Role::Projections, Role::Mailer];

    /// Parses `api,relay,projections,mailer`.
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Role>> {
        let mut roles = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let role = match name {
                "api" => Role::Api,
                "relay" => Role::Relay,
                "projections" => Role::Projections,
                "mailer" => Role::Mailer,
                other => {
                    bail!("unknown role {other:?}: choose from api, relay, projections, mailer")
                }
            };
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            bail!("--roles needs at least one of api, relay, projections, mailer");
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn relay_config(args: &[&str]) -> anyhow::Result<gatehouse_relay::RelayConfig> {
        let cli = Cli::try_parse_from(std::iter::once("gatehouse").chain(args.iter().copied()))?;
        cli.config.relay_config()
    }

    #[test]
    fn the_stream_keeps_every_event_on_one_replica_with_a_two_minute_window_by_default() {
        let cfg = relay_config(&["--nats-stream", "S", "--nats-prefix", "p"]).expect("valid");
        assert_eq!((cfg.stream.as_str(), cfg.prefix.as_str()), ("S", "p"));
        assert_eq!(cfg.replicas, 1);
        assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
        assert_eq!(cfg.max_age, Duration::ZERO);
    }

    #[test]
    fn stream_settings_are_read_and_those_jetstream_cannot_keep_are_refused() {
        let cfg = relay_config(&[
            "--nats-replicas",
            "3",
            "--nats-duplicate-window",
            "30",
            "--nats-max-age",
            "86400",
        ])
        .expect("valid");
        assert_eq!(cfg.replicas, 3);
        assert_eq!(cfg.duplicate_window, Duration::from_secs(30));
        assert_eq!(cfg.max_age, Duration::from_secs(86400));
        for bad in [
            &["--nats-replicas", "0"][..],
            &["--nats-replicas", "6"],
            &["--nats-duplicate-window", "0"],
            &["--nats-max-age", "60"],
        ] {
            assert!(relay_config(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn roles_parse_and_refuse_unknown_names() {
        assert_eq!(
            Role::parse_list("api, relay").expect("valid"),
            vec![Role::Api, Role::Relay]
        );
        assert!(Role::parse_list("api,cron").is_err());
        assert!(Role::parse_list("").is_err());
    }
}
