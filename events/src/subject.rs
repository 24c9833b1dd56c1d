//! NATS subjects: `<prefix>.<org_id>.<aggregate>.<name>` (SPEC §4).

use uuid::Uuid;

/// The subject an event of `event_type` (e.g. `gatehouse.admin.mfa_required.v1`) is published on.
/// The name is the type without its `gatehouse.` prefix and `.vN` suffix.
pub fn for_event(prefix: &str, org_id: Uuid, event_type: &str) -> String {
    let body = event_type.strip_prefix("gatehouse.").unwrap_or(event_type);
    let body = match body.rsplit_once('.') {
        Some((rest, version)) if is_version(version) => rest,
        _ => body,
    };
    format!("{prefix}.{org_id}.{body}")
}

/// Every subject of one organisation: `<prefix>.<org_id>.>`.
pub fn for_org(prefix: &str, org_id: Uuid) -> String {
    format!("{prefix}.{org_id}.>")
}

/// Every subject Gatehouse publishes under a prefix.
pub fn all(prefix: &str) -> String {
    format!("{prefix}.>")
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_drops_prefix_and_version() {
        let org = Uuid::nil();
        assert_eq!(
            for_event("gatehouse", org, "gatehouse.admin.mfa_required.v1"),
            format!("gatehouse.{org}.admin.mfa_required")
        );
        assert_eq!(
            for_event("t1", org, "gatehouse.org.global_mfa_enabled.v12"),
            format!("t1.{org}.org.global_mfa_enabled")
        );
    }
}
