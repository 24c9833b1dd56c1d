//! Read models: Gatehouse's query side, built from the event stream.
//!
//! - [`projection`]: the registry of read models ([`Projection`]): names, schemas, DDL, and the
//!   dispatch of an event to a model.
//! - [`admins`]: the `admins` model (schema `proj_admins`): admins with their MFA facts, and per
//!   organisation the Global MFA Requirement and the widget's counts.
//! - [`home_widgets`]: the `home_widgets` model (schema `proj_home_widgets`): who shows which
//!   Home widget.
//! - [`schema`]: creating a model's schema from its `.sql` file ([`ensure_schemas`]).
//! - `batch`: one transaction applying consecutive events and advancing the checkpoint, filling
//!   holes from the event store (exactly-once application).
//! - [`runtime`]: [`run()`], one durable JetStream pull consumer per model, with the event store
//!   as the fallback whenever JetStream has nothing to give.
//! - [`checkpoints`]: [`Checkpoints`], for read-your-writes (`Gatehouse-Min-Position`).
//! - [`rebuild`]: [`rebuild()`], replaying the store into shadow schemas and swapping them in
//!   without downtime.
//! - [`query`]: the reads the HTTP layer makes.
//! - [`telemetry`]: the metrics.
//!
//! Each model owns a Postgres schema `proj_<name>` with its tables and a one-row `checkpoint`:
//! the last global position applied. Positions are gapless, so a model has applied exactly
//! `1..=checkpoint`, and a batch's changes commit with the checkpoint that covers them.

pub mod admins;
pub mod audit;
pub mod audit_query;
mod batch;
pub mod checkpoints;
mod copy;
pub mod history;
pub mod home_widgets;
pub mod projection;
pub mod query;
pub mod rebuild;
pub mod runtime;
pub mod schema;
pub mod telemetry;

pub use batch::NOTIFY_CHANNEL;
pub use checkpoints::Checkpoints;
pub use projection::Projection;
pub use rebuild::rebuild;
pub use runtime::run;
pub use schema::ensure_schemas;

/// Where the projections read the event stream, and how much at once.
#[derive(Debug, Clone)]
pub struct ProjectionsConfig {
    /// JetStream stream name (`GATEHOUSE_NATS_STREAM`).
    pub stream: String,
    /// First token of every subject (`GATEHOUSE_NATS_PREFIX`); also names the consumers.
    pub prefix: String,
    /// Messages fetched, or events read from the store, per batch (one transaction each).
    pub batch_size: usize,
}

impl ProjectionsConfig {
    pub fn new(stream: impl Into<String>, prefix: impl Into<String>) -> Self {
        ProjectionsConfig {
            stream: stream.into(),
            prefix: prefix.into(),
            batch_size: 500,
        }
    }

    /// The durable consumer of a projection: `<prefix>_proj_<name>`.
    pub fn consumer_name(&self, projection: Projection) -> String {
        format!("{}_proj_{}", self.prefix, projection.name())
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.batch_size > 0,
            "the projections' batch size must be at least 1"
        );
        anyhow::ensure!(
            !self.prefix.is_empty(),
            "the NATS subject prefix must not be empty"
        );
        anyhow::ensure!(
            !self.stream.is_empty(),
            "the JetStream stream name must not be empty"
        );
        Ok(())
    }
}
