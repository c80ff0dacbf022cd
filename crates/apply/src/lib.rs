//! Apply: the only stage that writes cluster objects.
//!
//! [`Engine::sync`] carries a commit's resources into the cluster atomically: it resolves every kind through
//! aggregated discovery (legacy discovery where a server lacks it, or a CRD in the same commit), snapshots
//! the live objects with label-selected LISTs per kind, lets `tether-plan` decide, validates every write with
//! a server-side dry-run, and only then applies — Namespaces and CRDs first, then everything else at once
//! (bare Pods and admission webhooks last) with bounded parallelism — under the field manager `tether`. Objects already as desired get no request at all.

mod discovery;
mod engine;
mod error;
pub mod live;
mod prune;

pub use discovery::Kinds;
pub use engine::{Decided, Engine, Intake, Outcome, Planned, Report, SyncOptions};
pub use error::{Error, ObjectFailure};
pub use live::LiveCache;
pub use prune::PruneReport;
