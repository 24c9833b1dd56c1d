//! The worked example of docs/consumers.md ("Versions"): evolving `gatehouse.admin.mfa_locked`
//! from v1 to v2 with an upcaster, so the v1 events already in stores and on streams still read,
//! and fold to the same state as before the change.
//!
//! In the example, v2 replaces `failed_attempts` with `attempts: {failed, limit}`: the lockout
//! limit in force when the admin was locked. That is not additive (a v1 reader would not find
//! `failed_attempts`), hence a new version. Every v1 event was written under the limit of 5
//! (SPEC §1), which the upcaster knows and the v1 data does not say.
//!
//! The types here stand for what `gatehouse_events::types` would hold after the change; the
//! upcaster is the kind of entry `gatehouse_events::upcast::UPCASTERS` would gain.

use std::collections::BTreeMap;

use gatehouse_events::upcast::{self, Upcaster};
use gatehouse_events::{DecodeError, Event};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

const V1: &str = "gatehouse.admin.mfa_locked.v1";
const V2: &str = "gatehouse.admin.mfa_locked.v2";

/// The lockout limit every v1 event was written under.
const V1_LIMIT: u32 = 5;

fn mfa_locked_v1_to_v2(data: &Value) -> Result<Value, String> {
    let admin_id = data.get("admin_id").ok_or("no admin_id")?;
    let failed = data
        .get("failed_attempts")
        .and_then(Value::as_u64)
        .ok_or("no failed_attempts")?;
    Ok(json!({ "admin_id": admin_id, "attempts": { "failed": failed, "limit": V1_LIMIT } }))
}

const EXAMPLE: &[Upcaster] = &[Upcaster {
    from: V1,
    to: V2,
    upcast: mfa_locked_v1_to_v2,
}];

/// `gatehouse.admin.mfa_locked.v2`'s data.
#[derive(Debug, Deserialize)]
struct MfaLockedV2 {
    admin_id: Uuid,
    attempts: Attempts,
}

#[derive(Debug, Deserialize)]
struct Attempts {
    failed: u32,
    #[allow(dead_code)]
    limit: u32,
}

/// A consumer's fold after the change: each locked admin and the failed codes that locked them.
fn fold_v2(events: &[(&str, Value)]) -> BTreeMap<Uuid, u32> {
    let mut locked = BTreeMap::new();
    for (event_type, data) in events {
        let (event_type, data) = upcast::to_current(EXAMPLE, event_type, data).expect("upcasts");
        if event_type == V2 {
            let e: MfaLockedV2 = serde_json::from_value(data.into_owned()).expect("v2 data");
            locked.insert(e.admin_id, e.attempts.failed);
        }
    }
    locked
}

/// The same fold before the change, with today's types.
fn fold_v1(events: &[(&str, Value)]) -> BTreeMap<Uuid, u32> {
    let mut locked = BTreeMap::new();
    for (event_type, data) in events {
        if let Ok(Event::MfaLocked(e)) = Event::decode(event_type, data) {
            locked.insert(e.admin_id, e.failed_attempts);
        }
    }
    locked
}

fn v1(admin: Uuid, failed: u32) -> (&'static str, Value) {
    (V1, json!({ "admin_id": admin, "failed_attempts": failed }))
}

#[test]
fn a_v1_event_reads_as_v2_with_the_limit_it_was_written_under() {
    let admin = Uuid::now_v7();
    let (event_type, data) = v1(admin, 5);
    let (current, upcast) = upcast::to_current(EXAMPLE, event_type, &data).expect("upcasts");
    assert_eq!(current, V2);
    assert_eq!(
        *upcast,
        json!({ "admin_id": admin, "attempts": { "failed": 5, "limit": 5 } })
    );
}

#[test]
fn old_events_fold_the_same_after_the_change() {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // A history written before the change: v1 only, as the store and the stream hold it.
    let old = vec![
        v1(a, 5),
        (
            "gatehouse.admin.mfa_enrollment_completed.v1",
            json!({ "admin_id": a, "method": "totp", "replaced_previous": true }),
        ),
        v1(b, 5),
    ];
    assert_eq!(fold_v2(&old), fold_v1(&old));
    assert_eq!(fold_v2(&old), BTreeMap::from([(a, 5), (b, 5)]));

    // After the change the writer emits v2; a history holding both folds as one.
    let c = Uuid::now_v7();
    let mut mixed = old.clone();
    mixed.push((
        V2,
        json!({ "admin_id": c, "attempts": { "failed": 3, "limit": 3 } }),
    ));
    assert_eq!(fold_v2(&mixed), BTreeMap::from([(a, 5), (b, 5), (c, 3)]));
}

#[test]
fn current_data_is_not_copied_and_unreadable_old_data_is_reported() {
    let data = json!({ "admin_id": Uuid::nil(), "attempts": { "failed": 1, "limit": 5 } });
    let (_, same) = upcast::to_current(EXAMPLE, V2, &data).expect("already current");
    assert!(matches!(same, std::borrow::Cow::Borrowed(_)));

    let err = upcast::to_current(EXAMPLE, V1, &json!({ "admin_id": Uuid::nil() }))
        .expect_err("v1 without failed_attempts");
    assert!(
        matches!(&err, DecodeError::Malformed { event_type, reason } if event_type == V1 && reason == "no failed_attempts"),
        "{err}"
    );
}

#[test]
fn a_cycle_in_the_table_is_an_error_not_a_hang() {
    fn same(data: &Value) -> Result<Value, String> {
        Ok(data.clone())
    }
    let cycle = [
        Upcaster {
            from: "gatehouse.x.y.v1",
            to: "gatehouse.x.y.v2",
            upcast: same,
        },
        Upcaster {
            from: "gatehouse.x.y.v2",
            to: "gatehouse.x.y.v1",
            upcast: same,
        },
    ];
    assert!(upcast::to_current(&cycle, "gatehouse.x.y.v1", &json!({})).is_err());
}
