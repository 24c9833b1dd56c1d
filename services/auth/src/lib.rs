//! Credentials: everything secret about an administrator, kept out of events.
//!
//! - [`password`]: argon2id hashing and verification (OWASP parameters) off the async runtime,
//!   behind a bounded semaphore; the password policy.
//! - [`api_key`]: API keys: generated at random, shown once, stored as SHA-256.
//! - [`link_token`]: Set Up MFA link and session tokens, stored as SHA-256.
//! - [`principal`]: who a request acts as, found from an API key.
//! - [`key_cache`]: API keys' principals kept in memory, emptied whenever Postgres says a key was
//!   revoked or an admin removed.
//! - [`rows`]: the statements that keep credential rows in step with admin events.
//! - [`totp`]: RFC 6238 codes (SHA-1, 6 digits, 30 s), single-use per step; enrolment URI and QR.
//! - [`secretbox`]: TOTP secrets sealed at rest with XChaCha20-Poly1305 under the secret key.
//! - [`factor`]: TOTP factors and Set Up MFA links.
//! - [`session`]: server-side sessions behind the `gatehouse_session` cookie.
//! - [`throttle`]: password failures per account and per client address.

pub mod api_key;
pub mod factor;
pub mod key_cache;
pub mod link_token;
pub mod password;
pub mod principal;
pub mod rows;
pub mod secretbox;
pub mod session;
pub mod throttle;
pub mod totp;

pub use key_cache::ApiKeyCache;
pub use password::{PasswordError, Passwords};
pub use principal::{AuthMethod, Principal};
