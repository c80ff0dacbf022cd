//! Image automation: finds automated workloads in Git, asks registries for the newest allowed tag of each
//! container, and commits the change with edits that leave everything else in the manifests untouched.

pub mod change;
pub mod credentials;
pub mod list;
pub mod migrate;
pub mod policy;
pub mod release;
pub mod run;
pub mod update;
pub mod workload;
pub mod writeback;
pub mod yaml_edit;

pub use list::{list_images, ContainerImages};
pub use run::{Automation, AutomationConfig, ContainerError, Pass, WorkloadError};
pub use update::{commit_message, write_updates, ImageUpdate};
pub use workload::{workloads, Container, Workload};
