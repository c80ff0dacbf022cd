//! Running the programs a repository asks for (kustomize, `.flux.yaml` commands): a clean environment, a
//! deadline, capped output, and an error that names the command and ends with the tail of its stderr.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The largest output accepted from one command.
pub(crate) const MAX_OUTPUT: u64 = 64 << 20;

/// A command that ran to completion, successfully or not, or could not be run.
#[derive(Debug)]
pub(crate) struct Run {
    /// How the command is shown to a person.
    pub shown: String,
    /// The checkout root, stripped from paths in stderr so they read as repository paths.
    pub root: std::path::PathBuf,
    /// Limit for the whole run.
    pub timeout: Duration,
}

impl Run {
    /// Runs `cmd` (stdin closed, stdout and stderr captured) and returns its stdout, or a message naming the
    /// command, how it failed and the last lines of its stderr.
    pub(crate) fn output(&self, mut cmd: Command) -> Result<Vec<u8>, String> {
        let shown = &self.shown;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        let stdout = child.stdout.take().map(|s| read_capped(s, MAX_OUTPUT));
        let stderr = child.stderr.take().map(|s| read_capped(s, 1 << 20));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{shown} did not finish within {:?}; it was stopped",
                        self.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{shown}: {e}")),
            }
        };
        let out = stdout.map(join_reader).unwrap_or_default();
        let err = stderr.map(join_reader).unwrap_or_default();
        if !status.success() {
            let tail = tail(&err, 8).replace(&format!("{}/", self.root.display()), "");
            return Err(format!("{shown} failed ({status}): {tail}"));
        }
        if out.len() as u64 > MAX_OUTPUT {
            return Err(format!(
                "{shown} wrote more than {} MiB; output that large is refused",
                MAX_OUTPUT >> 20
            ));
        }
        Ok(out)
    }
}

/// A command with an empty environment but `PATH` (with `extra_path` first, when given) and a `HOME` that
/// holds nothing of the agent's, running in `dir`.
pub(crate) fn sandboxed(
    program: impl AsRef<std::ffi::OsStr>,
    dir: &Path,
    extra_path: Option<&Path>,
) -> Command {
    let mut cmd = Command::new(program);
    let mut path: Vec<std::path::PathBuf> = extra_path.map(Path::to_path_buf).into_iter().collect();
    if let Some(p) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&p));
    }
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::join_paths(path).unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

/// Reads up to `limit + 1` bytes on a thread, so a full pipe never blocks the child.
fn read_capped(r: impl Read + Send + 'static, limit: u64) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = r.take(limit + 1);
        let _ = r.read_to_end(&mut buf);
        // Drain the rest so the child can finish; it is refused for its size anyway.
        let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
        buf
    })
}

fn join_reader(h: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    h.join().unwrap_or_default()
}

/// The last `n` non-empty lines of `bytes`, on one line.
pub(crate) fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    let t = lines[from..].join(" | ");
    if t.is_empty() {
        "no output on stderr".to_owned()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stderr_tail_keeps_the_last_lines_on_one_line() {
        assert_eq!(tail(b"a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail(b"", 2), "no output on stderr");
    }
}
