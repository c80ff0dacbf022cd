//! Image automation: edits manifests in Git without disturbing anything else in them.

pub mod workload;
pub mod yaml_edit;

pub use workload::{workloads, Container, Workload};
