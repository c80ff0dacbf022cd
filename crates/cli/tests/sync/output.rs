//! The binary's own output: a full disk or a closed pipe on stdout is an error message or a clean exit,
//! never a panic.

use std::process::{Command, Stdio};

#[test]
fn a_full_stdout_is_reported_and_a_closed_one_ends_quietly() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("version")
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the output") && !err.contains("panicked"),
        "{err}"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("version")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader went away, as `| head -0` does
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
