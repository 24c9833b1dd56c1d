//! The projections' metrics (Prometheus names), labelled by projection.

use crate::Projection;

pub const CHECKPOINT: &str = "gatehouse_projection_checkpoint";
pub const LAG: &str = "gatehouse_projection_lag_events";

pub fn describe() {
    metrics::describe_gauge!(
        CHECKPOINT,
        "The last event position a read model has applied."
    );
    metrics::describe_gauge!(
        LAG,
        "Events in the store that a read model has not applied yet."
    );
}

/// Records a projection's checkpoint and, given the store's head, its lag.
pub fn positions(projection: Projection, checkpoint: i64, head: i64) {
    metrics::gauge!(CHECKPOINT, "projection" => projection.name()).set(checkpoint as f64);
    metrics::gauge!(LAG, "projection" => projection.name()).set((head - checkpoint).max(0) as f64);
}
