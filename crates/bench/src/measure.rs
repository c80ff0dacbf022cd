//! Running one tool as a child process and measuring it: wall time from spawn to exit, the child's CPU time
//! from `wait4(2)` (its rusage, children of the child included once they are reaped), and its own peak RSS
//! sampled from `/proc`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What one run of a tool cost.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Spawn to exit.
    pub wall: Duration,
    /// User + system CPU time of the child (and its reaped descendants).
    pub cpu: Duration,
    /// Peak resident set size of the tool's own process (`VmHWM`, sampled every 10 ms; its children, such as
    /// tether's `git`, are not counted), bytes.
    pub max_rss: u64,
    /// Exit code, or None when killed by a signal.
    pub code: Option<i32>,
    /// Whether the watchdog killed it.
    pub timed_out: bool,
    /// File holding its stdout.
    pub stdout: PathBuf,
    /// File holding its stderr.
    pub stderr: PathBuf,
}

impl Measured {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// Its stdout.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The last `lines` lines of stderr (and stdout when stderr is empty), for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let mut s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if s.trim().is_empty() {
            s = self.stdout();
        }
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Runs `cmd` with stdin closed and stdout/stderr in `dir/label.{out,err}`; kills it after `timeout`.
pub fn run(cmd: &mut Command, dir: &Path, label: &str, timeout: Duration) -> Result<Measured> {
    let stdout = dir.join(format!("{label}.out"));
    let stderr = dir.join(format!("{label}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&stdout).with_context(|| format!("create {}", stdout.display()))?)
        .stderr(File::create(&stderr).with_context(|| format!("create {}", stderr.display()))?);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;

    // The watchdog samples the child's peak RSS and kills it if it outlives `timeout`; it is told when the
    // child has exited. `spawn` returns after the exec, so the first sample is already the tool's own memory.
    let (done, wait_done) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let mut peak = own_peak_rss(pid).unwrap_or(0);
        let deadline = started + timeout;
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(SAMPLE_EVERY);
            match wait_done.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    // SAFETY: plain syscall on a pid we spawned and have not reaped yet (the main thread
                    // reaps it only after this thread has ended, so the pid cannot have been reused).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return (true, peak);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    peak = peak.max(own_peak_rss(pid).unwrap_or(0));
                }
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return (false, peak),
            }
        }
    });

    // Wait for the exit without reaping, so the watchdog never samples or signals a reused pid.
    loop {
        // SAFETY: siginfo_t is a plain C struct; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local; `pid` is our child. `Child` is never waited on elsewhere.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::try_from(pid).unwrap_or(0),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        let _ = done.send(());
        bail!("waitid({pid}): {err}");
    }
    let wall = started.elapsed();
    let _ = done.send(());
    let (timed_out, sampled_peak) = watchdog.join().unwrap_or((false, 0));

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; `pid` is our exited child, not reaped yet.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        bail!("wait4({pid}): {err}");
    }
    drop(child);

    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        // Not `ru_maxrss`: Linux counts in it the memory of the process that spawned the child (the
        // harness, which holds the whole workload) up to the exec. Only when the child exited before a
        // sample could be taken is it the one figure there is.
        max_rss: if sampled_peak > 0 {
            sampled_peak
        } else {
            u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
        },
        code,
        timed_out,
        stdout,
        stderr,
    })
}

/// How often the watchdog reads the child's peak RSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The peak RSS of process `pid` itself (`VmHWM` in `/proc/<pid>/status`), bytes; None if it is gone or
/// has exited.
fn own_peak_rss(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`; None if it is gone.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / hz as f64))
}

/// CPU time the whole machine has spent busy so far (all cores; user, nice, system, irq, softirq, steal),
/// from `/proc/stat`.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_secs_f64(busy as f64 / hz as f64))
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child() {
        let dir = tempfile::tempdir().unwrap();
        let m = run(
            Command::new("sh").args([
                "-c",
                "echo hi; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
            ]),
            dir.path(),
            "sh",
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(m.success());
        assert_eq!(m.stdout().trim(), "hi");
        assert!(m.max_rss > 0);
        assert!(m.cpu > Duration::ZERO);
    }

    #[test]
    fn peak_rss_is_the_childs_own_not_the_harness() {
        // The harness holds the whole workload while it measures; wait4's ru_maxrss reported that memory
        // (356 MB for a 20,000-object run) as the tool's.
        let held: Vec<u8> = vec![1; 300 << 20];
        std::hint::black_box(&held);
        let dir = tempfile::tempdir().unwrap();
        let m = run(
            Command::new("sleep").arg("0.3"),
            dir.path(),
            "sleep",
            Duration::from_secs(30),
        )
        .unwrap();
        drop(held);
        assert!(m.success());
        assert!(m.max_rss > 0);
        assert!(
            m.max_rss < 100 << 20,
            "sleep reported {} MB",
            m.max_rss >> 20
        );
    }

    #[test]
    fn kills_on_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let m = run(
            Command::new("sleep").arg("30"),
            dir.path(),
            "sleep",
            Duration::from_millis(200),
        )
        .unwrap();
        assert!(m.timed_out);
        assert!(!m.success());
        assert!(m.wall < Duration::from_secs(10));
    }

    #[test]
    fn reads_own_cpu() {
        assert!(process_cpu(std::process::id()).is_some());
        assert!(machine_busy().is_some());
    }
}
