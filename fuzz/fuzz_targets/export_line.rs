//! Bytes as an NDJSON audit export given to the offline verifier (`gatehouse verify-export`,
//! `GET /audit/verify` of an uploaded file): it must answer a report or a malformed-line error,
//! never panic, and a report must be self-consistent.
#![no_main]

use gatehouse_events::verify::{Start, verify_export};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for start in [Start::Auto, Start::Genesis] {
        if let Ok(report) = verify_export(bytes, start) {
            assert_eq!(report.verified, report.first_bad_position.is_none());
            let _ = report.summary();
            serde_json::to_string(&report).expect("a report serialises");
        }
    }
});
