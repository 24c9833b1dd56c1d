//! Many administrators at once, appended through the event store.
//!
//! Creating 100,000 admins over HTTP would spend most of its time in argon2 (every created admin
//! gets a password hash) and measure nothing the scenarios ask about. So admins are appended with
//! `gatehouse_store::Db::append` from here, exactly as the command service would append them: the
//! `admin.created` events (envelopes, positions, the organisation's hash chain) and, in the same
//! transaction, the credential rows of `gatehouse_auth::rows::insert_admin`, without a password
//! (the benchmark's admins never log in), except the login storm's, which share one hash made
//! once by the product's own `gatehouse_auth::Passwords`. `gatehouse serve`'s projections then
//! apply them like any other events.

use anyhow::Context;
use chrono::Utc;
use gatehouse_domain::{AdminId, Email, OrgId, Role};
use gatehouse_events::types::{AdminCreated, LoginSucceeded};
use gatehouse_events::{Actor, Event};
use gatehouse_store::{AppendRequest, Db, DbConfig, Expected, Statement};
use uuid::Uuid;

use crate::env::Org;

/// Events per append: one transaction, one hash-chain run.
const CHUNK: usize = 1_000;

/// The event store of the benchmark's database, with one connection.
pub async fn store(database_url: &str) -> anyhow::Result<Db> {
    Db::connect(&DbConfig {
        url: database_url.to_owned(),
        pool_size: 1,
    })
    .await
    .context("connecting to the event store")
}

/// Runs `seed` on the event store of `database_url` and closes it after, whatever the outcome.
pub async fn with_store<T>(
    database_url: &str,
    seed: impl AsyncFnOnce(&Db) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = store(database_url).await?;
    let seeded = seed(&db).await;
    db.pool.close();
    seeded
}

/// Appends `n` managers to `org`, created by its owner, with MFA required or not and without a
/// password; answers their ids in creation order.
pub async fn admins(db: &Db, org: &Org, n: usize, mfa_required: bool) -> anyhow::Result<Vec<Uuid>> {
    appended(db, org, n, mfa_required, None).await
}

/// Appends `n` managers to `org` without MFA required, whose password has the argon2id PHC
/// string `password_hash`: they can log in with it. One hash serves them all, since the string
/// carries its own salt and parameters. Answers their ids in creation order.
pub async fn admins_with_password(
    db: &Db,
    org: &Org,
    n: usize,
    password_hash: &str,
) -> anyhow::Result<Vec<Uuid>> {
    appended(db, org, n, false, Some(password_hash)).await
}

/// The email address of a seeded admin.
pub fn email(admin: Uuid) -> String {
    format!("bench-{}@bench.example", admin.simple())
}

async fn appended(
    db: &Db,
    org: &Org,
    n: usize,
    mfa_required: bool,
    password_hash: Option<&str>,
) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(CHUNK) {
        let mut events = Vec::with_capacity(chunk.len());
        let mut statements = Vec::with_capacity(chunk.len());
        for &id in chunk {
            let (event, credentials) = created(org, id, mfa_required, password_hash)?;
            events.push(event);
            statements.push(credentials);
        }
        append(
            db,
            org,
            (Actor::Admin(org.owner), "api-key"),
            events,
            chunk.iter().map(|&id| (id, Expected::NoStream)).collect(),
            statements,
        )
        .await
        .context("appending admins")?;
    }
    Ok(ids)
}

/// An admin's creation event and its credential row.
fn created(
    org: &Org,
    id: Uuid,
    mfa_required: bool,
    password_hash: Option<&str>,
) -> anyhow::Result<(Event, Statement)> {
    let email = email(id);
    let row = gatehouse_auth::rows::insert_admin(
        AdminId(id),
        OrgId(org.id),
        &Email::parse(&email).context("a generated address")?,
        Role::Manager,
        password_hash.map(str::to_owned),
    );
    let event = Event::AdminCreated(AdminCreated {
        admin_id: id,
        email,
        first_name: "Bench".to_owned(),
        last_name: "Admin".to_owned(),
        role: Role::Manager,
        mfa_required,
    });
    Ok((event, row))
}

/// Appends `n` successful logins to `admin`'s stream, so that it grows long without changing
/// the admin's state (the long-history scenario).
pub async fn logins(db: &Db, org: &Org, admin: Uuid, n: usize) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let size = left.min(CHUNK);
        let events = (0..size)
            .map(|_| {
                Event::LoginSucceeded(LoginSucceeded {
                    admin_id: admin,
                    mfa: false,
                    mfa_type: "none".to_owned(),
                    auth_method: "session".to_owned(),
                    client_ip: "127.0.0.1".to_owned(),
                    user_agent: "gatehouse-bench".to_owned(),
                })
            })
            .collect();
        append(
            db,
            org,
            (Actor::Admin(admin), "session"),
            events,
            vec![(admin, Expected::Any)],
            vec![],
        )
        .await
        .context("appending logins")?;
        left -= size;
    }
    Ok(())
}

async fn append(
    db: &Db,
    org: &Org,
    (actor, auth_method): (Actor, &'static str),
    events: Vec<Event>,
    expected: Vec<(Uuid, Expected)>,
    statements: Vec<Statement>,
) -> anyhow::Result<()> {
    db.append(AppendRequest {
        org_id: org.id,
        actor,
        correlation_id: Uuid::new_v4(),
        time: Utc::now(),
        auth_method: Some(auth_method),
        events,
        expected,
        org_position: None,
        statements,
    })
    .await
    .map_err(anyhow::Error::new)?;
    Ok(())
}
