//! The command service: load the states a command needs from the store, let the pure decider
//! choose, append what it chose atomically, and retry when a concurrent change won.
//!
//! - [`context`]: who asks, when, and the correlation id.
//! - [`load`]: folding streams into aggregate states.
//! - [`service`]: one method per command.
//! - [`login`]: login, Verify Your Identity, Set Up MFA requests and enrollment.
//! - [`error`]: what a command can fail with.

pub mod context;
pub mod error;
pub mod load;
pub mod login;
pub mod service;

pub use context::CommandContext;
pub use error::CommandError;
pub use service::{Commands, Outcome};
