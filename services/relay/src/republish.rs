//! Publishing a range of the store again, e.g. after a stream was purged or recreated.

use anyhow::Context;
use async_nats::jetstream;
use gatehouse_store::Db;

use crate::RelayConfig;
use crate::publish::publish_batch;

/// Publishes the store's events with position in `[from, to]` again, with the same
/// `Nats-Msg-Id`s (so JetStream drops those it still holds). Returns how many were published.
/// It does not move the relay's cursor; a failure is returned, and retrying is safe.
pub async fn republish(
    db: &Db,
    js: &jetstream::Context,
    cfg: &RelayConfig,
    from: i64,
    to: Option<i64>,
) -> anyhow::Result<u64> {
    cfg.validate()?;
    let mut after = from.saturating_sub(1).max(0);
    let mut total = 0u64;
    loop {
        let limit = match to {
            Some(to) if to <= after => break,
            Some(to) => cfg.batch_size.min(to - after),
            None => cfg.batch_size,
        };
        let batch = db
            .read_after(after, limit)
            .await
            .context("reading events to republish")?;
        let Some(last) = batch.last().map(|r| r.envelope.position) else {
            break;
        };
        publish_batch(js, cfg, &batch)
            .await
            .with_context(|| format!("republishing positions {} to {last}", after + 1))?;
        total += batch.len() as u64;
        tracing::info!(to = last, total, "republished a batch");
        after = last;
    }
    Ok(total)
}
