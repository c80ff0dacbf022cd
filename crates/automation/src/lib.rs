//! Image automation: edits manifests in Git without disturbing anything else in them.

pub mod update;
pub mod workload;
pub mod yaml_edit;

pub use update::{commit_message, write_updates, ImageUpdate, UpdateError};
pub use workload::{workloads, Container, Workload};
