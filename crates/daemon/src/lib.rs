//! The tether daemon: composes the stages (source → render → plan → apply → record) into one sync, runs
//! syncs in a loop with backoff beside the image-automation loop, and serves its health and metrics. It takes
//! a settled [`Config`]; the `tether` binary owns the flags.

pub mod admin;
pub mod api;
mod automation;
pub mod config;
pub mod control;
pub mod events;
pub mod http;
pub mod identity;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod notify;
mod run;
mod sync;
pub mod throttle;

pub use automation::automate_once;
pub use config::Config;
pub use run::{run, run_once, shutdown_signal};
pub use sync::{client, SyncError, SyncSummary, Syncer};
