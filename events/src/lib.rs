//! The published contract of Gatehouse: what downstream services may rely on.
//!
//! - [`envelope`]: the CloudEvents 1.0 envelope every event travels in.
//! - [`types`]: the event types and their `data`, with decoding by type name.
//! - [`upcast`]: reading old versions of a type as the current one.
//! - [`subject`]: NATS subject names.
//! - [`chain`]: RFC 8785 canonical JSON and the per-organisation SHA-256 hash chain.
//! - [`schema`]: the JSON Schemas and the AsyncAPI document of all this (`events/schema/`).
//!
//! This crate has no I/O: a consumer can depend on it alone.

pub mod audit;
pub mod chain;
pub mod envelope;
pub mod schema;
pub mod subject;
pub mod types;
pub mod upcast;
pub mod verify;

pub use chain::{Chain, ChainError};
pub use envelope::{Actor, Envelope, format_time};
pub use types::{DecodeError, Event, RequirementSource, Role};
