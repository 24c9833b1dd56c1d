//! Reading old versions of an event type as the current one.
//!
//! A type's name carries its version (`gatehouse.admin.mfa_locked.v1`). A change a consumer
//! could misread (a field removed, renamed, or given another meaning or type) makes a new
//! version, `….v2`, and an [`Upcaster`] from the old one. Events are never rewritten: the store
//! and the stream keep the `v1` events they hold, and every reader of this crate turns them into
//! the current version as it decodes them ([`crate::Event::decode`]), one step at a time
//! (v1 → v2 → v3). Additive changes (a new optional field) need no new version: consumers
//! ignore fields they do not know. docs/consumers.md walks through an example.

use std::borrow::Cow;

use serde_json::Value;

use crate::DecodeError;

/// Turns the `data` of one version of a type into the next version's.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// The old type name, e.g. `gatehouse.admin.mfa_locked.v1`.
    pub from: &'static str,
    /// The next one, e.g. `gatehouse.admin.mfa_locked.v2`.
    pub to: &'static str,
    /// The old data to the new; `Err` with a reason when the old data cannot be read.
    pub upcast: fn(&Value) -> Result<Value, String>,
}

/// The upcasters of this version of Gatehouse. Every type is at its first version so far, so
/// there are none; the worked example in docs/consumers.md (and `tests/versioning.rs`) shows
/// the first one being added.
pub const UPCASTERS: &[Upcaster] = &[];

/// Applies `upcasters` until the type has none: the current type name and data. Data that is
/// already current is borrowed, not copied.
pub fn to_current<'a>(
    upcasters: &[Upcaster],
    event_type: &'a str,
    data: &'a Value,
) -> Result<(Cow<'a, str>, Cow<'a, Value>), DecodeError> {
    let mut current: (Cow<'a, str>, Cow<'a, Value>) = (event_type.into(), Cow::Borrowed(data));
    // Each step moves to a different name; a table with a cycle would loop, so stop after as
    // many steps as there are upcasters.
    for _ in 0..=upcasters.len() {
        let Some(step) = upcasters.iter().find(|u| u.from == current.0) else {
            return Ok(current);
        };
        let next = (step.upcast)(&current.1).map_err(|reason| DecodeError::Malformed {
            event_type: step.from.to_owned(),
            reason,
        })?;
        current = (step.to.into(), Cow::Owned(next));
    }
    Err(DecodeError::Malformed {
        event_type: event_type.to_owned(),
        reason: "the upcasters of this type form a cycle".to_owned(),
    })
}
