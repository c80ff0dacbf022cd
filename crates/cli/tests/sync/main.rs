//! Core sync, end to end: the `tether` binary against the real API server and git over SSH and file://.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

mod api;
mod apply;
mod automation;
mod daemon_loop;
mod dashboard;
mod gc;
mod generation;
mod git_access;
mod hooks;
mod hostile;
mod identity;
mod install;
mod kustomize;
mod leader;
mod least_privilege;
mod notify;
mod old_repos;
mod output;
mod rollout;
mod watch;
