//! Password failures throttled per account and per client address (SPEC §1), in Postgres so
//! every API process shares them. Past a free allowance of failures within [`WINDOW`], each
//! further failure blocks the key for twice as long as the previous one, up to [`MAX_BLOCK`].
//! An unknown email counts like a known one, so the answers cannot tell them apart.

use std::time::Duration;

use anyhow::Context;
use gatehouse_store::Db;

/// Failures of one account allowed within the window before blocking.
pub const ACCOUNT_ALLOWANCE: i32 = 5;
/// Failures from one client address allowed within the window before blocking.
pub const ADDRESS_ALLOWANCE: i32 = 20;
/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first block; each further failure doubles it.
pub const FIRST_BLOCK: Duration = Duration::from_secs(30);
/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);

fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

fn address_key(ip: &str) -> String {
    format!("ip:{ip}")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// How long the caller must wait before trying a password for `email` from `ip`, if blocked.
pub async fn blocked_for(db: &Db, email: &str, ip: &str) -> anyhow::Result<Option<Duration>> {
    let client = db.client().await?;
    let row = client
        .query_one(
            "SELECT ceil(extract(epoch FROM max(blocked_until) - now()))::bigint
             FROM login_throttle WHERE key = ANY($1) AND blocked_until > now()",
            &[&vec![account_key(email), address_key(ip)]],
        )
        .await
        .context("reading the login throttle")?;
    let wait: Option<i64> = row.get(0);
    Ok(wait.map(|s| Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1))))
}

/// Counts a failed password for `email` from `ip`.
pub async fn record_failure(db: &Db, email: &str, ip: &str) -> anyhow::Result<()> {
    let client = db.client().await?;
    for (key, allowance) in [
        (account_key(email), ACCOUNT_ALLOWANCE),
        (address_key(ip), ADDRESS_ALLOWANCE),
    ] {
        client
            .execute(
                "INSERT INTO login_throttle AS t (key, failures, window_start)
                 VALUES ($1, 1, now())
                 ON CONFLICT (key) DO UPDATE SET
                   failures = CASE WHEN t.window_start < now() - make_interval(secs => $2)
                                   THEN 1 ELSE t.failures + 1 END,
                   window_start = CASE WHEN t.window_start < now() - make_interval(secs => $2)
                                       THEN now() ELSE t.window_start END",
                &[&key, &secs(WINDOW)],
            )
            .await
            .context("counting a login failure")?;
        client
            .execute(
                "UPDATE login_throttle SET blocked_until = now() + make_interval(secs =>
                   least($3, $4 * power(2, failures - $2 - 1)))
                 WHERE key = $1 AND failures > $2",
                &[&key, &allowance, &secs(MAX_BLOCK), &secs(FIRST_BLOCK)],
            )
            .await
            .context("blocking after login failures")?;
    }
    Ok(())
}

/// Forgets an account's failures after a correct password (the address keeps its count).
pub async fn clear_account(db: &Db, email: &str) -> anyhow::Result<()> {
    let client = db.client().await?;
    client
        .execute(
            "DELETE FROM login_throttle WHERE key = $1",
            &[&account_key(email)],
        )
        .await
        .context("clearing the login throttle")?;
    Ok(())
}
