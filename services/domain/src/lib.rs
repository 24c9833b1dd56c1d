//! Gatehouse's business rules, as pure deciders (SPEC §1).
//!
//! - [`values`]: ids and validated values (`AdminId`, `Email`, `PersonName`, …).
//! - [`state`]: the organisation and administrator states and their `evolve` (fold of events).
//! - [`policy`]: the role matrix.
//! - [`decide`]: one function per command: given the states it needs, the events it produces or
//!   the rule it breaks.
//! - [`login`]: login, Verify Your Identity, reset requests and enrollment.
//! - [`error`]: the rule violations.
//!
//! Effects happen before `decide` runs: the current time, new ids and what the store holds are
//! passed in. Nothing here knows about HTTP, SQL or NATS.

pub mod decide;
pub mod error;
pub mod login;
pub mod policy;
pub mod state;
pub mod values;

pub use error::DomainError;
pub use gatehouse_events::{Event, RequirementSource, Role};
pub use state::{AdminState, OrgState};
pub use values::{AdminId, Email, OrgId, OrgName, PersonName};

#[cfg(test)]
mod login_tests;
#[cfg(test)]
mod tests;
