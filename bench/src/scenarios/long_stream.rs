//! Scenario 9: `PUT /admins/{id}/mfa` on an admin whose stream already holds 100,000 events
//! (logins, appended through the store) against the same command on a fresh admin of the same
//! organisation. The two alternate, one request at a time, so the machine's noise falls on
//! both alike; the bound is the fresh admin's p50 × 1.5 (issue 7).

use gatehouse_store::Db;
use hyper::Method;
use serde_json::json;
use uuid::Uuid;

use super::{Stage, caught_up};
use crate::env::{Env, Org};
use crate::load::{self, Conn};
use crate::report::{Row, quantile};
use crate::seed;

/// Events already in the long admin's stream.
pub const STREAM_EVENTS: usize = 100_000;

/// How much slower than a fresh admin's p50 the long admin's may be.
const BOUND: f64 = 1.5;

/// Creates the organisation, a long and a fresh admin, and the long one's logins; answers the
/// organisation, the long admin and the fresh one.
async fn seed(env: &Env<'_>, store: &Db) -> anyhow::Result<(Org, Uuid, Uuid)> {
    let org = env
        .create_org("Long stream", "owner@long-stream.bench.example")
        .await?;
    let admins = seed::admins(store, &org, 2, false).await?;
    let (long, fresh) = match admins.as_slice() {
        [long, fresh] => (*long, *fresh),
        _ => anyhow::bail!("two admins were asked for"),
    };
    // The creation is the stream's first event.
    seed::logins(store, &org, long, STREAM_EVENTS - 1).await?;
    Ok((org, long, fresh))
}

pub async fn measure(stage: &Stage<'_>) -> anyhow::Result<Vec<Row>> {
    let (org, long, fresh) = seed::with_store(&stage.env.database_url(), async |store| {
        seed(stage.env, store).await
    })
    .await?;
    // serve's projections apply the 100,000 logins before anything is timed.
    let head = stage.env.head(&stage.client).await?;
    caught_up(stage, &org.key, head).await?;
    let rounds = if stage.env.args.quick { 10 } else { 50 };
    let mut conn = stage.conn().await?;
    let (mut on_long, mut on_fresh) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let required = round % 2 == 0;
        on_long.push(put(&mut conn, &org.key, long, required).await?);
        on_fresh.push(put(&mut conn, &org.key, fresh, required).await?);
    }
    let (l50, l99) = (quantile(&mut on_long, 0.5), quantile(&mut on_long, 0.99));
    let (f50, f99) = (quantile(&mut on_fresh, 0.5), quantile(&mut on_fresh, 0.99));
    println!("PUT mfa p50: {l50:.1} ms on the long stream, {f50:.1} ms on a fresh admin");
    Ok(vec![
        Row::new("PUT /admins/{id}/mfa on a fresh admin, one at a time", "ms")
            .value(f50)
            .latency(f50, f99),
        Row::new(
            &format!(
                "PUT /admins/{{id}}/mfa on a {STREAM_EVENTS}-event stream (p50 vs {BOUND} x fresh p50)"
            ),
            "ms",
        )
        .against(l50, BOUND * f50)
        .latency(l50, l99),
    ])
}

/// One command; answers its milliseconds.
async fn put(conn: &mut Conn, key: &str, admin: Uuid, required: bool) -> anyhow::Result<f64> {
    let request = load::request(
        Method::PUT,
        &format!("/api/v1/admins/{admin}/mfa"),
        Some(key),
        Some(&json!({ "required": required })),
    )?;
    let started = std::time::Instant::now();
    conn.send(request).await?.success()?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}
