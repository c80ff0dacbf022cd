//! `tether-bench`: tether against `kubectl apply` (client-side, Flux v1's method), `kubectl apply
//! --server-side` and a raw server-side-apply client (the API server's ceiling), on the same local API server,
//! in one run. See `docs/benchmarks.md` for what is measured and how, and the latest table.
//!
//! ```text
//! cargo run --release -p tether-bench -- [--sizes 1000,5000] [--reps 3] [--out target/bench]
//! ```

mod cluster;
mod edit;
mod kustomize;
mod latency;
mod measure;
mod raw;
mod report;
mod session;
mod warm;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::{repo_root, Target};
use crate::report::Machine;
use crate::session::{Ctx, Sample, Scenario, Status, Tool};

/// Benchmarks tether against kubectl apply and the API server's own ceiling.
#[derive(Debug, Parser)]
#[command(name = "tether-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// The ceiling client: server-side applies every object of a JSON-lines file (used by the harness).
    #[command(hide = true)]
    RawApply {
        /// Admin kubeconfig.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// JSON lines, one object each, Namespaces first.
        #[arg(long)]
        objects: PathBuf,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Dry-run every object of a wave before writing any of it.
        #[arg(long)]
        validate: bool,
    },
    /// Writes the benchmark's generated repository of N objects into a directory, to profile one scenario
    /// by hand (`perf record tether daemon --once ...`) against exactly what the harness syncs.
    WriteRepo {
        /// Objects.
        #[arg(long)]
        size: usize,
        /// Directory to write into (created; must hold no other manifests).
        #[arg(long)]
        dir: PathBuf,
        /// Namespace prefix, as the harness gives each session.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Value of the run label on every object.
        #[arg(long, default_value = "profile")]
        run: String,
    },
}

/// How sessions are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Isolation {
    /// A fresh control plane (empty etcd, cold caches) for every tool × repetition (the default).
    Plane,
    /// One cluster; every session gets its own namespaces, label and sync name (smoke tests, your own cluster).
    Names,
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Repository sizes (objects) to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    sizes: Vec<usize>,
    /// Repetitions of every tool × scenario.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Output directory [default: <workspace>/target/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tools to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Tool::Tether, Tool::KubectlClient, Tool::KubectlServer, Tool::RawSsa, Tool::RawValidated])]
    tools: Vec<Tool>,
    /// Concurrency levels the ceiling client is swept over (one run each); the fastest is then repeated.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32,64,128")]
    sweep: Vec<usize>,
    /// Isolation between sessions.
    #[arg(long, value_enum, default_value = "plane")]
    isolation: Isolation,
    /// Run against this cluster instead of starting control planes (implies --isolation names).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The API server's audit log, to count writes on a --kubeconfig cluster.
    #[arg(long, requires = "kubeconfig")]
    audit_log: Option<PathBuf>,
    /// tether binary [default: build it with cargo, in this binary's profile, and use target/<profile>/tether].
    #[arg(long)]
    tether: Option<PathBuf>,
    /// Limit for one tool run, seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// What the tether binary is, for the report [default: the commit it was built from, or the --tether path].
    #[arg(long)]
    tether_label: Option<String>,
    /// A session is repeated when, during one of its runs, other processes (not the tool, etcd or the API
    /// server) took more than this share of the machine's CPU, e.g. someone compiling.
    #[arg(long, default_value_t = 0.2)]
    max_other_cpu: f64,
    /// Skip the sections that need no cluster (kustomize builds across syncs, an image edit in a large file).
    #[arg(long, conflicts_with = "offline_only")]
    no_offline: bool,
    /// Only the sections that need no cluster: no control plane, no tool sessions.
    #[arg(long)]
    offline_only: bool,
    /// Commits measured for "commit to applied", with a webhook and with polling (0: skip the section).
    #[arg(long, default_value_t = 20)]
    latency_commits: usize,
    /// Object counts of the warm (watch-driven, daemon kept running) scenarios (0: skip them).
    #[arg(long, value_delimiter = ',', default_value = "10000,20000")]
    warm_objects: Vec<usize>,
    /// One-object commits and hand edits measured per warm run.
    #[arg(long, default_value_t = 20)]
    warm_changes: usize,
    /// Seconds each warm run is left idle (its requests are counted; over 290 s includes a watch renewal).
    #[arg(long, default_value_t = 300)]
    warm_idle: u64,
    /// Only the warm scenarios (report in warm.md).
    #[arg(long)]
    warm_only: bool,
    /// How often a session may be repeated for that reason before its numbers are kept anyway (and counted
    /// as noisy in the report).
    #[arg(long, default_value_t = 2)]
    retries: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Sub::RawApply {
            kubeconfig,
            objects,
            concurrency,
            validate,
        }) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(raw::run(&kubeconfig, &objects, concurrency, validate)))
            .map(|()| true),
        Some(Sub::WriteRepo {
            size,
            dir,
            prefix,
            run,
        }) => workload::Workload::generate(size, &prefix, &run)
            .write(&dir)
            .map(|()| true),
        None => bench(cli.bench),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tether-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; Ok(false) when some scenario failed or left the cluster wrong (the report is written).
fn bench(args: BenchArgs) -> Result<bool> {
    if args.sizes.is_empty() || args.sizes.contains(&0) || args.reps == 0 {
        bail!("--sizes must list positive sizes and --reps must be at least 1");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo_root().join("target/bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
    let out = out.canonicalize()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let load_at_start = measure::loadavg();
    if load_at_start > 0.5 {
        eprintln!(
            "bench: warning: load average is {load_at_start:.2} before the run; other work on this machine skews the numbers"
        );
    }

    let (tether, built_from) = match &args.tether {
        Some(t) => {
            let modified = std::fs::metadata(t)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| format!(", modified {} s after the epoch", d.as_secs()))
                .unwrap_or_default();
            (t.clone(), format!("binary {}{modified}", t.display()))
        }
        None => {
            // Record what is built before building it: the tree can change under a long run.
            let from = working_tree();
            (build_tether()?, from)
        }
    };
    let tether_label = args.tether_label.clone().unwrap_or(built_from);
    let help = Command::new(&tether)
        .args(["daemon", "--help"])
        .output()
        .with_context(|| format!("run {} daemon --help", tether.display()))?;
    let tether_gc = String::from_utf8_lossy(&help.stdout).contains("--sync-garbage-collection");
    eprintln!(
        "bench: tether = {} (GC {})",
        tether.display(),
        if tether_gc {
            "available"
        } else {
            "not available"
        }
    );

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = tokio::runtime::Runtime::new()?;
    let work = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir()
        .context("work dir")?;
    if args.warm_only {
        let md = warm::markdown(&warm_runs(&args, &rt, &tether, work.path())?);
        std::fs::write(out.join("warm.md"), &md)?;
        println!("{md}");
        if std::env::var_os("TETHER_BENCH_KEEP").is_some() {
            eprintln!(
                "bench: TETHER_BENCH_KEEP: work dir kept in {}",
                work.keep().display()
            );
        }
        return Ok(true);
    }
    let shared = match (&args.kubeconfig, args.isolation) {
        (Some(kc), _) => Some(Target::existing(kc.clone(), args.audit_log.clone())),
        (None, Isolation::Names) => Some(Target::start(work.path())?),
        (None, Isolation::Plane) => None,
    };
    let ctx = Ctx {
        rt: &rt,
        tether: &tether,
        tether_gc,
        work: work.path(),
        shared: shared.as_ref(),
        timeout: Duration::from_secs(args.timeout),
        server_version: Default::default(),
        failed_logs: &out.join("failed-logs"),
    };

    let tools: Vec<Tool> = [
        Tool::Tether,
        Tool::KubectlClient,
        Tool::KubectlServer,
        Tool::RawSsa,
        Tool::RawValidated,
    ]
    .into_iter()
    .filter(|t| args.tools.contains(t))
    .collect();
    let mut samples: Vec<Sample> = Vec::new();
    let mut sweep: Vec<Sample> = Vec::new();
    let mut repeated = 0usize;
    // Runs a session; repeats it (fresh state) while other processes took too much of the machine.
    let mut run_session = |tool: Tool,
                           n: usize,
                           rep: Option<usize>,
                           c: Option<usize>,
                           sc: &[Scenario]| {
        let mut attempt = 0;
        loop {
            let s = session::run(&ctx, n, tool, rep, c, sc)?;
            let noisy = s.iter().any(|x| x.other_share(cores) > args.max_other_cpu);
            if noisy && attempt < args.retries {
                attempt += 1;
                repeated += 1;
                eprintln!(
                    "bench: other processes took more than {:.0}% of the machine during {} N={n}; repeating it \
                     (attempt {})",
                    100.0 * args.max_other_cpu,
                    tool.key(),
                    attempt + 1
                );
                continue;
            }
            return anyhow::Ok(s);
        }
    };
    for &n in args.sizes.iter().filter(|_| !args.offline_only) {
        // Each ceiling: one first sync per concurrency level, then its fastest level is repeated below.
        let mut best: BTreeMap<Tool, (usize, f64)> = BTreeMap::new();
        for ceiling in Tool::CEILINGS {
            if !tools.contains(&ceiling) {
                continue;
            }
            for &c in &args.sweep {
                let s = run_session(ceiling, n, None, Some(c), &[Scenario::FirstSync])?;
                for x in s {
                    if x.status == Status::Ok
                        && best.get(&ceiling).is_none_or(|&(_, t)| x.wall_s < t)
                    {
                        best.insert(ceiling, (c, x.wall_s));
                    }
                    sweep.push(x);
                }
            }
        }
        for rep in 0..args.reps {
            // Rotate the order every repetition so slow drift on the machine does not favour one tool.
            let mut order = tools.clone();
            order.rotate_left(rep % tools.len().max(1));
            for &tool in &order {
                let (scenarios, c): (&[Scenario], _) = match tool {
                    t if t.is_ceiling() => match best.get(&tool) {
                        Some(&(c, _)) => (&[Scenario::FirstSync], Some(c)),
                        None => continue,
                    },
                    _ => (&Scenario::ALL, None),
                };
                samples.extend(run_session(tool, n, Some(rep), c, scenarios)?);
            }
        }
    }

    let mut shares: Vec<f64> = samples
        .iter()
        .chain(&sweep)
        .filter(|s| s.wall_s > 0.0 && s.other_cpu_s.is_some())
        .map(|s| s.other_share(cores))
        .collect();
    shares.sort_by(|a, b| a.total_cmp(b));
    let noisy = shares.iter().filter(|&&x| x > args.max_other_cpu).count();
    let other_cpu = (!shares.is_empty()).then(|| report::OtherCpu {
        median: shares[shares.len() / 2],
        max: shares[shares.len() - 1],
        threshold: args.max_other_cpu,
        repeated,
        noisy,
    });
    let machine = machine(
        &tether,
        &tether_label,
        ctx.server_version.borrow().clone().unwrap_or_default(),
        load_at_start,
        other_cpu,
    );
    // A section that fails is reported and fails the run, but never loses what the others measured (a
    // kustomize build that timed out at N = 20,000 once threw away 40 minutes of first syncs).
    let mut failed = Vec::new();
    let (kustomize_rows, edit) = if args.no_offline {
        (Vec::new(), None)
    } else {
        (
            keep(
                "kustomize",
                &mut failed,
                kustomize::run(work.path(), &args.sizes),
            ),
            keep(
                "image edit",
                &mut failed,
                edit::run(args.reps.max(5)).map(Some),
            ),
        )
    };
    let latency_rows = if args.offline_only || args.latency_commits == 0 {
        Vec::new()
    } else {
        keep(
            "commit to applied",
            &mut failed,
            latency::run(&rt, &tether, work.path(), args.latency_commits),
        )
    };
    let warm_runs = if args.offline_only {
        Vec::new()
    } else {
        keep(
            "agent kept running",
            &mut failed,
            warm_runs(&args, &rt, &tether, work.path()),
        )
    };
    let rows = report::rows(&samples);
    let targets = report::targets(&rows, &args.sizes);
    let md = report::markdown(
        &rows,
        &targets,
        &samples,
        &sweep,
        &machine,
        &command,
        &args.sizes,
    );
    let md = if kustomize_rows.is_empty() {
        md
    } else {
        format!("{md}{}", kustomize::markdown(&kustomize_rows))
    };
    let md = if latency_rows.is_empty() {
        md
    } else {
        format!("{md}{}", latency::markdown(&latency_rows))
    };
    let md = if warm_runs.is_empty() {
        md
    } else {
        format!("{md}{}", warm::markdown(&warm_runs))
    };
    let md = match &edit {
        Some((bytes, rows)) => format!("{md}{}", edit::markdown(*bytes, rows)),
        None => md,
    };
    let isolation = match (&args.kubeconfig, args.isolation) {
        (Some(_), _) => "names (existing cluster)",
        (None, Isolation::Names) => "names (one local control plane)",
        (None, Isolation::Plane) => "plane (fresh control plane per tool and repetition)",
    };
    let json = serde_json::json!({
        "command": command,
        "machine": machine,
        "isolation": isolation,
        "sizes": args.sizes,
        "reps": args.reps,
        "tether_gc_available": tether_gc,
        "rows": rows,
        "targets": targets,
        "sweep": sweep,
        "samples": samples,
        "kustomize": kustomize_rows,
        "image_edit": edit.as_ref().map(|(_, rows)| rows),
        "commit_to_applied": latency_rows,
        "warm": warm_runs,
    });
    report::write_all(&out, &md, &rows, &samples, &json, &args.sizes)?;
    println!("{md}");
    eprintln!(
        "bench: wrote report.md, results.csv, samples.csv, results.json and chart.svg to {}",
        out.display()
    );
    if std::env::var_os("TETHER_BENCH_KEEP").is_some() {
        eprintln!(
            "bench: TETHER_BENCH_KEEP: work dir kept in {}",
            work.keep().display()
        );
    }
    let bad = samples
        .iter()
        .chain(&sweep)
        .any(|s| matches!(s.status, Status::Failed(_) | Status::Wrong(_)));
    if bad {
        eprintln!("bench: some scenarios failed or left the cluster wrong; see the status column");
    }
    if !failed.is_empty() {
        eprintln!(
            "bench: these sections failed and are missing from the report: {}",
            failed.join(", ")
        );
    }
    Ok(!bad && failed.is_empty())
}

/// The result of an optional section of the report, or nothing: a failure is printed and noted in `failed`
/// (the run then exits 1), and the report is still written without the section.
fn keep<T: Default>(name: &str, failed: &mut Vec<String>, result: Result<T>) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("bench: the {name} section failed: {e:#}");
        failed.push(name.to_owned());
        T::default()
    })
}

/// Builds `tether` with the cargo that built this binary, in the same profile, and returns its path.
fn build_tether() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate tether-bench")?;
    let dir = exe
        .parent()
        .context("tether-bench has no parent directory")?
        .to_owned();
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO")));
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(repo_root()).args(["build", "-p", "tether"]);
    match dir.file_name().and_then(|d| d.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => bail!("cannot tell the cargo profile of {}", exe.display()),
    }
    // The target directory is the parent of the profile directory.
    if let Some(target) = dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    eprintln!("bench: building tether: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("run {}", cargo.display()))?;
    if !status.success() {
        bail!("building tether failed ({status}); pass --tether PATH to use a binary you built");
    }
    let tether = dir.join("tether");
    if !tether.exists() {
        bail!("{} does not exist after the build", tether.display());
    }
    Ok(tether)
}

/// `working tree at <commit>[ with uncommitted changes]` of this repository, now.
fn working_tree() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"]);
    let dirty = !git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "crates",
        "Cargo.lock",
    ])
    .is_empty();
    format!(
        "built from the working tree at {head}{}",
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    )
}

fn machine(
    tether: &Path,
    label: &str,
    api_server: String,
    load_at_start: f64,
    other_cpu: Option<report::OtherCpu>,
) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let kubectl = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["clientVersion"]["gitVersion"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let version = Command::new(tether)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        memory_gib,
        kernel,
        api_server,
        kubectl,
        tether: format!("{version}, {label}"),
        load_at_start,
        other_cpu,
    }
}

/// The warm scenarios, one daemon and control plane per size.
fn warm_runs(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    tether: &Path,
    work: &Path,
) -> Result<Vec<warm::Warm>> {
    args.warm_objects
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            eprintln!("bench: warm agent on {n} objects");
            warm::run(
                rt,
                tether,
                work,
                n,
                (
                    args.warm_changes,
                    args.warm_changes,
                    Duration::from_secs(args.warm_idle),
                ),
            )
        })
        .collect()
}
