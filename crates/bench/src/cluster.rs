//! The API server a session runs against: a fresh local control plane started by `scripts/cluster.sh`, or an
//! existing cluster named by a kubeconfig. Also reads what the server saw: audit-log writes, request counters
//! and the control plane's own CPU time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::measure::process_cpu;

/// Repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A cluster to run against.
#[derive(Debug)]
pub struct Target {
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The API server's audit log, when known.
    pub audit_log: Option<PathBuf>,
    /// etcd, kube-apiserver (and kube-controller-manager) pids of a plane we started.
    pub server_pids: Vec<u32>,
    /// The plane directory to tear down on drop, when we started it.
    plane: Option<PathBuf>,
}

impl Target {
    /// An existing cluster.
    pub fn existing(kubeconfig: PathBuf, audit_log: Option<PathBuf>) -> Target {
        Target {
            kubeconfig,
            audit_log,
            server_pids: Vec::new(),
            plane: None,
        }
    }

    /// Starts a fresh control plane in a new directory under `parent`; it is stopped when this value drops,
    /// and by `cluster.sh`'s watchdog if this process dies.
    pub fn start(parent: &Path) -> Result<Target> {
        let dir = tempfile::Builder::new()
            .prefix("plane-")
            .tempdir_in(parent)
            .context("temp dir for a control plane")?
            .keep();
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg("up")
            .arg("--dir")
            .arg(&dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string())
            // Only the controllers a sync relies on, no scheduler or nodes: every tool is measured on the API
            // path, not on the Pods its Deployments would start on two shared cores.
            .arg("--lean")
            .output()
            .context("run scripts/cluster.sh up")?;
        let mut target = Target {
            kubeconfig: dir.join("admin.kubeconfig"),
            audit_log: Some(dir.join("audit.log")),
            server_pids: Vec::new(),
            plane: Some(dir.clone()),
        };
        if !out.status.success() {
            bail!(
                "scripts/cluster.sh up failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pids = std::fs::read_to_string(dir.join("pids")).context("read the plane's pids")?;
        // cluster.sh writes etcd and kube-apiserver first, then the other components.
        target.server_pids = pids
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .take(2)
            .collect();
        // Let the controller-manager's start-up burst (informer lists, default service accounts and their
        // token Secrets in the system namespaces) pass, so it does not land on the first measurement.
        std::thread::sleep(Duration::from_secs(3));
        Ok(target)
    }

    /// A kube client for this cluster.
    pub async fn client(&self) -> Result<kube::Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig)
            .with_context(|| format!("read {}", self.kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("kubeconfig {}", self.kubeconfig.display()))?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The audit log's current size: writes after this mark belong to what runs next.
    pub fn audit_mark(&self) -> Option<u64> {
        let path = self.audit_log.as_ref()?;
        Some(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
    }

    /// Counts writes logged since `mark` by non-system users on objects `keep` selects; phases are timed
    /// relative to `t0` (when the tool was started).
    pub fn audit_writes(
        &self,
        mark: Option<u64>,
        t0: SystemTime,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Result<Option<Writes>> {
        let (Some(path), Some(mark)) = (self.audit_log.as_ref(), mark) else {
            return Ok(None);
        };
        // The server logs a request's ResponseComplete event as it answers, so the last ones can trail the
        // tool's exit a little: wait until the log has stopped growing.
        let mut size = 0;
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(200));
            let now = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if now == size {
                break;
            }
            size = now;
        }
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("open audit log {}", path.display()))?;
        f.seek(SeekFrom::Start(mark))?;
        let mut w = Writes::default();
        for line in BufReader::new(f).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line?) else {
                continue;
            };
            let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).unwrap_or("");
            let verb = s("/verb");
            if !matches!(
                verb,
                "create" | "update" | "patch" | "delete" | "deletecollection"
            ) || s("/user/username").starts_with("system:")
                || !keep(s("/objectRef/namespace"), s("/objectRef/name"))
            {
                continue;
            }
            let dry = s("/requestURI").contains("dryRun=");
            if dry {
                w.dry_runs += 1;
            } else {
                w.persisted += 1;
                *w.by_verb.entry(verb.to_owned()).or_default() += 1;
            }
            let since = |p: &str| {
                let t = parse_rfc3339(s(p))?;
                let t0 = t0.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
                Some(t - t0)
            };
            if let (Some(received), Some(done)) =
                (since("/requestReceivedTimestamp"), since("/stageTimestamp"))
            {
                let key = (
                    if dry { "dry-run" } else { "write" },
                    verb.to_owned(),
                    s("/objectRef/resource").to_owned(),
                );
                let p = w.phases.entry(key).or_insert((f64::MAX, f64::MIN, 0, 0.0));
                p.0 = p.0.min(received);
                p.1 = p.1.max(done);
                p.2 += 1;
                p.3 += (done - received).max(0.0);
            }
        }
        Ok(Some(w))
    }

    /// CPU time etcd and kube-apiserver have used so far (a plane we started only).
    pub fn server_cpu(&self) -> Option<Duration> {
        if self.server_pids.is_empty() {
            return None;
        }
        self.server_pids
            .iter()
            .map(|&p| process_cpu(p))
            .sum::<Option<Duration>>()
    }

    /// Non-watch requests the API server has served so far, by verb (`apiserver_request_total`).
    pub async fn request_counts(&self, client: &kube::Client) -> Result<BTreeMap<String, f64>> {
        let req = http::Request::get("/metrics").body(Vec::new())?;
        let text = client.request_text(req).await.context("GET /metrics")?;
        let mut by_verb = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let verb = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("verb=\""))
                .map(|v| v.trim_end_matches('"'))
                .unwrap_or("");
            if verb == "WATCH" || verb == "CONNECT" {
                continue;
            }
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            *by_verb.entry(verb.to_owned()).or_default() += v;
        }
        Ok(by_verb)
    }

    /// The API server's version (`/version` gitVersion).
    pub async fn server_version(&self, client: &kube::Client) -> Result<String> {
        let v = client.apiserver_version().await?;
        Ok(v.git_version)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(dir) = self.plane.take() {
            let _ = Command::new("bash")
                .arg(repo_root().join("scripts/cluster.sh"))
                .arg("down")
                .arg("--dir")
                .arg(&dir)
                .output();
        }
    }
}

/// (dry-run|write, verb, resource).
pub type PhaseKey = (&'static str, String, String);
/// (first received, last answered, count, summed latency).
pub type PhaseAcc = (f64, f64, u64, f64);

/// Writes seen in the audit log.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    /// Write requests that were not dry-runs.
    pub persisted: u64,
    /// Server-side dry-run write requests.
    pub dry_runs: u64,
    /// Persisted writes by verb.
    pub by_verb: BTreeMap<String, u64>,
    /// (dry-run|write, verb, resource) → (first received, last answered, count, summed latency), seconds
    /// since the tool started.
    pub phases: BTreeMap<PhaseKey, PhaseAcc>,
}

impl Writes {
    /// The phases in the order they started.
    pub fn phases(&self) -> Vec<Phase> {
        let mut v: Vec<Phase> = self
            .phases
            .iter()
            .map(
                |((what, verb, resource), &(start, end, count, latency))| Phase {
                    what: format!("{what} {verb} {resource}"),
                    count,
                    start_s: start,
                    end_s: end,
                    mean_latency_ms: 1000.0 * latency / count.max(1) as f64,
                },
            )
            .collect();
        v.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        v
    }
}

/// A group of writes of one kind, as the API server saw them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    /// e.g. `dry-run patch services`.
    pub what: String,
    /// Requests.
    pub count: u64,
    /// When the first was received, seconds after the tool started.
    pub start_s: f64,
    /// When the last was answered.
    pub end_s: f64,
    /// Mean time the server took per request.
    pub mean_latency_ms: f64,
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp as the audit log writes them
/// (`2026-01-02T03:04:05.123456Z`).
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// Difference of two request-count snapshots, summed over verbs; (all, reads = GET + LIST).
pub fn request_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> (u64, u64) {
    let mut all = 0.0;
    let mut reads = 0.0;
    for (verb, a) in after {
        let d = a - before.get(verb).copied().unwrap_or(0.0);
        all += d;
        if verb == "GET" || verb == "LIST" {
            reads += d;
        }
    }
    (all.max(0.0).round() as u64, reads.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z"), Some(1_709_251_199.0));
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
