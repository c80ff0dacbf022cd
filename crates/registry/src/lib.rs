//! Container image registries: which tags a workload may move to.
pub mod policy;
