//! Plan: turns rendered resources and a snapshot of the live objects into what to do with each object.
//!
//! Everything here is pure: the kinds the server offers and the live objects come in as arguments, so the
//! decisions (namespace defaulting, ownership marks, ignore policies, what changed, staging and apply order,
//! garbage collection) are unit tested without a cluster. `tether-apply` gathers the inputs and carries out the plan.

mod compare;
pub mod drift;
pub mod gc;
mod kinds;
mod prepare;
pub mod secret;
mod stage;
#[cfg(test)]
mod test_support;

pub use compare::{is_subset, strip_volatile};
pub use kinds::{kinds_from_crds, rank, Kind};
pub use prepare::{
    checksum_of, decide, owner_mark, prepare, Action, Cause, Desired, Entry, NamespaceFilter,
    PlanError, Prepared, Preparer, Skipped, CHECKSUM_ANNOTATION, OWNER_ANNOTATION, SYNC_LABEL,
};
pub use stage::{stages, wave_of, waves, Stages};
