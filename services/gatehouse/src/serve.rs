//! `gatehouse serve`: every role in one process, or the subset `--roles` names.

use std::net::SocketAddr;

use anyhow::Context;
use gatehouse_auth::Passwords;
use gatehouse_commands::Commands;
use gatehouse_projections::{Checkpoints, ProjectionsConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Config, Role, demo, services, telemetry};

/// A running Gatehouse: its address (when it serves HTTP) and the means to stop it.
pub struct Running {
    pub addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl Running {
    /// Waits until every role has stopped; the first failure stops the others.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (role, result) = joined.context("a role panicked")?;
            match result {
                Ok(()) => tracing::info!(role, "stopped"),
                Err(e) => {
                    tracing::error!(role, error = %format!("{e:#}"), "role failed; stopping");
                    self.shutdown.cancel();
                    first_error.get_or_insert(e.context(format!("the {role} role failed")));
                }
            }
            // One role ending ends the process: it is never meant to stop on its own.
            self.shutdown.cancel();
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every role, letting each finish its batch.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Migrates, then starts the roles. `demo` seeds the demo organisation first.
pub async fn start(config: &Config, roles: &[Role], demo_mode: bool) -> anyhow::Result<Running> {
    let secret_key = config.secret_key(demo_mode)?;
    let relay_config = config.relay_config()?;
    let db = services::database(config).await?;
    let nats = services::nats(config).await?;
    let jetstream = async_nats::jetstream::new(nats.clone());
    gatehouse_relay::ensure_stream(&jetstream, &relay_config)
        .await
        .context("creating the JetStream stream")?;

    let commands = Commands::new(db.clone(), Passwords::default(), secret_key);
    if demo_mode {
        demo::seed(&commands, config)
            .await
            .context("seeding the demo organisation")?;
    }

    // The recorder first: what a role records before it exists is lost (the relay records
    // that it leads once, when it wins the lock).
    let metrics = telemetry::metrics();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    if roles.contains(&Role::Relay) {
        let (db, js, cfg, token) = (
            db.clone(),
            jetstream.clone(),
            relay_config.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move { ("relay", gatehouse_relay::run(db, js, cfg, token).await) });
    }
    if roles.contains(&Role::Projections) {
        let cfg = ProjectionsConfig::new(&config.nats_stream, &config.nats_prefix);
        let (db, js, token) = (db.clone(), jetstream.clone(), shutdown.clone());
        tasks.spawn(async move {
            (
                "projections",
                gatehouse_projections::run(db, js, cfg, token).await,
            )
        });
    }
    if roles.contains(&Role::Mailer) {
        let cfg = config.mailer_config();
        let (db, js, token) = (db.clone(), jetstream.clone(), shutdown.clone());
        tasks.spawn(async move { ("mailer", gatehouse_mailer::run(db, js, cfg, token).await) });
    }
    let mut addr = None;
    if roles.contains(&Role::Api) {
        let checkpoints = Checkpoints::start(db.clone()).await?;
        let state = gatehouse_portal::AppState::new(gatehouse_portal::Shared {
            commands,
            db: db.clone(),
            checkpoints,
            nats: Some(nats.clone()),
            metrics,
            public_url: config.public_url.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (GATEHOUSE_LISTEN): is another server using it?",
                    config.listen
                )
            })?;
        addr = Some(listener.local_addr()?);
        let app = gatehouse_portal::router_with(state, config.max_concurrent_requests);
        let limits = gatehouse_portal::server::Limits {
            header_read_timeout: std::time::Duration::from_secs(config.header_timeout),
            ..Default::default()
        };
        let token = shutdown.clone();
        tasks.spawn(async move {
            let served = gatehouse_portal::server::serve(listener, app, limits, token)
                .await
                .context("serving HTTP");
            ("api", served)
        });
    }
    Ok(Running {
        addr,
        shutdown,
        tasks,
    })
}

/// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
pub async fn run(config: &Config, roles: &[Role], demo_mode: bool) -> anyhow::Result<()> {
    let running = start(config, roles, demo_mode).await?;
    if let Some(addr) = running.addr {
        tracing::info!(%addr, roles = ?roles, "Gatehouse is serving");
        if demo_mode {
            println!("Portal: http://{addr}/login");
            println!("API: http://{addr}/api/v1  (OpenAPI: http://{addr}/api/openapi.json)");
        }
    }
    let token = running.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    running.wait().await
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
