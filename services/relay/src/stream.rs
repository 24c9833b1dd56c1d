//! The JetStream stream the relay publishes to.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::{self, stream};
use gatehouse_events::subject;

use crate::RelayConfig;

/// Creates or updates the stream idempotently: file storage, subjects `["<prefix>.>"]`, limits
/// retention, and the duplicate window, max age and replicas of `cfg`. Every process may call it
/// at start; a stream that was deleted is created again with the same settings. A failure on
/// the server's side (a 5xx answer, a timeout) is tried again a few times before it is
/// reported: nats-server 2.9 can fail a creation while another stream is being deleted.
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
    let mut attempt = 1;
    let info = loop {
        match js.create_or_update_stream(config.clone()).await {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                tracing::warn!(
                    stream = %cfg.stream,
                    attempt,
                    error = %e,
                    "JetStream failed to create or update the stream; trying again"
                );
                tokio::time::sleep(Duration::from_millis(100) * attempt).await;
                attempt += 1;
            }
            result => {
                break result.with_context(|| {
                    format!("creating or updating the JetStream stream {}", cfg.stream)
                })?;
            }
        }
    };
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

/// Attempts at creating or updating the stream when the server fails it.
const ATTEMPTS: u32 = 5;

/// Whether the server failed the request on its side, rather than refusing the settings.
fn transient(error: &CreateStreamError) -> bool {
    match error.kind() {
        CreateStreamErrorKind::TimedOut => true,
        CreateStreamErrorKind::JetStream(e) => e.code() >= 500,
        _ => false,
    }
}
