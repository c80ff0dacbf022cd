//! One session: one tool, one repetition, one size, starting from an empty cluster state. It applies the
//! generated repository (first sync), then runs the later scenarios in order on the state the tool built:
//! no-op resync, one-object change, drift repair, garbage collection.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kube::api::{ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{request_delta, Phase, Target};
use crate::measure::{self, Measured};
use crate::raw::api_for;
use crate::workload::{Kind, Object, Workload, RUN_LABEL};

/// The tools compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
pub enum Tool {
    /// `tether daemon --once`.
    Tether,
    /// `kubectl apply` (client-side apply, Flux v1's method).
    KubectlClient,
    /// `kubectl apply --server-side --force-conflicts`.
    KubectlServer,
    /// The minimal server-side-apply client at a fixed concurrency: the ceiling.
    RawSsa,
    /// The same client dry-running every object of a wave before writing it: the ceiling of a sync that
    /// validates first, as tether does.
    #[value(name = "raw-ssa-validated")]
    RawValidated,
}

impl Tool {
    /// The raw clients, measured for the first sync only, each at the fastest level of its own sweep.
    pub const CEILINGS: [Tool; 2] = [Tool::RawSsa, Tool::RawValidated];

    /// Whether this is one of [`Tool::CEILINGS`].
    pub fn is_ceiling(self) -> bool {
        Self::CEILINGS.contains(&self)
    }

    /// Stable key for CSV/JSON.
    pub fn key(self) -> &'static str {
        match self {
            Tool::Tether => "tether",
            Tool::KubectlClient => "kubectl-client",
            Tool::KubectlServer => "kubectl-server",
            Tool::RawSsa => "raw-ssa",
            Tool::RawValidated => "raw-ssa-validated",
        }
    }

    /// Human label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Tether => "tether daemon --once",
            Tool::KubectlClient => "kubectl apply (client-side)",
            Tool::KubectlServer => "kubectl apply --server-side",
            Tool::RawSsa => "raw SSA client (ceiling)",
            Tool::RawValidated => "raw SSA, dry-run first (validated ceiling)",
        }
    }
}

/// The scenarios, in the order a session runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Scenario {
    /// 1. All N objects into an empty cluster state.
    FirstSync,
    /// 2. The same commit again.
    Noop,
    /// 3. A commit that changes one ConfigMap.
    OneChange,
    /// 4. 1% of objects edited by hand, same commit.
    Drift,
    /// 5. A commit that removes about 10% of the objects.
    Gc,
}

impl Scenario {
    /// Every scenario, in session order.
    pub const ALL: [Scenario; 5] = [
        Scenario::FirstSync,
        Scenario::Noop,
        Scenario::OneChange,
        Scenario::Drift,
        Scenario::Gc,
    ];

    /// Stable key for CSV/JSON.
    pub fn key(self) -> &'static str {
        match self {
            Scenario::FirstSync => "first-sync",
            Scenario::Noop => "noop-resync",
            Scenario::OneChange => "one-change",
            Scenario::Drift => "drift-repair",
            Scenario::Gc => "gc",
        }
    }
}

/// The outcome of one scenario run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "kebab-case")]
pub enum Status {
    /// The tool ran, exited 0, and the cluster ended up as desired.
    Ok,
    /// The tool exited 0 but the cluster is not as desired (the check says how).
    Wrong(String),
    /// The tool cannot do this scenario.
    NotAvailable(String),
    /// The tool failed or was not run because an earlier scenario failed.
    Failed(String),
}

impl Status {
    /// Short text for tables.
    pub fn text(&self) -> String {
        match self {
            Status::Ok => "ok".into(),
            Status::Wrong(w) => format!("WRONG: {w}"),
            Status::NotAvailable(w) => format!("n/a ({w})"),
            Status::Failed(w) => format!("FAILED: {w}"),
        }
    }

    /// Whether a measurement exists.
    pub fn measured(&self) -> bool {
        matches!(self, Status::Ok | Status::Wrong(_))
    }
}

/// One measurement: a tool running one scenario once.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Objects in the repository at first sync.
    pub n: usize,
    /// The tool.
    pub tool: Tool,
    /// The scenario.
    pub scenario: Scenario,
    /// Repetition index (None for the concurrency sweep).
    pub rep: Option<usize>,
    /// Requests in flight (raw client only).
    pub concurrency: Option<usize>,
    /// What happened.
    pub status: Status,
    /// Wall time, spawn to exit.
    pub wall_s: f64,
    /// The tool's own CPU time (user + system, its reaped children included: git for tether).
    pub cpu_s: f64,
    /// The tool's peak RSS (largest process of its tree), MB.
    pub peak_rss_mb: f64,
    /// Persisted write requests (audit log; dry-runs excluded).
    pub writes: Option<u64>,
    /// Server-side dry-run write requests.
    pub dry_runs: Option<u64>,
    /// Persisted writes by verb.
    pub writes_by_verb: Vec<(String, u64)>,
    /// Non-watch requests the API server served meanwhile (its counters; includes a little background).
    pub requests: Option<u64>,
    /// GET + LIST requests among them.
    pub reads: Option<u64>,
    /// CPU seconds etcd + kube-apiserver used meanwhile.
    pub server_cpu_s: Option<f64>,
    /// The 1-minute load average just before the run (this harness's own previous run included).
    pub load_before: f64,
    /// CPU seconds the rest of the machine used meanwhile: everything busy minus the tool and etcd +
    /// kube-apiserver (the controller-manager and this harness count as other; both are small). Other
    /// people's builds show up here.
    pub other_cpu_s: Option<f64>,
    /// The tool's own summary (tether's `synced ...` line), if any.
    pub summary: String,
    /// Its writes grouped by kind, timed by the API server (from the audit log).
    pub phases: Vec<Phase>,
}

impl Sample {
    /// The share of the machine's CPU other processes took during this run (0 when unknown).
    pub fn other_share(&self, cores: usize) -> f64 {
        match self.other_cpu_s {
            Some(o) if self.wall_s > 0.0 => o / (self.wall_s * cores.max(1) as f64),
            _ => 0.0,
        }
    }
}

/// What every session shares.
pub struct Ctx<'a> {
    /// The runtime for the harness's own API calls.
    pub rt: &'a tokio::runtime::Runtime,
    /// tether's binary.
    pub tether: &'a Path,
    /// Whether `tether daemon --help` lists `--sync-garbage-collection`.
    pub tether_gc: bool,
    /// Where sessions put repositories, caches and logs.
    pub work: &'a Path,
    /// A cluster shared by every session (names isolation), or None to start one per session.
    pub shared: Option<&'a Target>,
    /// Limit for one tool run.
    pub timeout: Duration,
    /// The API server version, filled by the first session.
    pub server_version: std::cell::RefCell<Option<String>>,
    /// Where the logs of failed sessions are copied.
    pub failed_logs: &'a Path,
}

static SESSION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs one session and returns one sample per scenario in `scenarios`.
pub fn run(
    ctx: &Ctx<'_>,
    n: usize,
    tool: Tool,
    rep: Option<usize>,
    concurrency: Option<usize>,
    scenarios: &[Scenario],
) -> Result<Vec<Sample>> {
    let owned;
    let target = match ctx.shared {
        Some(t) => t,
        None => {
            owned = Target::start(ctx.work)?;
            &owned
        }
    };
    let seq = SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // With a shared cluster every session gets its own namespaces, label value and sync name.
    let (prefix, run) = if ctx.shared.is_some() {
        let id = format!("b{:04x}{seq}", std::process::id() & 0xffff);
        (format!("{id}-"), id)
    } else {
        (String::new(), "bench".to_owned())
    };
    let mut workload = Workload::generate(n, &prefix, &run);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{}-n{n}-", tool.key()))
        .tempdir_in(ctx.work)
        .context("session dir")?;
    let repo = GitRepo::init(dir.path())?;
    workload.write(&repo.work)?;
    repo.commit("initial")?;
    let objects = dir.path().join("objects.jsonl");
    std::fs::write(&objects, workload.jsonl()?)?;
    let client = ctx.rt.block_on(target.client())?;
    if ctx.server_version.borrow().is_none() {
        let v = ctx.rt.block_on(target.server_version(&client))?;
        *ctx.server_version.borrow_mut() = Some(v);
    }
    let s = Session {
        ctx,
        target,
        client,
        tool,
        dir: dir.path().to_owned(),
        repo,
        objects,
        run: run.clone(),
        prefix: prefix.clone(),
        concurrency,
    };

    let mut samples = Vec::new();
    let mut broken: Option<String> = None;
    for &scenario in scenarios {
        let mut sample = Sample {
            n,
            tool,
            scenario,
            rep,
            concurrency,
            status: Status::Ok,
            wall_s: 0.0,
            cpu_s: 0.0,
            peak_rss_mb: 0.0,
            writes: None,
            dry_runs: None,
            writes_by_verb: Vec::new(),
            requests: None,
            reads: None,
            server_cpu_s: None,
            load_before: 0.0,
            other_cpu_s: None,
            summary: String::new(),
            phases: Vec::new(),
        };
        if let Some(why) = s.unavailable(scenario) {
            sample.status = Status::NotAvailable(why);
        } else if let Some(b) = &broken {
            sample.status = Status::Failed(format!("not run: {b}"));
        } else {
            match s.scenario(scenario, &mut workload, &mut sample) {
                Ok(()) => {}
                Err(e) => {
                    sample.status = Status::Failed(format!("{e:#}"));
                }
            }
            if let Status::Failed(why) = &sample.status {
                broken = Some(format!("{} failed", scenario.key()));
                eprintln!(
                    "bench: {} {} failed: {why}\nbench: logs go to {}",
                    tool.key(),
                    scenario.key(),
                    ctx.failed_logs.display()
                );
            }
        }
        eprintln!("bench: {}", progress(&sample));
        samples.push(sample);
    }
    let keep = std::env::var_os("TETHER_BENCH_KEEP").is_some();
    if keep {
        eprintln!(
            "bench: TETHER_BENCH_KEEP: session kept in {}",
            dir.keep().display()
        );
        return Ok(samples);
    }
    if ctx.shared.is_some() {
        // Leave the shared cluster as we found it (the namespace controller finishes in the background).
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&target.kubeconfig)
            .args(["delete", "namespace", "--wait=false", "--ignore-not-found"])
            .args(&workload.namespaces);
        let _ = cmd.output();
        // tether's GC inventory lives in its own namespace (the kubeconfig's, "default" here).
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&target.kubeconfig)
            .args(["delete", "configmap", "--ignore-not-found", "--wait=false"])
            .arg(format!("{run}-inventory"))
            .output();
    }
    if broken.is_some() || samples.iter().any(|s| matches!(s.status, Status::Wrong(_))) {
        // Keep the logs of a failed or wrong session for diagnosis.
        keep_logs(
            dir.path(),
            &ctx.failed_logs.join(format!("n{n}-{}-{seq}", tool.key())),
        );
    }
    Ok(samples)
}

/// Copies a session's `*.out` and `*.err` files to `to`.
fn keep_logs(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    if std::fs::create_dir_all(to).is_err() {
        return;
    }
    for e in entries.flatten() {
        let p = e.path();
        if matches!(p.extension().and_then(|x| x.to_str()), Some("out" | "err")) {
            let _ = std::fs::copy(&p, to.join(e.file_name()));
        }
    }
}

fn progress(s: &Sample) -> String {
    let c = s.concurrency.map(|c| format!(" c={c}")).unwrap_or_default();
    let rep = s.rep.map(|r| format!("rep {r}")).unwrap_or("sweep".into());
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("?".into());
    format!(
        "N={} {rep} {}{c} {}: {} {:.2}s cpu={:.2}s rss={:.0}MB writes={} dry-runs={} reads={} server-cpu={} other-cpu={} {}",
        s.n,
        s.tool.key(),
        s.scenario.key(),
        s.status.text(),
        s.wall_s,
        s.cpu_s,
        s.peak_rss_mb,
        opt(s.writes),
        opt(s.dry_runs),
        opt(s.reads),
        s.server_cpu_s
            .map(|c| format!("{c:.2}s"))
            .unwrap_or("?".into()),
        s.other_cpu_s
            .map(|c| format!("{c:.2}s"))
            .unwrap_or("?".into()),
        s.summary
    )
}

struct Session<'a> {
    ctx: &'a Ctx<'a>,
    target: &'a Target,
    client: kube::Client,
    tool: Tool,
    dir: PathBuf,
    repo: GitRepo,
    objects: PathBuf,
    run: String,
    prefix: String,
    concurrency: Option<usize>,
}

impl Session<'_> {
    fn unavailable(&self, scenario: Scenario) -> Option<String> {
        match (self.tool, scenario) {
            (t, Scenario::FirstSync) if t.is_ceiling() => None,
            (t, _) if t.is_ceiling() => {
                Some("the ceiling is measured for the first sync only".into())
            }
            (Tool::Tether, Scenario::Gc) if !self.ctx.tether_gc => {
                Some("GC not available: tether daemon --help lists no --sync-garbage-collection".into())
            }
            (Tool::KubectlServer, Scenario::Gc) => Some(
                "kubectl --server-side cannot --prune objects it did not label with an alpha ApplySet".into(),
            ),
            _ => None,
        }
    }

    /// Prepares the scenario, runs the tool, measures, checks.
    fn scenario(&self, scenario: Scenario, w: &mut Workload, sample: &mut Sample) -> Result<()> {
        let mut removed: Vec<Object> = Vec::new();
        let mut drifted: Vec<usize> = Vec::new();
        let mut changed: Option<usize> = None;
        match scenario {
            Scenario::FirstSync | Scenario::Noop => {}
            Scenario::OneChange => {
                let (i, file) = w.change_one().context("no ConfigMap to change")?;
                w.write(&self.repo.work)?;
                self.repo.commit(&format!("change {file}"))?;
                changed = Some(i);
            }
            Scenario::Drift => {
                drifted = w.drift_targets();
                self.ctx.rt.block_on(self.drift(w, &drifted))?;
            }
            Scenario::Gc => {
                let (gone, files) = w.remove_tenth();
                for f in &files {
                    std::fs::remove_file(self.repo.work.join(f))
                        .with_context(|| format!("remove {f}"))?;
                }
                self.repo
                    .commit(&format!("remove {} objects", gone.len()))?;
                removed = gone;
            }
        }

        let mark = self.target.audit_mark();
        let requests_before = self
            .ctx
            .rt
            .block_on(self.target.request_counts(&self.client))
            .ok();
        let server_before = self.target.server_cpu();
        sample.load_before = measure::loadavg();
        let t0 = std::time::SystemTime::now();
        let busy_before = measure::machine_busy();
        let label = format!("{}-{}", scenario.key(), self.tool.key());
        let m = measure::run(
            &mut self.command(scenario),
            &self.dir,
            &label,
            self.ctx.timeout,
        )?;
        sample.wall_s = m.wall.as_secs_f64();
        sample.cpu_s = m.cpu.as_secs_f64();
        sample.peak_rss_mb = m.max_rss as f64 / 1e6;
        let busy_after = measure::machine_busy();
        sample.server_cpu_s = match (server_before, self.target.server_cpu()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
            _ => None,
        };
        sample.other_cpu_s = match (busy_before, busy_after, sample.server_cpu_s) {
            (Some(a), Some(b), Some(server)) => {
                Some((b.saturating_sub(a).as_secs_f64() - sample.cpu_s - server).max(0.0))
            }
            _ => None,
        };
        let prefix = self.prefix.clone();
        let mine = move |ns: &str, name: &str| {
            prefix.is_empty() || ns.starts_with(&prefix) || name.starts_with(&prefix)
        };
        if let Some(writes) = self.target.audit_writes(mark, t0, mine)? {
            sample.phases = writes.phases();
            sample.writes = Some(writes.persisted);
            sample.dry_runs = Some(writes.dry_runs);
            sample.writes_by_verb = writes.by_verb.into_iter().collect();
        }
        if let Some(before) = requests_before {
            if let Ok(after) = self
                .ctx
                .rt
                .block_on(self.target.request_counts(&self.client))
            {
                let (all, reads) = request_delta(&before, &after);
                sample.requests = Some(all);
                sample.reads = Some(reads);
            }
        }
        sample.summary = summary(self.tool, &m);
        if !m.success() {
            let why = if m.timed_out {
                format!("timed out after {:?}", self.ctx.timeout)
            } else {
                format!("exit {:?}", m.code)
            };
            bail!("{why}: {}", m.tail(15));
        }
        if let Some(problem) = self
            .ctx
            .rt
            .block_on(self.check(w, &removed, &drifted, changed))?
        {
            sample.status = Status::Wrong(problem);
        }
        Ok(())
    }

    fn command(&self, scenario: Scenario) -> Command {
        let kubeconfig = &self.target.kubeconfig;
        match self.tool {
            Tool::Tether => {
                let mut cmd = Command::new(self.ctx.tether);
                cmd.args(["daemon", "--once", "--git-url"])
                    .arg(format!("file://{}", self.repo.bare.display()))
                    .arg("--cache-dir")
                    .arg(self.dir.join("tether-cache"))
                    .args(["--sync-name", &self.run])
                    // The harness's own `--timeout` bounds the run; tether's default of 5 minutes per sync
                    // stopped a first sync of 50,000 objects on a slow day.
                    .arg(format!("--sync-timeout={}s", self.ctx.timeout.as_secs()));
                if scenario == Scenario::Gc {
                    cmd.arg("--sync-garbage-collection");
                }
                cmd.env("KUBECONFIG", kubeconfig)
                    .env_remove("RUST_LOG")
                    .env_remove("POD_NAMESPACE");
                cmd
            }
            Tool::KubectlClient | Tool::KubectlServer => {
                let mut cmd = Command::new("kubectl");
                cmd.arg("--kubeconfig")
                    .arg(kubeconfig)
                    .arg("--cache-dir")
                    .arg(self.dir.join("kubectl-cache"))
                    .args(["apply", "-R", "-f"])
                    .arg(self.repo.work.join("namespaces"))
                    .arg("-f")
                    .arg(self.repo.work.join("apps"));
                if self.tool == Tool::KubectlServer {
                    cmd.args(["--server-side", "--force-conflicts"]);
                }
                if scenario == Scenario::Gc {
                    // Name the workload's kinds, as a careful user of --prune does: kubectl's default prune
                    // list would also LIST kinds the workload never has.
                    cmd.args(["--prune", "-l", &format!("{RUN_LABEL}={}", self.run)]);
                    for k in Kind::ALL {
                        let group = if k.group().is_empty() {
                            "core"
                        } else {
                            k.group()
                        };
                        cmd.arg(format!("--prune-allowlist={group}/v1/{}", k.name()));
                    }
                }
                cmd.env_remove("KUBECONFIG");
                cmd
            }
            Tool::RawSsa | Tool::RawValidated => {
                let exe = std::env::current_exe().unwrap_or_else(|_| "tether-bench".into());
                let mut cmd = Command::new(exe);
                cmd.arg("raw-apply")
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .arg("--objects")
                    .arg(&self.objects)
                    .arg("--concurrency")
                    .arg(self.concurrency.unwrap_or(32).to_string());
                if self.tool == Tool::RawValidated {
                    cmd.arg("--validate");
                }
                cmd
            }
        }
    }

    /// Edits the chosen objects as a person with kubectl would (strategic merge, another field manager).
    async fn drift(&self, w: &Workload, which: &[usize]) -> Result<()> {
        let params = PatchParams {
            field_manager: Some("bench-drift".into()),
            ..PatchParams::default()
        };
        for &i in which {
            let o = &w.objects[i];
            let Some((_, patch)) = o.kind.drift() else {
                continue;
            };
            let api = api_for(self.client.clone(), o.kind, o.namespace.as_deref());
            api.patch(&o.name, &params, &Patch::Strategic(&patch))
                .await
                .with_context(|| format!("drift {}", o.id()))?;
        }
        // The edits must have landed, or the scenario measures nothing.
        let still = self.differing(w, which).await?;
        if still.len() != which.len() {
            bail!(
                "drift did not take on {} of {} objects",
                which.len() - still.len(),
                which.len()
            );
        }
        Ok(())
    }

    /// Drifted objects whose drifted field still differs from Git.
    async fn differing(&self, w: &Workload, which: &[usize]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for &i in which {
            let o = &w.objects[i];
            let Some((pointer, _)) = o.kind.drift() else {
                continue;
            };
            let api = api_for(self.client.clone(), o.kind, o.namespace.as_deref());
            let live = api
                .get(&o.name)
                .await
                .with_context(|| format!("get {}", o.id()))?;
            let live = serde_json::to_value(&live)?;
            if live.pointer(pointer) != o.body.pointer(pointer) {
                out.push(o.id());
            }
        }
        Ok(out)
    }

    /// Whether the cluster now holds exactly the repository: None when it does, else what is off.
    async fn check(
        &self,
        w: &Workload,
        removed: &[Object],
        drifted: &[usize],
        changed: Option<usize>,
    ) -> Result<Option<String>> {
        let mut live: BTreeSet<(Kind, Option<String>, String)> = BTreeSet::new();
        let lp = ListParams::default().labels(&format!("{RUN_LABEL}={}", self.run));
        for kind in Kind::ALL {
            let api = api_for(self.client.clone(), kind, None);
            for o in api.list(&lp).await?.items {
                if let Some(name) = o.metadata.name {
                    live.insert((kind, o.metadata.namespace, name));
                }
            }
        }
        let want: HashMap<(Kind, Option<String>, String), &Object> = w
            .objects
            .iter()
            .map(|o| ((o.kind, o.namespace.clone(), o.name.clone()), o))
            .collect();
        let missing = want.keys().filter(|k| !live.contains(*k)).count();
        let left: Vec<String> = removed
            .iter()
            .filter(|o| live.contains(&(o.kind, o.namespace.clone(), o.name.clone())))
            .map(Object::id)
            .collect();
        let mut problems = Vec::new();
        if missing > 0 {
            problems.push(format!("{missing} of {} objects missing", want.len()));
        }
        if !left.is_empty() {
            problems.push(format!(
                "{} of {} removed objects still present (e.g. {})",
                left.len(),
                removed.len(),
                left[0]
            ));
        }
        let unrepaired = self.differing(w, drifted).await?;
        if !unrepaired.is_empty() {
            problems.push(format!(
                "{} of {} drifted objects not repaired (e.g. {})",
                unrepaired.len(),
                drifted.len(),
                unrepaired[0]
            ));
        }
        if let Some(i) = changed {
            let o = &w.objects[i];
            let api = api_for(self.client.clone(), o.kind, o.namespace.as_deref());
            let live: Value = serde_json::to_value(api.get(&o.name).await?)?;
            if live.pointer("/data/LOG_LEVEL") != o.body.pointer("/data/LOG_LEVEL") {
                problems.push(format!("the changed object {} was not updated", o.id()));
            }
        }
        Ok((!problems.is_empty()).then(|| problems.join("; ")))
    }
}

/// The tool's own one-line account of what it did.
fn summary(tool: Tool, m: &Measured) -> String {
    let out = m.stdout();
    match tool {
        Tool::Tether => out
            .lines()
            .find(|l| l.starts_with("synced "))
            .map(|l| {
                l.split_whitespace()
                    .filter(|f| !f.starts_with("revision="))
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        Tool::KubectlClient | Tool::KubectlServer => {
            // kubectl prints `kind/name <verb>` per object; count the verbs.
            let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
            for l in out.lines() {
                if let Some(verb) = l.rsplit(' ').next() {
                    *counts.entry(verb).or_default() += 1;
                }
            }
            counts
                .into_iter()
                .map(|(v, c)| format!("{v}={c}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
        Tool::RawSsa | Tool::RawValidated => out.trim().to_owned(),
    }
}

/// A bare repository (what tether fetches) and an authoring clone (what kubectl applies).
struct GitRepo {
    bare: PathBuf,
    work: PathBuf,
}

impl GitRepo {
    fn init(dir: &Path) -> Result<GitRepo> {
        let bare = dir.join("remote.git");
        let work = dir.join("work");
        git(dir, &["init", "-q", "--bare", "-b", "main"], Some(&bare))?;
        git(dir, &["init", "-q", "-b", "main"], Some(&work))?;
        git(&work, &["remote", "add", "origin"], Some(&bare))?;
        Ok(GitRepo { bare, work })
    }

    fn commit(&self, message: &str) -> Result<()> {
        git(&self.work, &["add", "-A"], None)?;
        git(&self.work, &["commit", "-q", "-m", message], None)?;
        git(&self.work, &["push", "-q", "origin", "HEAD:main"], None)?;
        Ok(())
    }
}

fn git(dir: &Path, args: &[&str], path: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench Author")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench Author")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    if let Some(p) = path {
        cmd.arg(p);
    }
    let out = cmd.output().context("run git")?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
