//! Shared vocabulary of tether: object ids, resources with their file:line provenance, policy annotations and
//! workload kinds.
//!
//! This crate does no I/O, so every other stage (source, render, plan, apply, record, automation) can depend
//! on it without pulling in a runtime.

pub mod id;
pub mod kind;
pub mod policy;
pub mod removed;
pub mod report;
pub mod resource;
pub mod workload;

pub use id::{ObjectId, ParseIdError};
pub use kind::{Kind, ObjectRef};
pub use resource::{Provenance, Resource};

/// The label each replica of a leader-elected agent sets on its own Pod, `leader` or `standby`: the installed
/// Service selects `leader`, so API calls and webhooks reach the replica that may act on them.
pub const ROLE_LABEL: &str = "tether.dev/role";

/// The field manager tether uses for server-side apply; `kubectl get -o yaml --show-managed-fields` shows it.
pub const FIELD_MANAGER: &str = "tether";
