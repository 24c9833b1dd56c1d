//! The per-organisation hash chain of SPEC §5:
//! `c_0` = 32 zero bytes, `c_n = SHA-256(c_(n-1) || JCS(envelope_n))`.
//!
//! JCS (RFC 8785) is written here rather than taken from a crate because Gatehouse's envelopes
//! are a strict subset (integers only, ASCII keys), which makes the canonical form short and
//! fully testable: keys sorted, no whitespace, ECMAScript string escaping.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Envelope;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("a float cannot be canonicalised: envelopes carry integers only")]
    Float,
    #[error("a chain head must be 32 bytes")]
    BadHead,
}

/// A link of the chain (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chain(pub [u8; 32]);

impl Chain {
    /// `c_0`: the head of an organisation with no events.
    pub const GENESIS: Chain = Chain([0; 32]);

    pub fn from_slice(bytes: &[u8]) -> Result<Chain, ChainError> {
        bytes.try_into().map(Chain).map_err(|_| ChainError::BadHead)
    }

    pub fn from_hex(s: &str) -> Result<Chain, ChainError> {
        let bytes = hex::decode(s).map_err(|_| ChainError::BadHead)?;
        Chain::from_slice(&bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The next link after `self` for an envelope already in canonical form.
    pub fn next_canonical(&self, canonical: &[u8]) -> Chain {
        let mut hasher = Sha256::new();
        hasher.update(self.0);
        hasher.update(canonical);
        Chain(hasher.finalize().into())
    }

    /// The next link after `self` for an envelope.
    pub fn next(&self, envelope: &Envelope) -> Result<Chain, ChainError> {
        let value = serde_json::to_value(envelope).map_err(|_| ChainError::Float)?;
        Ok(self.next_canonical(&canonical_json(&value)?))
    }
}

/// RFC 8785 canonical JSON of a value holding no floats.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, ChainError> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), ChainError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(ChainError::Float);
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // RFC 8785 sorts by UTF-16 code units; for the ASCII keys of our envelopes that is
            // byte order, and for any other key the UTF-16 comparison below keeps it exact.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(&map[key], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\u{0C}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v = json!({"b": [1, {"z": true, "a": null}], "a": "x\n\u{1}é"});
        let got = String::from_utf8(canonical_json(&v).expect("no floats")).expect("utf-8");
        assert_eq!(
            got,
            "{\"a\":\"x\\n\\u0001é\",\"b\":[1,{\"a\":null,\"z\":true}]}"
        );
    }

    #[test]
    fn floats_are_refused() {
        assert_eq!(canonical_json(&json!({"a": 1.5})), Err(ChainError::Float));
    }

    #[test]
    fn chain_links_depend_on_the_previous_link() {
        let a = Chain::GENESIS.next_canonical(b"{}");
        let b = a.next_canonical(b"{}");
        assert_ne!(a, b);
        // SHA-256 of 32 zero bytes followed by "{}", computed independently with sha256sum.
        assert_eq!(
            a.to_hex(),
            "fb1634c4e6cd4b1f1afe3ce2d6ef080f7ac5d1f357d723ad4dfca782733b62db"
        );
        assert_eq!(Chain::from_hex(&a.to_hex()), Ok(a));
    }
}
