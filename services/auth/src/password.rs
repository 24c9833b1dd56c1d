//! Passwords: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1).
//!
//! Hashing costs tens of milliseconds of CPU, so it runs in `spawn_blocking`, at most one per
//! core at a time: a login storm queues here instead of stalling the async workers.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be 12 to 64 characters")]
    Length,
    #[error("must not contain your email address")]
    ContainsEmail,
}

/// Checks the password policy: 12 to 64 characters, not containing the email (or its local part).
pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if !(12..=64).contains(&n) {
        return Err(PasswordError::Length);
    }
    let lower = password.to_lowercase();
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lower.contains(&email) || (local.len() >= 4 && lower.contains(local)) {
        return Err(PasswordError::ContainsEmail);
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    // Constant, valid parameters: Params::new only fails outside argon2's documented bounds.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords on the blocking pool, a bounded number at a time.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Passwords::new(cores)
    }
}

impl Passwords {
    pub fn new(concurrency: usize) -> Passwords {
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// The argon2id PHC string of `password`.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hashing is shut down")?;
        tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| anyhow!("no randomness for a salt: {e}"))?;
            let salt =
                SaltString::encode_b64(&salt).map_err(|e| anyhow!("encoding a salt: {e}"))?;
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow!("hashing a password: {e}"))
        })
        .await
        .context("the hashing task failed")?
    }

    /// Whether `password` matches `phc`. With `phc = None` (unknown account) a dummy hash is
    /// verified all the same, so the answer takes as long as for a wrong password.
    pub async fn verify(&self, password: String, phc: Option<String>) -> anyhow::Result<bool> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hashing is shut down")?;
        tokio::task::spawn_blocking(move || {
            let (phc, real) = match phc {
                Some(p) => (p, true),
                None => (DUMMY_HASH.to_owned(), false),
            };
            let parsed =
                PasswordHash::new(&phc).map_err(|e| anyhow!("stored hash unreadable: {e}"))?;
            Ok(argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
                && real)
        })
        .await
        .context("the verifying task failed")?
    }
}

/// The hash of a random, forgotten password, with the same parameters as real ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yb0nMHlC1cKJCXBv0QkkG3U3sSTrYhNOqNtMeE5PzmY";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_long_and_email_passwords() {
        assert_eq!(
            check_policy("short", "ada@example.com"),
            Err(PasswordError::Length)
        );
        assert_eq!(
            check_policy(&"x".repeat(65), "ada@example.com"),
            Err(PasswordError::Length)
        );
        assert_eq!(
            check_policy("my ada@example.com pw", "ada@example.com"),
            Err(PasswordError::ContainsEmail)
        );
        assert_eq!(
            check_policy("correct horse battery", "ada@example.com"),
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Passwords::new(1);
        let h = p.hash("correct horse battery".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            p.verify("correct horse battery".into(), Some(h.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !p.verify("wrong horse battery".into(), Some(h))
                .await
                .expect("verify")
        );
        assert!(
            !p.verify("correct horse battery".into(), None)
                .await
                .expect("verify")
        );
    }
}
