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
        Ok(self.next_canonical(&envelope_canonical_json(envelope)?))
    }
}

/// RFC 8785 canonical JSON of an envelope, written field by field in sorted key order rather than
/// through a `serde_json::Value` of the whole envelope (an append of thousands of events spent a
/// third of its planning building those values). Equal to `canonical_json` of the envelope's
/// value, which a test checks.
pub fn envelope_canonical_json(e: &Envelope) -> Result<Vec<u8>, ChainError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"actorid\":");
    write_string(&e.actorid, &mut out);
    if let Some(method) = &e.authmethod {
        out.extend_from_slice(b",\"authmethod\":");
        write_string(method, &mut out);
    }
    out.extend_from_slice(b",\"correlationid\":");
    write_uuid(&e.correlationid, &mut out);
    out.extend_from_slice(b",\"data\":");
    write_value(&e.data, &mut out)?;
    out.extend_from_slice(b",\"datacontenttype\":");
    write_string(&e.datacontenttype, &mut out);
    out.extend_from_slice(b",\"id\":");
    write_uuid(&e.id, &mut out);
    out.extend_from_slice(b",\"orgid\":");
    write_uuid(&e.orgid, &mut out);
    out.extend_from_slice(b",\"position\":");
    write_integer(e.position, &mut out);
    out.extend_from_slice(b",\"source\":");
    write_string(&e.source, &mut out);
    out.extend_from_slice(b",\"specversion\":");
    write_string(&e.specversion, &mut out);
    out.extend_from_slice(b",\"streamversion\":");
    write_integer(e.streamversion, &mut out);
    out.extend_from_slice(b",\"subject\":");
    write_string(&e.subject, &mut out);
    out.extend_from_slice(b",\"time\":");
    write_string(&e.time, &mut out);
    out.extend_from_slice(b",\"type\":");
    write_string(&e.event_type, &mut out);
    out.push(b'}');
    Ok(out)
}

fn write_uuid(id: &uuid::Uuid, out: &mut Vec<u8>) {
    let mut buf = uuid::Uuid::encode_buffer();
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn write_integer(n: i64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
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
            use std::io::Write as _;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{n}");
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
            keys.sort_by(|a, b| utf16_order(a, b));
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

/// Orders keys by UTF-16 code units, as RFC 8785 asks; for ASCII keys (every key Gatehouse
/// writes) that is byte order, which is compared without re-encoding.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Writes `s` as an ECMAScript string literal: `"` and `\` escaped, the control characters
/// that have a short form written with it, the other controls as `\u00xx`, everything else
/// as itself. Runs of bytes that need no escape are copied at once.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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
    fn strings_are_escaped_as_ecmascript_does() {
        // serde_json escapes as JSON.stringify does for every character a Rust string can hold:
        // short forms for \b \f \n \r \t, \u00xx for the other controls, the rest as itself.
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é€😀\u{7f}\u{2028}");
        for s in [every.as_str(), "", "plain", "\"\\", "a\u{1}b\nc"] {
            let mut ours = Vec::new();
            write_string(s, &mut ours);
            let theirs = serde_json::to_string(s).expect("a string serialises");
            assert_eq!(String::from_utf8(ours).expect("utf-8"), theirs, "for {s:?}");
        }
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 is the surrogate pair D83D DE00, below U+E000 in UTF-16 though above it in
        // UTF-8 byte order.
        let v = json!({"\u{e000}": 1, "\u{1f600}": 2, "b": 3, "a": 4});
        let got = String::from_utf8(canonical_json(&v).expect("no floats")).expect("utf-8");
        assert_eq!(got, "{\"a\":4,\"b\":3,\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    #[test]
    fn an_envelope_is_written_as_the_canonical_json_of_its_value() {
        let mut envelope = Envelope {
            specversion: "1.0".into(),
            id: uuid::Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001),
            source: "gatehouse/orgs/x".into(),
            event_type: "MfaRequired".into(),
            subject: "admins/\"quoted\"\n".into(),
            time: "2026-12-07T10:00:00.000Z".into(),
            datacontenttype: "application/json".into(),
            position: 42,
            streamversion: -3,
            orgid: uuid::Uuid::from_u128(7),
            actorid: "admin:é😀".into(),
            correlationid: uuid::Uuid::from_u128(u128::MAX),
            authmethod: Some("session".into()),
            data: json!({"z": [1, null, {"y": false, "b": "\u{1}"}], "a": {"\u{e000}": 0}}),
        };
        for method in [Some("session"), None] {
            envelope.authmethod = method.map(str::to_owned);
            let value = serde_json::to_value(&envelope).expect("an envelope serialises");
            assert_eq!(
                String::from_utf8(envelope_canonical_json(&envelope).expect("no floats")),
                String::from_utf8(canonical_json(&value).expect("no floats")),
                "with authmethod {method:?}"
            );
        }
        envelope.data = json!({"a": 0.5});
        assert_eq!(envelope_canonical_json(&envelope), Err(ChainError::Float));
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
