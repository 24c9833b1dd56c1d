//! Server-side sessions. The cookie carries a random token; the table keeps its SHA-256, the
//! stage (`pending` until Verify Your Identity succeeds when MFA applies, then `active`) and a
//! per-session CSRF token for HTML forms. Sessions end after [`IDLE_TIMEOUT`] without use, on
//! logout, when the admin is removed, and all at once when the admin's MFA is reset.

use std::time::Duration;

use anyhow::Context;
use gatehouse_domain::{AdminId, OrgId, Role};
use gatehouse_store::{Db, Statement};

use crate::link_token;

/// The session cookie's name (SPEC §3).
pub const COOKIE: &str = "gatehouse_session";

/// A session unused for this long is over.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `last_seen_at` is written at most this often per session (reads stay reads).
const TOUCH_EVERY_SECONDS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password checked; MFA still to pass (or, for a required admin not enrolled, only the
    /// Set Up MFA email can be asked for).
    Pending,
    Active,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Active => "active",
        }
    }
}

/// A live session and who it belongs to.
#[derive(Clone)]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub admin_id: AdminId,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    pub stage: Stage,
    pub csrf_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("admin_id", &self.admin_id)
            .field("org_id", &self.org_id)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// The session a cookie value names, if it is live; marks it used.
pub async fn find(db: &Db, token: &str) -> anyhow::Result<Option<Session>> {
    if !link_token::well_formed(token) {
        return Ok(None);
    }
    let hash = link_token::hash(token);
    let client = db.client().await?;
    let idle = i64::try_from(IDLE_TIMEOUT.as_secs()).unwrap_or(i64::MAX);
    let row = client
        .query_opt(
            "SELECT s.admin_id, s.org_id, c.email, c.role, s.stage, s.csrf_token,
                    extract(epoch FROM now() - s.last_seen_at)::bigint AS idle
             FROM sessions s JOIN admin_credentials c USING (admin_id)
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND c.removed_at IS NULL
               AND s.last_seen_at > now() - make_interval(secs => $2)",
            &[&hash, &(idle as f64)],
        )
        .await
        .context("looking up a session")?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.get(3);
    let stage: String = row.get(4);
    let idle_for: i64 = row.get(6);
    if idle_for >= TOUCH_EVERY_SECONDS {
        client
            .execute(
                "UPDATE sessions SET last_seen_at = now() WHERE token_hash = $1",
                &[&hash],
            )
            .await
            .context("marking a session used")?;
    }
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Session {
        token_hash: hash,
        admin_id: AdminId(row.get(0)),
        org_id: OrgId(row.get(1)),
        email: row.get(2),
        role,
        stage: if stage == "active" {
            Stage::Active
        } else {
            Stage::Pending
        },
        csrf_token: row.get(5),
    }))
}

/// A new session row (run in the login's append).
pub fn insert(
    token_hash: Vec<u8>,
    admin: AdminId,
    org: OrgId,
    stage: Stage,
    csrf_token: String,
    client_ip: String,
    user_agent: String,
) -> Statement {
    Statement {
        sql: "INSERT INTO sessions (token_hash, admin_id, org_id, stage, csrf_token, client_ip, user_agent)
              VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params: vec![
            Box::new(token_hash),
            Box::new(admin.0),
            Box::new(org.0),
            Box::new(stage.as_str().to_owned()),
            Box::new(csrf_token),
            Box::new(client_ip),
            Box::new(user_agent),
        ],
    }
}

/// Promotes a pending session to active under a new token (so a token seen before MFA is
/// worth nothing after it).
pub fn activate(old_hash: Vec<u8>, new_hash: Vec<u8>) -> Statement {
    Statement {
        sql: "UPDATE sessions SET token_hash = $2, stage = 'active', last_seen_at = now()
              WHERE token_hash = $1 AND revoked_at IS NULL",
        params: vec![Box::new(old_hash), Box::new(new_hash)],
    }
}

/// Ends every session of an admin (run in the append that resets their MFA).
pub fn revoke_all(admin: AdminId) -> Statement {
    Statement {
        sql: "UPDATE sessions SET revoked_at = now() WHERE admin_id = $1 AND revoked_at IS NULL",
        params: vec![Box::new(admin.0)],
    }
}

/// Ends one session (logout).
pub async fn revoke(db: &Db, token_hash: &[u8]) -> anyhow::Result<()> {
    let client = db.client().await?;
    client
        .execute(
            "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&token_hash],
        )
        .await
        .context("revoking a session")?;
    Ok(())
}
