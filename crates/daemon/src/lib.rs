//! The tether daemon: settles its configuration before touching anything, then composes the stages
//! (source → render → apply → record) into one sync, and runs syncs in a loop with backoff.

pub mod admin;
mod automation;
pub mod config;
pub mod logging;
mod run;
mod sync;

pub use automation::automate_once;
pub use config::{Config, DaemonArgs};
pub use run::{run, run_once};
pub use sync::{SyncError, SyncSummary, Syncer};
