//! Who a request acts as.

use anyhow::Context;
use gatehouse_domain::{AdminId, OrgId, Role};
use gatehouse_store::Db;

/// How a request proved who it is (the audit's `auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Session,
    ApiKey,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Session => "session",
            AuthMethod::ApiKey => "api-key",
        }
    }
}

/// An authenticated administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub admin_id: AdminId,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    pub auth_method: AuthMethod,
}

/// The live admin holding the live key whose SHA-256 is `hash`, if any, read from Postgres
/// (requests look keys up through [`crate::ApiKeyCache`]).
pub(crate) async fn by_hash(db: &Db, hash: &[u8]) -> anyhow::Result<Option<Principal>> {
    let client = db.client().await?;
    let statement = client
        .prepare_cached(
            "SELECT c.admin_id, c.org_id, c.email, c.role
             FROM api_keys k JOIN admin_credentials c USING (admin_id)
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND c.removed_at IS NULL",
        )
        .await
        .context("looking up an API key")?;
    let row = client
        .query_opt(&statement, &[&hash])
        .await
        .context("looking up an API key")?;
    Ok(row.and_then(|r| {
        let role: String = r.get(3);
        Some(Principal {
            admin_id: AdminId(r.get(0)),
            org_id: OrgId(r.get(1)),
            email: r.get(2),
            role: Role::parse(&role)?,
            auth_method: AuthMethod::ApiKey,
        })
    }))
}

/// A live admin's stored credentials, found by email (for login and the demo seed).
#[derive(Clone)]
pub struct StoredCredentials {
    pub admin_id: AdminId,
    pub org_id: OrgId,
    pub email: String,
    pub role: Role,
    /// Never logged, never returned: only verified.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("admin_id", &self.admin_id)
            .field("org_id", &self.org_id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

pub async fn by_email(db: &Db, email: &str) -> anyhow::Result<Option<StoredCredentials>> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT admin_id, org_id, email, role, password_hash FROM admin_credentials
             WHERE email = $1 AND removed_at IS NULL",
            &[&email.trim().to_lowercase()],
        )
        .await
        .context("looking up credentials")?;
    Ok(row.and_then(|r| {
        let role: String = r.get(3);
        Some(StoredCredentials {
            admin_id: AdminId(r.get(0)),
            org_id: OrgId(r.get(1)),
            email: r.get(2),
            role: Role::parse(&role)?,
            password_hash: r.get(4),
        })
    }))
}
