//! Bytes as a credential presented by a client: a Set Up MFA link token (URL path), a session
//! token (cookie; same shape as a link token), an API key (`Authorization`/`X-Api-Key`) or a
//! TOTP code (login, enrolment). Properties: the checks never panic (they slice strings);
//! whatever the shape checks accept is ASCII of the documented length, so it is safe to hash and
//! look up; a TOTP code is accepted only if it is exactly the expected number of digits.
#![no_main]

use gatehouse_auth::totp::{self, TotpSecret};
use gatehouse_auth::{api_key, link_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(candidate) = std::str::from_utf8(bytes) else {
        return;
    };
    if link_token::well_formed(candidate) {
        assert_eq!(candidate.len(), link_token::LEN);
        assert!(candidate.is_ascii());
        let _ = link_token::hash(candidate);
    }
    if api_key::well_formed(candidate) {
        assert!(candidate.starts_with("ghk_"));
        assert_eq!(candidate.len(), 4 + link_token::LEN);
        assert!(candidate.is_ascii());
        let _ = api_key::hash(candidate);
    }
    // A fixed secret and time: the fuzzer varies the code only.
    let secret = TotpSecret::from_bytes(vec![7; 20]);
    let now = 1_795_000_000;
    for digits in [6, 8] {
        if totp::verify_with_digits(&secret, candidate, now, 0, digits).is_some() {
            assert_eq!(candidate.len(), digits);
            assert!(candidate.bytes().all(|b| b.is_ascii_digit()));
        }
    }
});
