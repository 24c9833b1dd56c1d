//! Scenario 8: the login storm. 100 password logins at once (`POST /api/v1/auth/login`, back to
//! back, each one argon2id verify in serve) for the load's duration, while the widget's page
//! (scenario 5) is loaded at 16 connections. Ceiling: the machine's cores ÷ one argon2id verify,
//! timed here with the product's own `gatehouse_auth::Passwords` (the parameters serve uses).
//! The widget's p99 during the storm is set against its p99 alone, measured just before for as
//! long and at the same 16 connections.
//!
//! Every login succeeds: the admins have a password, no MFA required and no factor, so the
//! password step authenticates at once (one verify, one `login_succeeded`, one session). Only
//! failures are throttled (SPEC §1), and each task owns admins of its own, so no two logins race
//! on one admin's stream; an answer other than 2xx is counted and named in the row.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use gatehouse_auth::Passwords;
use gatehouse_store::Db;
use hyper::Method;
use serde_json::json;

use super::widget::Page;
use super::{Stage, caught_up};
use crate::env::{Env, Org};
use crate::load::{self, Plan, Until};
use crate::report::{Row, quantile};
use crate::seed;

/// Concurrent logins (issue 7).
const LOGINS: usize = 100;

/// The widget's connections during the storm and without it (issue 7).
const WIDGET_CONNECTIONS: usize = 16;

/// Admins each login task takes in turn.
const ADMINS_PER_TASK: usize = 4;

/// Verifies timed for the ceiling, one at a time; the median is kept.
const VERIFIES: usize = 20;

/// Every storm admin's password (within the product's policy).
const PASSWORD: &str = "login storm, bench password";

const LOGIN: &str = "/api/v1/auth/login";

/// The most the widget's p99 may grow during the storm (issue 7).
const BOUND: f64 = 3.0;

/// Creates the organisation and its admins, who share one password hash made by the product;
/// answers the organisation, the admins' emails and the hash.
async fn seed(env: &Env<'_>, store: &Db) -> anyhow::Result<(Org, Vec<String>, String)> {
    let org = env
        .create_org("Login storm", "owner@login.bench.example")
        .await?;
    let hash = Passwords::default()
        .hash(PASSWORD.to_owned())
        .await
        .context("hashing the storm's password")?;
    let admins = seed::admins_with_password(store, &org, LOGINS * ADMINS_PER_TASK, &hash).await?;
    Ok((org, admins.into_iter().map(seed::email).collect(), hash))
}

pub async fn measure(stage: &Stage<'_>) -> anyhow::Result<Vec<Row>> {
    let page = Page::checked(stage).await?;
    let (org, emails, hash) = seed::with_store(&stage.env.database_url(), async |store| {
        seed(stage.env, store).await
    })
    .await?;
    let head = stage.env.head(&stage.client).await?;
    caught_up(stage, &org.key, head).await?;
    check_login(stage, emails.first().context("no storm admin")?).await?;

    let verify_ms = verify_ms(&hash).await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ceiling = cores as f64 * 1000.0 / verify_ms;
    println!(
        "argon2id verify: median {verify_ms:.1} ms of {VERIFIES}; {cores} cores: {ceiling:.0} verifies/s"
    );

    let duration = stage.duration();
    let alone = page.load(stage, WIDGET_CONNECTIONS, duration).await?;
    println!(
        "widget alone, {WIDGET_CONNECTIONS} connections: {}",
        alone.summary()?
    );
    let emails = Arc::new(emails);
    let plan = Plan {
        connections: LOGINS,
        until: Until::Elapsed(duration),
        rate: None,
    };
    let storm = load::run(stage.server.addr, &plan, move |task, i| {
        let email = &emails[task * ADMINS_PER_TASK + i as usize % ADMINS_PER_TASK];
        let body = json!({ "email": email, "password": PASSWORD });
        load::request(Method::POST, LOGIN, None, Some(&body))
    });
    let (storm, during) = tokio::join!(storm, page.load(stage, WIDGET_CONNECTIONS, duration));
    let (storm, during) = (storm?, during?);
    println!("logins: {}", storm.summary()?);
    println!(
        "widget during the storm, {WIDGET_CONNECTIONS} connections: {}",
        during.summary()?
    );
    // serve's projections apply the storm's logins before the next group.
    let head = stage.env.head(&stage.client).await?;
    caught_up(stage, &org.key, head).await?;

    let (a50, a99) = alone.p50_p99();
    let (d50, d99) = during.p50_p99();
    println!(
        "  widget latency ms: alone p50 {a50:.2} p99 {a99:.2}; storm p50 {d50:.2} p99 {d99:.2}"
    );
    Ok(vec![
        storm.row(
            &format!(
                "POST /auth/login, {LOGINS} connections{} with the widget at {WIDGET_CONNECTIONS} vs {cores} cores / argon2id verify",
                storm.failures()
            ),
            "logins/s",
            ceiling,
        ),
        Row::new(
            &format!(
                "widget p99, {WIDGET_CONNECTIONS} connections{}, during the login storm vs without (target ratio <= {BOUND})",
                during.failures()
            ),
            "ms",
        )
        .against(d99, a99)
        .latency(d50, d99),
    ])
}

/// Fails unless a storm admin's password login authenticates at once (no MFA step: one verify
/// is the whole login).
async fn check_login(stage: &Stage<'_>, email: &str) -> anyhow::Result<()> {
    let body = json!({ "email": email, "password": PASSWORD });
    let request = load::request(Method::POST, LOGIN, None, Some(&body))?;
    let answer = stage.conn().await?.send(request).await?.success()?.json()?;
    ensure!(
        answer["status"] == "authenticated",
        "a storm admin's login answered {answer}, not authenticated"
    );
    Ok(())
}

/// The median milliseconds of one argon2id verify of `hash` (a correct password), one at a
/// time, with the product's parameters.
async fn verify_ms(hash: &str) -> anyhow::Result<f64> {
    let passwords = Passwords::new(1);
    let mut times = Vec::with_capacity(VERIFIES);
    for _ in 0..VERIFIES {
        let started = Instant::now();
        let verified = passwords
            .verify(PASSWORD.to_owned(), Some(hash.to_owned()))
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(verified, "the storm's password does not verify");
    }
    Ok(quantile(&mut times, 0.5))
}
