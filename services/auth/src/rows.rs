//! Statements that keep the credential tables in step with the events, run in the same
//! transaction as the append (see `gatehouse_store::Statement`).

use gatehouse_domain::{AdminId, Email, OrgId, Role};
use gatehouse_store::Statement;
use uuid::Uuid;

/// The unique index that makes one live admin per email address.
pub const EMAIL_CONSTRAINT: &str = "admin_credentials_email";

pub fn insert_admin(
    id: AdminId,
    org: OrgId,
    email: &Email,
    role: Role,
    password_hash: Option<String>,
) -> Statement {
    Statement {
        sql: "INSERT INTO admin_credentials (admin_id, org_id, email, role, password_hash) VALUES ($1, $2, $3, $4, $5)",
        params: vec![
            Box::new(id.0),
            Box::new(org.0),
            Box::new(email.as_str().to_owned()),
            Box::new(role.as_str().to_owned()),
            Box::new(password_hash),
        ],
    }
}

/// Frees the email and ends every credential of a removed admin.
pub fn remove_admin(id: AdminId) -> Vec<Statement> {
    vec![
        Statement {
            sql: "UPDATE admin_credentials SET removed_at = now() WHERE admin_id = $1",
            params: vec![Box::new(id.0)],
        },
        Statement {
            sql: "UPDATE api_keys SET revoked_at = now() WHERE admin_id = $1 AND revoked_at IS NULL",
            params: vec![Box::new(id.0)],
        },
    ]
}

pub fn insert_api_key(
    key_id: Uuid,
    admin: AdminId,
    org: OrgId,
    hash: Vec<u8>,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
) -> Statement {
    Statement {
        sql: "INSERT INTO api_keys (key_id, admin_id, org_id, key_hash, name, created_at)
              VALUES ($1, $2, $3, $4, $5, $6)",
        params: vec![
            Box::new(key_id),
            Box::new(admin.0),
            Box::new(org.0),
            Box::new(hash),
            Box::new(name),
            Box::new(created_at),
        ],
    }
}

pub fn revoke_api_key(key_id: Uuid, admin: AdminId) -> Statement {
    Statement {
        sql: "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND admin_id = $2 AND revoked_at IS NULL",
        params: vec![Box::new(key_id), Box::new(admin.0)],
    }
}
