//! API keys: `ghk_` + 43 characters of base64url (256 random bits). Shown once; only their
//! SHA-256 is stored, which is enough for keys of that entropy.

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const PREFIX: &str = "ghk_";

/// A freshly generated key: the plaintext (to show once) and its hash (to store).
pub struct NewApiKey {
    pub plaintext: String,
    pub hash: Vec<u8>,
}

pub fn generate() -> anyhow::Result<NewApiKey> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for an API key: {e}"))?;
    let plaintext = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&plaintext);
    Ok(NewApiKey { plaintext, hash })
}

pub fn hash(plaintext: &str) -> Vec<u8> {
    Sha256::digest(plaintext.as_bytes()).to_vec()
}

/// Whether a header value has the shape of a key (checked before any look-up).
pub fn well_formed(candidate: &str) -> bool {
    candidate.len() == PREFIX.len() + 43
        && candidate.starts_with(PREFIX)
        && candidate[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate().expect("key");
        let b = generate().expect("key");
        assert!(well_formed(&a.plaintext));
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.hash, hash(&a.plaintext));
        assert!(!well_formed("ghk_short"));
        assert!(!well_formed(&a.plaintext.replace("ghk_", "xyz_")));
    }
}

/// Whether `key_id` is a live key of `admin`.
pub async fn is_live(
    db: &gatehouse_store::Db,
    key_id: uuid::Uuid,
    admin: gatehouse_domain::AdminId,
) -> anyhow::Result<bool> {
    use anyhow::Context;
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT 1 FROM api_keys WHERE key_id = $1 AND admin_id = $2 AND revoked_at IS NULL",
            &[&key_id, &admin.0],
        )
        .await
        .context("looking up an API key")?;
    Ok(row.is_some())
}

/// A key as its owner may see it: never the key itself.
#[derive(Debug, Clone)]
pub struct KeySummary {
    pub key_id: uuid::Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The live keys of `admin`, newest first.
pub async fn list(
    db: &gatehouse_store::Db,
    admin: gatehouse_domain::AdminId,
) -> anyhow::Result<Vec<KeySummary>> {
    use anyhow::Context;
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT key_id, name, created_at FROM api_keys WHERE admin_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC",
            &[&admin.0],
        )
        .await
        .context("listing API keys")?;
    Ok(rows
        .iter()
        .map(|r| KeySummary {
            key_id: r.get(0),
            name: r.get(1),
            created_at: r.get(2),
        })
        .collect())
}
