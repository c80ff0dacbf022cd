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
    ///
    /// The command runs in its own process group, and the whole group is killed when it is done or out of
    /// time: a pipeline's other members or a background process it started never outlive it, and one that
    /// keeps the output open cannot stall the sync past the deadline.
    pub(crate) fn output(&self, mut cmd: Command) -> Result<Vec<u8>, String> {
        use std::os::unix::process::CommandExt;
        let shown = &self.shown;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {shown}: {e}"))?;
        let group = Group(child.id());
        let stdout = child.stdout.take().map(|s| read_capped(s, MAX_OUTPUT));
        let stderr = child.stderr.take().map(|s| read_capped(s, 1 << 20));
        let deadline = Instant::now() + self.timeout;
        let late = || {
            format!(
                "{shown} did not finish within {:?}; it was stopped",
                self.timeout
            )
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    group.kill();
                    let _ = child.wait();
                    return Err(late());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    group.kill();
                    let _ = child.wait();
                    return Err(format!("{shown}: {e}"));
                }
            }
        };
        // Whatever the command left running still holds the pipes: it is stopped at the deadline.
        let out = stdout.map(|r| r.until(deadline, &group));
        let err = stderr.map(|r| r.until(deadline, &group));
        group.kill();
        let (Some(Some(out)), Some(Some(err))) = (out, err) else {
            return Err(late());
        };
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

/// A process group tether started.
struct Group(u32);

impl Group {
    /// Kills every process left in the group (a no-op once they are all gone).
    fn kill(&self) {
        if let Ok(pid) = i32::try_from(self.0) {
            // SAFETY: kill(2) with a negative pid signals the group tether created for this command; it has
            // no memory effects.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// A command with an empty environment but `PATH` (with `extra_path` first, when given) and `HOME` (a
/// directory of the caller's, holding nothing of the agent's), running in `dir`.
pub(crate) fn sandboxed(
    program: impl AsRef<std::ffi::OsStr>,
    dir: &Path,
    extra_path: Option<&Path>,
    home: &Path,
) -> Command {
    let mut cmd = Command::new(program);
    let mut path: Vec<std::path::PathBuf> = extra_path.map(Path::to_path_buf).into_iter().collect();
    if let Some(p) = std::env::var_os("PATH") {
        path.extend(std::env::split_paths(&p));
    }
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::join_paths(path).unwrap_or_default())
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

/// A pipe being read to its end on a thread, so a full pipe never blocks the child.
struct Reader(std::sync::mpsc::Receiver<Vec<u8>>);

/// Reads up to `limit + 1` bytes on a thread, then drains the rest.
fn read_capped(r: impl Read + Send + 'static, limit: u64) -> Reader {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = r.take(limit + 1);
        let _ = r.read_to_end(&mut buf);
        // Drain the rest so the child can finish; it is refused for its size anyway.
        let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
        let _ = tx.send(buf);
    });
    Reader(rx)
}

impl Reader {
    /// What was read, once the pipe closes; at `deadline` the group is killed (closing the pipe) and
    /// `None` returned if it still is not closed a moment later.
    fn until(self, deadline: Instant, group: &Group) -> Option<Vec<u8>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.0.recv_timeout(left) {
            Ok(b) => Some(b),
            Err(_) => {
                group.kill();
                self.0.recv_timeout(Duration::from_secs(1)).ok()
            }
        }
    }
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
