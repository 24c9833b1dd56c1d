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

/// The servers `NATS_URL` names: one URL, or several separated by commas (the nodes of a
/// cluster; the client connects to one and moves to another when it goes away).
pub fn nats_servers(url: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .map(|one| {
            let addr = one
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| anyhow!("NATS_URL: {one:?} is not a NATS server address: {e}"))?;
            if addr.host().is_empty() {
                return Err(anyhow!("NATS_URL: {one:?} names no host"));
            }
            Ok(addr)
        })
        .collect()
}

/// Connects to NATS; the client reconnects by itself afterwards.
pub async fn nats(config: &Config) -> anyhow::Result<async_nats::Client> {
    let servers = nats_servers(&config.nats_url)?;
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
        .connect(servers);
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

#[cfg(test)]
mod tests {
    use super::nats_servers;

    #[test]
    fn nats_url_names_one_server_or_a_comma_separated_cluster() {
        let one = nats_servers("nats://127.0.0.1:4222").expect("one server");
        assert_eq!(one.len(), 1);
        let three = nats_servers("nats://n1:4222, nats://n2:4222,nats://n3:4223").expect("three");
        let hosts: Vec<(String, u16)> = three
            .iter()
            .map(|s| (s.host().to_owned(), s.port()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("n1".into(), 4222),
                ("n2".into(), 4222),
                ("n3".into(), 4223)
            ]
        );
        let bad = nats_servers("nats://n1:4222,").expect_err("an empty entry");
        assert!(bad.to_string().contains("NATS_URL"), "{bad}");
    }
}
