//! Credentials: everything secret about an administrator, kept out of events.
//!
//! - [`password`]: argon2id hashing and verification (OWASP parameters) off the async runtime,
//!   behind a bounded semaphore; the password policy.
//! - [`api_key`]: API keys: generated at random, shown once, stored as SHA-256.
//! - [`principal`]: who a request acts as, found from an API key.
//! - [`rows`]: the statements that keep credential rows in step with admin events.

pub mod api_key;
pub mod password;
pub mod principal;
pub mod rows;

pub use password::{PasswordError, Passwords};
pub use principal::{AuthMethod, Principal};
