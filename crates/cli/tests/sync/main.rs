//! Core sync, end to end: the `tether` binary against the real API server and git over SSH and file://.

mod support;

mod apply;
mod daemon_loop;
mod git_access;
