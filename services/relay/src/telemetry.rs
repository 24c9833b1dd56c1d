//! The relay's metrics (through the `metrics` facade; the binary installs the exporter).

/// Gauge: events in the store not yet acknowledged by JetStream (store head − cursor).
pub const LAG_EVENTS: &str = "gatehouse_relay_lag_events";
/// Counter: publishes JetStream acknowledged (a retried batch counts again).
pub const PUBLISHED_TOTAL: &str = "gatehouse_relay_published_total";
/// Gauge: the last position JetStream acknowledged, as saved in `relay_cursor`.
pub const CURSOR: &str = "gatehouse_relay_cursor";
/// Gauge: 1 while this process holds the leader lock (its relay is the active one), else 0.
pub const ACTIVE: &str = "gatehouse_relay_active";

/// Describes the metrics to the installed recorder (a no-op without one).
pub fn describe() {
    metrics::describe_gauge!(
        LAG_EVENTS,
        "Events in the store not yet published to JetStream"
    );
    metrics::describe_counter!(PUBLISHED_TOTAL, "Publishes acknowledged by JetStream");
    metrics::describe_gauge!(CURSOR, "Last store position acknowledged by JetStream");
    metrics::describe_gauge!(
        ACTIVE,
        "1 while this process's relay is the active one (holds the leader lock), else 0"
    );
    active(false);
}

/// Records whether this process's relay is the active one.
pub(crate) fn active(leading: bool) {
    metrics::gauge!(ACTIVE).set(if leading { 1.0 } else { 0.0 });
}

/// Records where the relay stands.
pub(crate) fn positions(cursor: i64, head: i64) {
    metrics::gauge!(CURSOR).set(cursor as f64);
    metrics::gauge!(LAG_EVENTS).set(head.saturating_sub(cursor).max(0) as f64);
}

pub(crate) fn published(count: u64) {
    metrics::counter!(PUBLISHED_TOTAL).increment(count);
}
