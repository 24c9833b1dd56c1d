//! Scenario 3: one `POST /admins/require-mfa` of 10,000 admins (all without the requirement),
//! against one multi-row INSERT of 10,000 rows. They run in [`REPEATS`] pairs (each request on
//! its own admins, then one insert once its emails and read models are done) and the medians
//! are kept: a single request is at the mercy of whatever else the machine does, and pairing
//! puts the ceiling through the same moments of the machine as the requests.

use std::time::Instant;

use anyhow::{Context, ensure};
use hyper::Method;
use serde_json::json;

use super::{Stage, settle};
use crate::ceiling;
use crate::load;
use crate::report::{Row, quantile};

/// Admins in the one request (issue 7).
pub const ADMINS: usize = 10_000;

/// Requests (and ceiling inserts) measured.
pub const REPEATS: usize = 5;

pub async fn measure(stage: &Stage<'_>) -> anyhow::Result<Vec<Row>> {
    let (org, admins) = stage.widget.as_ref().context("no widget organisation")?;
    let mut client = crate::env::connect(&stage.env.database_url()).await?;
    let mut ours = Vec::with_capacity(REPEATS);
    let mut ceiling = Vec::with_capacity(REPEATS);
    for ids in admins.chunks_exact(ADMINS).take(REPEATS) {
        let secs = bulk(stage, &org.key, ids).await?;
        println!(
            "bulk require-mfa of {ADMINS}: {secs:.2} s ({:.0} rows/s)",
            ADMINS as f64 / secs
        );
        ours.push(ADMINS as f64 / secs);
        // Its emails and read-model updates are not the next request's to pay for, nor the
        // insert's: the 10,000 Set Up MFA emails take longer to send than the request took.
        let settling = Instant::now();
        settle(stage).await?;
        println!(
            "  its emails and read models done {:.1} s later",
            settling.elapsed().as_secs_f64()
        );
        let rows = ceiling::multi_row_insert(&mut client, ADMINS).await?;
        println!("  multi-row INSERT of {ADMINS}: {rows:.0} rows/s");
        ceiling.push(rows);
    }
    ensure!(
        !ours.is_empty(),
        "fewer than {ADMINS} admins to require MFA for"
    );
    let peak = stage.server.process.peak_rss_mb()?;
    let ceiling = quantile(&mut ceiling, 0.5);
    Ok(vec![
        Row::new(
            &format!(
                "POST /admins/require-mfa of {ADMINS} vs one multi-row INSERT (medians of {})",
                ours.len()
            ),
            "rows/s",
        )
        .against(quantile(&mut ours, 0.5), ceiling)
        .rss(peak),
    ])
}

/// One bulk request; answers its seconds.
async fn bulk(stage: &Stage<'_>, key: &str, ids: &[uuid::Uuid]) -> anyhow::Result<f64> {
    let request = load::request(
        Method::POST,
        "/api/v1/admins/require-mfa",
        Some(key),
        Some(&json!({ "admin_ids": ids })),
    )?;
    let mut conn = stage.conn().await?;
    let started = Instant::now();
    let answer = conn.send(request).await?.success()?;
    let secs = started.elapsed().as_secs_f64();
    let required = answer.json()?["required"].as_array().map_or(0, Vec::len);
    ensure!(
        required == ids.len(),
        "the bulk required {required} admins, not {}",
        ids.len()
    );
    Ok(secs)
}
