//! Set Up MFA link tokens and session tokens: 256 random bits as 43 characters of base64url.
//! Only their SHA-256 is stored; the plaintext lives in the email or the cookie and nowhere else.

use anyhow::anyhow;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The length of a token's text.
pub const LEN: usize = 43;

/// A fresh token: the plaintext (to hand out once) and its hash (to store).
pub struct Token {
    pub plaintext: String,
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

pub fn generate() -> anyhow::Result<Token> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a token: {e}"))?;
    let plaintext = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&plaintext);
    Ok(Token { plaintext, hash })
}

pub fn hash(plaintext: &str) -> Vec<u8> {
    Sha256::digest(plaintext.as_bytes()).to_vec()
}

/// Whether a candidate has the shape of a token (checked before any look-up).
pub fn well_formed(candidate: &str) -> bool {
    candidate.len() == LEN
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_distinct_and_hashed() {
        let a = generate().expect("token");
        let b = generate().expect("token");
        assert!(well_formed(&a.plaintext), "{}", a.plaintext);
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.hash, hash(&a.plaintext));
        assert_eq!(format!("{a:?}"), "Token(…)");
        assert!(!well_formed(&a.plaintext[1..]));
        assert!(!well_formed(&format!("{}=", &a.plaintext[1..])));
    }
}
