//! RFC 6238 TOTP as Gatehouse uses it: HMAC-SHA-1, 6 digits, 30-second steps, 160-bit secrets,
//! one step of skew either side.
//!
//! Codes are single-use: [`verify`] returns the step a code matched, the caller stores it as the
//! admin's last accepted step and passes it back next time, and no step at or before it is ever
//! accepted again. That is what stops a code read over someone's shoulder being replayed within
//! its 90-second window.
//!
//! The HOTP arithmetic itself is totp-rs's; this module adds the policy around it.

use anyhow::{Context, anyhow};
use totp_rs::{Algorithm, TOTP};

/// Length of a step in seconds (RFC 6238 §5.2's recommendation, and what every app assumes).
pub const STEP_SECONDS: u64 = 30;
/// Digits in a code, the length authenticator apps show by default.
pub const DIGITS: usize = 6;
/// The issuer shown in authenticator apps next to the account.
pub const ISSUER: &str = "Gatehouse";

/// Secret length in bytes: the 160 bits RFC 4226 §4 recommends.
const SECRET_LEN: usize = 20;
/// Code lengths RFC 4226 §5.3 allows; anything else is refused rather than computed.
const ALLOWED_DIGITS: std::ops::RangeInclusive<usize> = 6..=8;
/// Steps either side of the current one that are still accepted, for clock drift and typing time.
const SKEW_STEPS: u64 = 1;

/// The shared secret behind an admin's codes. Only ever stored sealed (see
/// [`crate::secretbox`]); `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    /// A fresh 160-bit secret from the operating system's CSPRNG.
    pub fn generate() -> anyhow::Result<TotpSecret> {
        let mut bytes = vec![0u8; SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a TOTP secret: {e}"))?;
        Ok(TotpSecret(bytes))
    }

    /// A secret as stored (after [`crate::secretbox::SecretKey::open`]).
    pub fn from_bytes(bytes: Vec<u8>) -> TotpSecret {
        TotpSecret(bytes)
    }

    /// The raw secret, for sealing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding: the key a person types into an authenticator app when
    /// they cannot scan the QR code.
    pub fn base32(&self) -> String {
        hotp_engine(self, DIGITS).get_secret_base32()
    }
}

/// The step (time counter) that `unix_seconds` falls in.
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The `digits`-long, zero-padded code for `step`.
///
/// `digits` outside RFC 4226's 6 to 8 is clamped into that range, so a bad argument yields a
/// code of another length (which [`verify_with_digits`] never matches) rather than an overflow.
pub fn code_for_step(secret: &TotpSecret, step: u64, digits: usize) -> String {
    let digits = digits.clamp(*ALLOWED_DIGITS.start(), *ALLOWED_DIGITS.end());
    // totp-rs takes a time and divides it by its step length. With a step length of one second
    // the "time" is the counter itself, so no `step * 30` can overflow near u64::MAX.
    hotp_engine(secret, digits).generate(step)
}

/// Checks a 6-digit `code` typed at `unix_seconds` against `secret`.
///
/// Returns the step the code belongs to, to be stored as the new `last_accepted_step`, or `None`
/// if it is wrong, malformed, or for a step at or before `last_accepted_step` (already used).
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    unix_seconds: u64,
    last_accepted_step: u64,
) -> Option<u64> {
    verify_with_digits(secret, code, unix_seconds, last_accepted_step, DIGITS)
}

/// [`verify`] for codes of another length; exists so the RFC 6238 test vectors (8 digits) run
/// through the same path as a login.
///
/// The code must be exactly `digits` ASCII digits: a code whose leading zero was dropped
/// (`81804` for `081804`) is refused, not padded, so what is accepted is exactly what the app
/// shows. Steps now−1, now and now+1 are tried; the highest match is returned, and only if it is
/// later than `last_accepted_step`.
pub fn verify_with_digits(
    secret: &TotpSecret,
    code: &str,
    unix_seconds: u64,
    last_accepted_step: u64,
    digits: usize,
) -> Option<u64> {
    if !ALLOWED_DIGITS.contains(&digits) || !is_well_formed(code, digits) {
        return None;
    }
    candidate_steps(step_at(unix_seconds))
        .filter(|&step| is_code_for_step(secret, code, step, digits))
        .max()
        .filter(|&step| step > last_accepted_step)
}

/// The `otpauth://` key URI an authenticator app enrols from:
/// `otpauth://totp/Gatehouse:<email>?secret=<base32>&issuer=Gatehouse`, the email
/// percent-encoded.
///
/// SHA-1, 6 digits and a 30-second period are the Key URI Format's defaults, so totp-rs leaves
/// them out of the URI and apps assume them. Fails if the email contains `:` (which would make
/// the label ambiguous) or the secret is shorter than RFC 4226's 128-bit minimum.
pub fn otpauth_uri(secret: &TotpSecret, account_email: &str) -> anyhow::Result<String> {
    Ok(enrolment(secret, account_email)?.get_url())
}

/// The QR code of [`otpauth_uri`] as a base64-encoded PNG, to embed as
/// `<img src="data:image/png;base64,…">` so the enrolment page needs no second request.
pub fn qr_png_base64(secret: &TotpSecret, account_email: &str) -> anyhow::Result<String> {
    enrolment(secret, account_email)?
        .get_qr_base64()
        .map_err(|e| anyhow!("drawing the TOTP QR code: {e}"))
}

/// totp-rs configured as a bare HOTP generator: the counter is passed as the time.
fn hotp_engine(secret: &TotpSecret, digits: usize) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        digits,
        0,
        1,
        secret.0.clone(),
        None,
        String::new(),
    )
}

/// totp-rs configured with Gatehouse's parameters and label, checked, for building the key URI.
fn enrolment(secret: &TotpSecret, account_email: &str) -> anyhow::Result<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        // Skew does not appear in the URI; verification applies its own.
        0,
        STEP_SECONDS,
        secret.0.clone(),
        Some(ISSUER.to_owned()),
        account_email.to_owned(),
    )
    .context("building the TOTP key URI")
}

/// Whether `code` is the code for `step`, compared in constant time.
fn is_code_for_step(secret: &TotpSecret, code: &str, step: u64, digits: usize) -> bool {
    constant_time_eq(
        code_for_step(secret, step, digits).as_bytes(),
        code.as_bytes(),
    )
}

/// Whether `code` is exactly `digits` ASCII digits; checked before any HMAC is computed.
fn is_well_formed(code: &str, digits: usize) -> bool {
    code.len() == digits && code.bytes().all(|b| b.is_ascii_digit())
}

/// The steps a code typed during `now` may belong to, allowing for skew either side.
fn candidate_steps(now: u64) -> impl Iterator<Item = u64> {
    now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS)
}

/// Compares without stopping at the first difference, so response timing does not reveal how
/// many leading digits of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Lengths are public (the code format is), so an early return on them leaks nothing.
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    /// The SHA-1 secret of RFC 6238 Appendix B.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    /// RFC 6238 Appendix B, SHA-1 rows: (time, 8-digit code).
    const RFC_6238_SHA1: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc_6238_sha1_vectors_generate() {
        let secret = rfc_secret();
        for (time, expected) in RFC_6238_SHA1 {
            assert_eq!(
                code_for_step(&secret, step_at(time), 8),
                expected,
                "t={time}"
            );
        }
    }

    #[test]
    fn rfc_6238_sha1_vectors_verify() {
        let secret = rfc_secret();
        for (time, code) in RFC_6238_SHA1 {
            assert_eq!(
                verify_with_digits(&secret, code, time, 0, 8),
                Some(step_at(time)),
                "t={time}"
            );
        }
    }

    #[test]
    fn six_digit_codes_keep_their_leading_zero() {
        let secret = rfc_secret();
        let time = 1_111_111_109;
        assert_eq!(code_for_step(&secret, step_at(time), DIGITS), "081804");
        assert_eq!(verify(&secret, "081804", time, 0), Some(step_at(time)));
        assert_eq!(verify(&secret, "81804", time, 0), None);
    }

    #[test]
    fn one_step_of_skew_either_side_and_no_more() {
        let secret = rfc_secret();
        let time = 1_111_111_109;
        let now = step_at(time);
        for step in [now - 1, now, now + 1] {
            let code = code_for_step(&secret, step, DIGITS);
            assert_eq!(verify(&secret, &code, time, 0), Some(step), "step {step}");
        }
        for step in [now - 2, now + 2] {
            let code = code_for_step(&secret, step, DIGITS);
            assert_eq!(verify(&secret, &code, time, 0), None, "step {step}");
        }
    }

    #[test]
    fn a_code_is_accepted_once() {
        let secret = rfc_secret();
        let time = 1_111_111_109;
        let step = verify(&secret, "081804", time, 0).expect("first use");
        assert_eq!(verify(&secret, "081804", time, step), None);
        assert_eq!(verify(&secret, "081804", time + 30, step), None);
        assert_eq!(
            verify(&secret, "081804", time, step - 1),
            Some(step),
            "an earlier step does not block this one"
        );
    }

    #[test]
    fn a_code_of_an_earlier_step_is_refused_after_a_later_one() {
        let secret = rfc_secret();
        let time = 1_111_111_109;
        let now = step_at(time);
        let previous = code_for_step(&secret, now - 1, DIGITS);
        assert_eq!(verify(&secret, &previous, time, now), None);
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = rfc_secret();
        let time = 1_111_111_109;
        for code in [
            "",
            "08180",
            "0818040",
            "08180a",
            "081 804",
            " 081804",
            "081804 ",
            "+81804",
            "-81804",
            "０８１８０４",
            "081804\n",
        ] {
            assert_eq!(verify(&secret, code, time, 0), None, "{code:?}");
        }
        assert_eq!(verify_with_digits(&secret, "0818", time, 0, 4), None);
        assert_eq!(verify_with_digits(&secret, "07081804", time, 0, 9), None);
    }

    #[test]
    fn verification_does_not_overflow_at_the_ends_of_time() {
        let secret = rfc_secret();
        let last = step_at(u64::MAX);
        let code = code_for_step(&secret, last, DIGITS);
        assert_eq!(verify(&secret, &code, u64::MAX, 0), Some(last));

        let code = code_for_step(&secret, 1, DIGITS);
        assert_eq!(verify(&secret, &code, 0, 0), Some(1));
    }

    #[test]
    fn generated_secrets_are_160_bits_and_base32_round_trips() {
        let secret = TotpSecret::generate().expect("secret");
        assert_eq!(secret.as_bytes().len(), 20);
        assert_ne!(secret, TotpSecret::generate().expect("secret"));
        let text = secret.base32();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        );
        let decoded = totp_rs::Secret::Encoded(text).to_bytes().expect("base32");
        assert_eq!(decoded, secret.as_bytes());
    }

    #[test]
    fn rfc_secret_base32_matches_rfc_4648() {
        assert_eq!(rfc_secret().base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn debug_redacts_the_secret() {
        assert_eq!(format!("{:?}", rfc_secret()), "TotpSecret(…)");
    }

    #[test]
    fn otpauth_uri_carries_issuer_secret_and_encoded_email() {
        let secret = TotpSecret::generate().expect("secret");
        let email = "alice+mfa@example.com";
        let uri = otpauth_uri(&secret, email).expect("uri");

        assert!(
            uri.starts_with("otpauth://totp/Gatehouse:alice%2Bmfa%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains("issuer=Gatehouse"), "{uri}");
        assert!(
            uri.contains(&format!("secret={}", secret.base32())),
            "{uri}"
        );

        let parsed = TOTP::from_url(&uri).expect("parses");
        assert_eq!(parsed.algorithm, Algorithm::SHA1);
        assert_eq!(parsed.digits, 6);
        assert_eq!(parsed.step, 30);
        assert_eq!(parsed.issuer.as_deref(), Some(ISSUER));
        assert_eq!(parsed.account_name, email);
        assert_eq!(parsed.secret, secret.as_bytes());
    }

    #[test]
    fn otpauth_uri_refuses_a_colon_in_the_account() {
        let secret = TotpSecret::generate().expect("secret");
        assert!(otpauth_uri(&secret, "mallory:evil@example.com").is_err());
        assert!(qr_png_base64(&secret, "mallory:evil@example.com").is_err());
    }

    #[test]
    fn qr_code_is_a_base64_png() {
        let secret = TotpSecret::generate().expect("secret");
        let encoded = qr_png_base64(&secret, "alice+mfa@example.com").expect("qr");
        let png = STANDARD.decode(encoded).expect("base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
