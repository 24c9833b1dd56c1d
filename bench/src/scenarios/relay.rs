//! Scenario 6: the relay draining a backlog to JetStream. The long history is in the store and
//! nothing has been relayed yet; `gatehouse serve --roles relay` starts and the clock runs from
//! its start until its cursor reaches the store's head (so it includes the process's start,
//! tens of milliseconds). The ceiling publishes the same envelopes, encoded the same way, to a
//! scratch stream made like the relay's: raw async-nats, `Nats-Msg-Id`, 1024 in flight.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio_postgres::Client;

use crate::ceiling::{self, PUBLISH_IN_FLIGHT};
use crate::env::Env;
use crate::report::Row;
use crate::server::{Process, free_addr};

/// How long the drain may take before the scenario gives up.
const PATIENCE: Duration = Duration::from_secs(30 * 60);

pub async fn measure(env: &Env<'_>) -> anyhow::Result<Vec<Row>> {
    let client = env.connect().await?;
    let head = env.head(&client).await?;
    let from = cursor(&client).await?;
    ensure!(from == 0, "the relay already published up to {from}");
    println!("relaying a backlog of {head} events…");

    let started = Instant::now();
    // Without the api role serve listens nowhere; the address is only its configuration.
    let command = env.serve("relay", free_addr()?);
    let mut relay = Process::spawn(command, "gatehouse serve --roles relay")?;
    loop {
        if cursor(&client).await? >= head {
            break;
        }
        relay.ensure_running("gatehouse serve --roles relay")?;
        if started.elapsed() > PATIENCE {
            bail!("the relay did not reach {head} within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = relay.peak_rss_mb()?;
    relay.stop().await;
    let stored = stream_messages(env).await?;
    println!(
        "relayed {head} in {secs:.1} s ({:.0} events/s); the stream holds {stored}",
        head as f64 / secs
    );

    let (published, ceiling) = ceiling::publish(env, &client).await?;
    println!("raw pipelined publish of {published}: {ceiling:.0} msg/s");
    Ok(vec![
        Row::new(
            &format!(
                "relay: {head}-event backlog to JetStream vs raw publish, {PUBLISH_IN_FLIGHT} in flight"
            ),
            "events/s",
        )
        .against(head as f64 / secs, ceiling)
        .rss(peak),
    ])
}

/// The last position the relay published.
pub async fn cursor(client: &Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one("SELECT position FROM relay_cursor", &[])
        .await
        .context("reading the relay's cursor")?
        .get(0))
}

/// Messages in the benchmark's stream.
async fn stream_messages(env: &Env<'_>) -> anyhow::Result<u64> {
    let nats = async_nats::connect(&env.args.nats)
        .await
        .context("connecting to NATS")?;
    let js = async_nats::jetstream::new(nats);
    let mut stream = js
        .get_stream(&env.stream)
        .await
        .context("looking up the stream")?;
    let info = stream.info().await.context("reading the stream's state")?;
    Ok(info.state.messages)
}
