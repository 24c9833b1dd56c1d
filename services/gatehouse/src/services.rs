//! Connecting to the services, with one clear line when one is missing.

use std::time::Duration;

use anyhow::anyhow;
use gatehouse_store::Db;

use crate::Config;

/// Creates the database if it is missing, connects and migrates.
pub async fn database(config: &Config) -> anyhow::Result<Db> {
    Db::create_if_missing(&config.database_url).await?;
    let db = Db::connect(&config.db_config()).await?;
    db.migrate().await?;
    Ok(db)
}

/// Connects to NATS; the client reconnects by itself afterwards.
pub async fn nats(config: &Config) -> anyhow::Result<async_nats::Client> {
    let connect = async_nats::ConnectOptions::new()
        .name("gatehouse")
        .connection_timeout(Duration::from_secs(3))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("disconnected from NATS; reconnecting")
                }
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
        .connect(config.nats_url.as_str());
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(nats_unreachable(config, &e.to_string())),
        Err(_) => Err(nats_unreachable(config, "no answer within 5 s")),
    }
}

fn nats_unreachable(config: &Config, cause: &str) -> anyhow::Error {
    anyhow!(
        "cannot reach NATS at {} (NATS_URL): {cause}. Start it with JetStream (e.g. `nats-server -js`) or point NATS_URL at a running server.",
        config.nats_url
    )
}
