//! Authenticated encryption of TOTP secrets at rest, under `GATEHOUSE_SECRET_KEY`.
//!
//! A TOTP secret has to be recoverable to check codes, so unlike passwords and tokens it cannot
//! be hashed; it is sealed with XChaCha20-Poly1305 instead. A database dump without the key
//! yields no secrets, and a changed box fails to open rather than yielding a different secret.
//!
//! A sealed box is `nonce (24 bytes) || ciphertext || tag (16 bytes)`. The 192-bit nonce is
//! random, which XChaCha makes safe for any number of seals under one key. Callers pass the
//! admin id as associated data, so a box copied onto another admin's row does not open there.

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// XChaCha20 nonce length in bytes, the prefix of every sealed box.
const NONCE_LEN: usize = 24;
/// Poly1305 tag length in bytes, the suffix of every sealed box.
const TAG_LEN: usize = 16;
/// The shortest well-formed box: a nonce and the tag of an empty plaintext.
const MIN_SEALED_LEN: usize = NONCE_LEN + TAG_LEN;

/// Why a configured key was refused. The messages never include the key material, not even
/// the offending character, since they end up in startup logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the secret key must be base64")]
    NotBase64,
    #[error("the secret key must decode to {KEY_LEN} bytes, not {0}")]
    WrongLength(usize),
}

/// Why a sealed box did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("a sealed secret must be at least {MIN_SEALED_LEN} bytes, not {0}")]
    TooShort(usize),
    /// Tampering, the wrong key and the wrong associated data all look the same to Poly1305,
    /// and telling them apart would help nobody but an attacker.
    #[error("a sealed secret failed authentication (altered, another key, or another owner)")]
    Unauthentic,
}

/// The key that seals TOTP secrets. `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey(Key::from(bytes))
    }

    /// The key as configured: standard base64 of 32 bytes. Surrounding whitespace is ignored
    /// because keys are often pasted from files that end in a newline.
    pub fn from_base64(encoded: &str) -> Result<SecretKey, KeyError> {
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let bytes: [u8; KEY_LEN] = decoded
            .try_into()
            .map_err(|wrong: Vec<u8>| KeyError::WrongLength(wrong.len()))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// A throwaway key, for `--demo` and tests: whatever it seals is lost when it is dropped.
    pub fn random() -> anyhow::Result<SecretKey> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a secret key: {e}"))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// Encrypts and authenticates `plaintext`, bound to `associated` (the owner's id bytes),
    /// under a fresh random nonce. Returns `nonce || ciphertext`.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow!("no randomness for a nonce: {e}"))?;
        let payload = Payload {
            msg: plaintext,
            aad: associated,
        };
        let ciphertext = self
            .cipher()
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| anyhow!("sealing a secret failed"))?;

        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Reverses [`seal`](Self::seal), given the same `associated` data. Any input is safe: a
    /// box that is short, altered, sealed under another key or for another owner is an error.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < MIN_SEALED_LEN {
            return Err(OpenError::TooShort(sealed.len()));
        }
        let (nonce, ciphertext) = sealed
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(OpenError::TooShort(sealed.len()))?;
        let payload = Payload {
            msg: ciphertext,
            aad: associated,
        };
        self.cipher()
            .decrypt(&XNonce::from(*nonce), payload)
            .map_err(|_| OpenError::Unauthentic)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &[u8] = b"0191e7a4-0000-7000-8000-000000000001";
    const SECRET: &[u8] = b"12345678901234567890";

    fn key() -> SecretKey {
        SecretKey::random().expect("key")
    }

    #[test]
    fn round_trip() {
        let key = key();
        let sealed = key.seal(SECRET, OWNER).expect("seal");
        assert_eq!(sealed.len(), NONCE_LEN + SECRET.len() + TAG_LEN);
        assert_eq!(key.open(&sealed, OWNER).expect("open"), SECRET);
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let key = key();
        let sealed = key.seal(b"", OWNER).expect("seal");
        assert_eq!(sealed.len(), MIN_SEALED_LEN);
        assert_eq!(key.open(&sealed, OWNER).expect("open"), b"");
    }

    #[test]
    fn sealing_twice_gives_different_boxes() {
        let key = key();
        let a = key.seal(SECRET, OWNER).expect("seal");
        let b = key.seal(SECRET, OWNER).expect("seal");
        assert_ne!(a, b);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let key = key();
        let sealed = key.seal(SECRET, OWNER).expect("seal");
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut altered = sealed.clone();
                altered[byte] ^= 1 << bit;
                assert_eq!(
                    key.open(&altered, OWNER),
                    Err(OpenError::Unauthentic),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn truncated_or_extended_boxes_are_refused() {
        let key = key();
        let sealed = key.seal(SECRET, OWNER).expect("seal");
        for len in 0..sealed.len() {
            let expected = if len < MIN_SEALED_LEN {
                OpenError::TooShort(len)
            } else {
                OpenError::Unauthentic
            };
            assert_eq!(key.open(&sealed[..len], OWNER), Err(expected), "len {len}");
        }
        let mut extended = sealed.clone();
        extended.push(0);
        assert_eq!(key.open(&extended, OWNER), Err(OpenError::Unauthentic));
    }

    #[test]
    fn another_key_is_refused() {
        let sealed = key().seal(SECRET, OWNER).expect("seal");
        assert_eq!(key().open(&sealed, OWNER), Err(OpenError::Unauthentic));
    }

    #[test]
    fn other_associated_data_is_refused() {
        let key = key();
        let sealed = key.seal(SECRET, OWNER).expect("seal");
        let other = b"0191e7a4-0000-7000-8000-000000000002";
        assert_eq!(key.open(&sealed, other), Err(OpenError::Unauthentic));
        assert_eq!(key.open(&sealed, b""), Err(OpenError::Unauthentic));
    }

    #[test]
    fn from_base64_accepts_32_bytes() {
        let encoded = STANDARD.encode([7u8; KEY_LEN]);
        let key = SecretKey::from_base64(&format!("{encoded}\n")).expect("valid key");
        let sealed = key.seal(SECRET, OWNER).expect("seal");
        let same = SecretKey::from_bytes([7u8; KEY_LEN]);
        assert_eq!(same.open(&sealed, OWNER).expect("open"), SECRET);
    }

    #[test]
    fn from_base64_explains_what_is_wrong() {
        let not_base64 = SecretKey::from_base64("not base64!").expect_err("refused");
        assert_eq!(not_base64, KeyError::NotBase64);
        assert_eq!(not_base64.to_string(), "the secret key must be base64");

        let short = SecretKey::from_base64(&STANDARD.encode([1u8; 16])).expect_err("refused");
        assert_eq!(short, KeyError::WrongLength(16));
        assert_eq!(
            short.to_string(),
            "the secret key must decode to 32 bytes, not 16"
        );

        let long = SecretKey::from_base64(&STANDARD.encode([1u8; 33])).expect_err("refused");
        assert_eq!(long, KeyError::WrongLength(33));
        let empty = SecretKey::from_base64("").expect_err("refused");
        assert_eq!(empty, KeyError::WrongLength(0));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let bytes = [0xABu8; KEY_LEN];
        let shown = format!("{:?}", SecretKey::from_bytes(bytes));
        assert_eq!(shown, "SecretKey(…)");
        assert!(!shown.contains("171") && !shown.contains("abab"));
    }
}
