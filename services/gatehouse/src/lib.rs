//! The `gatehouse` binary's parts: configuration, wiring of roles, and the subcommands.
//!
//! - [`config`]: settings from the environment (SPEC §2), with flags able to override them.
//! - [`services`]: connecting to Postgres and NATS with one clear line when either is missing.
//! - [`serve`]: runs the roles (api, relay, projections) until a shutdown signal.
//! - [`demo`]: the demo organisation of `serve --demo`.
//! - [`org`]: `gatehouse org create`.
//! - [`relay`]: `gatehouse relay republish`, restoring the JetStream stream from the store.
//! - [`telemetry`]: logs (`tracing`) and metrics (Prometheus).

pub mod audit;
pub mod config;
pub mod demo;
pub mod org;
pub mod relay;
pub mod serve;
pub mod services;
pub mod telemetry;

pub use config::{Config, Role};
