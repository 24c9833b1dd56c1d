//! The rows behind TOTP: an admin's enrolled factor (secret sealed, last accepted step) and the
//! Set Up MFA links (token hash, expiry, the secret offered while enrolling). Statements here
//! run in the same transaction as the events they go with.

use anyhow::Context;
use chrono::{DateTime, Utc};
use gatehouse_domain::{AdminId, OrgId};
use gatehouse_store::{Db, Statement};

/// An enrolled factor.
pub struct Factor {
    pub secret_sealed: Vec<u8>,
    pub last_step: u64,
}

pub async fn load(db: &Db, admin: AdminId) -> anyhow::Result<Option<Factor>> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT secret_sealed, last_step FROM mfa_factors WHERE admin_id = $1",
            &[&admin.0],
        )
        .await
        .context("loading a TOTP factor")?;
    Ok(row.map(|r| Factor {
        secret_sealed: r.get(0),
        last_step: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
    }))
}

fn step_param(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// Records an accepted time step; it can never be accepted again.
pub fn accept_step(admin: AdminId, step: u64) -> Statement {
    Statement {
        sql: "UPDATE mfa_factors SET last_step = $2 WHERE admin_id = $1 AND last_step < $2",
        params: vec![Box::new(admin.0), Box::new(step_param(step))],
    }
}

/// Makes `secret_sealed` the admin's factor, replacing any old one.
pub fn replace(admin: AdminId, org: OrgId, secret_sealed: Vec<u8>, step: u64) -> Statement {
    Statement {
        sql: "INSERT INTO mfa_factors (admin_id, org_id, secret_sealed, last_step)
              VALUES ($1, $2, $3, $4)
              ON CONFLICT (admin_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed,
                last_step = EXCLUDED.last_step, enrolled_at = now()",
        params: vec![
            Box::new(admin.0),
            Box::new(org.0),
            Box::new(secret_sealed),
            Box::new(step_param(step)),
        ],
    }
}

/// A Set Up MFA link, found by its token's hash.
pub struct Link {
    pub admin_id: AdminId,
    pub org_id: OrgId,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
    pub pending_secret_sealed: Option<Vec<u8>>,
}

impl Link {
    /// Whether the link can still be used at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.used && self.expires_at > now
    }
}

pub async fn find_link(db: &Db, token_hash: &[u8]) -> anyhow::Result<Option<Link>> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT admin_id, org_id, expires_at, used_at IS NOT NULL, pending_secret_sealed
             FROM mfa_setup_links WHERE token_hash = $1",
            &[&token_hash],
        )
        .await
        .context("looking up a Set Up MFA link")?;
    Ok(row.map(|r| Link {
        admin_id: AdminId(r.get(0)),
        org_id: OrgId(r.get(1)),
        expires_at: r.get(2),
        used: r.get(3),
        pending_secret_sealed: r.get(4),
    }))
}

/// Keeps the secret offered on a link until the admin confirms it with a code.
pub fn offer_secret(token_hash: Vec<u8>, secret_sealed: Vec<u8>) -> Statement {
    Statement {
        sql: "UPDATE mfa_setup_links SET pending_secret_sealed = $2
              WHERE token_hash = $1 AND used_at IS NULL",
        params: vec![Box::new(token_hash), Box::new(secret_sealed)],
    }
}

/// Spends every outstanding link of an admin (the one used, and any older ones).
pub fn spend_links(admin: AdminId) -> Statement {
    Statement {
        sql: "UPDATE mfa_setup_links SET used_at = now(), pending_secret_sealed = NULL
              WHERE admin_id = $1 AND used_at IS NULL",
        params: vec![Box::new(admin.0)],
    }
}

/// Issues a Set Up MFA link for `admin` outside any email (the owner's link that
/// `gatehouse org create` prints); answers the token, which is stored only as its hash.
pub async fn issue_link(
    db: &Db,
    admin: AdminId,
    org: OrgId,
    lifetime: chrono::Duration,
) -> anyhow::Result<String> {
    let token = crate::link_token::generate()?;
    let client = db.client().await?;
    // The link answers no event; it gets an id of its own in the event-id column.
    client
        .execute(
            "INSERT INTO mfa_setup_links (token_hash, event_id, admin_id, org_id, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &token.hash,
                &uuid::Uuid::now_v7(),
                &admin.0,
                &org.0,
                &(Utc::now() + lifetime),
            ],
        )
        .await
        .context("issuing a Set Up MFA link")?;
    Ok(token.plaintext)
}
