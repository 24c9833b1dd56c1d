//! The JetStream stream the relay publishes to.

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use gatehouse_events::subject;

use crate::RelayConfig;

/// Creates or updates the stream idempotently: file storage, subjects `["<prefix>.>"]`, limits
/// retention, and the duplicate window, max age and replicas of `cfg`. Every process may call it
/// at start; a stream that was deleted is created again with the same settings.
pub async fn ensure_stream(js: &jetstream::Context, cfg: &RelayConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    let config = stream::Config {
        name: cfg.stream.clone(),
        description: Some("Gatehouse events, relayed from the Postgres event store".to_owned()),
        subjects: vec![subject::all(&cfg.prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: cfg.duplicate_window,
        max_age: cfg.max_age,
        num_replicas: cfg.replicas,
        ..Default::default()
    };
    let info = js
        .create_or_update_stream(config)
        .await
        .with_context(|| format!("creating or updating the JetStream stream {}", cfg.stream))?;
    tracing::info!(
        stream = %info.config.name,
        subjects = ?info.config.subjects,
        messages = info.state.messages,
        replicas = info.config.num_replicas,
        duplicate_window_s = info.config.duplicate_window.as_secs(),
        max_age_s = info.config.max_age.as_secs(),
        "JetStream stream ready"
    );
    Ok(())
}
