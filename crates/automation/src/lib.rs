//! Image automation: edits manifests in Git without disturbing anything else in them.

pub mod yaml_edit;
