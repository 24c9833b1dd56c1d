//! Bytes as what the portal parses itself from a request: the `Cookie` header (session cookie
//! extraction), `Gatehouse-Min-Position`, and the audit query parameters (`initiated_by` and
//! `resource` party filters, `sort`, `start_time`/`end_time`). None may panic; a parsed
//! position is non-negative; a session cookie value is a substring of the header.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use gatehouse_portal::consistency::parse_min_position;
use gatehouse_portal::routes::audit::export::parse_time;
use gatehouse_portal::session;
use gatehouse_projections::audit_query::{PartyFilter, Sort};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(bytes) {
        if let Some(position) = parse_min_position(&value) {
            assert!(position >= 0);
        }
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, value.clone());
        headers.append(header::COOKIE, value);
        if let Some(token) = session::cookie(&headers) {
            assert!(token.is_empty() || bytes.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        if let Some(PartyFilter::Email(email)) = PartyFilter::parse(s) {
            assert!(email.contains('@'));
        }
        let _ = Sort::parse(s);
        let _ = parse_time("start_time", Some(s));
    }
});
