//! The commands that call a running agent: `sync`, `list-workloads`, `list-images` (without --git-url),
//! `release`, and `lock`/`unlock`/`automate`/`deautomate`/`policy` (without --git-url). Each prints what
//! the agent answered; a change returns once the agent has pushed and deployed it.

use std::process::ExitCode;

use clap::Args;
use tether_api::{
    paths, ChangeResult, ContainerImages, ImageList, PolicyRequest, ReleaseRequest, ReleaseResult,
    SyncRecord, WorkloadList,
};

use tether_core::report::Shown;

use crate::out::{out, outln};
use crate::remote::{failed, workload, Connect};
use crate::table::{print_json, render, Output};

/// Flags of `tether sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// How to reach the agent.
    #[command(flatten)]
    connect: Connect,
}

/// Runs `tether sync`: the agent fetches and applies now (also an unchanged head, repairing drift).
pub fn sync(rt: &tokio::runtime::Runtime, args: SyncArgs) -> ExitCode {
    let result = rt.block_on(async {
        let s = args.connect.session().await?;
        outln!("synchronizing with the repository…");
        Ok::<_, anyhow::Error>(s.client.post::<_, SyncRecord>(paths::SYNC, &()).await?)
    });
    match result {
        Ok(r) => synced(&r),
        Err(e) => failed(&e),
    }
}

/// Prints a sync's outcome; non-zero when it failed.
fn synced(r: &SyncRecord) -> ExitCode {
    if r.ok {
        outln!("synced {r}");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "tether: the sync failed: {}",
            r.error.as_deref().unwrap_or("?")
        );
        ExitCode::FAILURE
    }
}

/// Which workloads to list.
#[derive(Debug, Args)]
pub struct Scope {
    /// Namespace [default: the kubeconfig context's].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Every namespace you may read.
    #[arg(long, short = 'a', conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// Leave out the table's header line.
    #[arg(long)]
    no_headers: bool,
}

impl Scope {
    fn query(&self, default: &str) -> Vec<(&'static str, String)> {
        if self.all_namespaces {
            Vec::new()
        } else {
            vec![(
                "namespace",
                self.namespace.clone().unwrap_or_else(|| default.to_owned()),
            )]
        }
    }
}

/// Flags of `tether list-workloads`.
#[derive(Debug, Args)]
pub struct ListWorkloadsArgs {
    /// How to reach the agent.
    #[command(flatten)]
    connect: Connect,
    /// Which namespaces.
    #[command(flatten)]
    scope: Scope,
    /// Only workloads with this container.
    #[arg(long, short = 'c')]
    container: Option<String>,
}

/// Runs `tether list-workloads`.
pub fn list_workloads(rt: &tokio::runtime::Runtime, args: ListWorkloadsArgs) -> ExitCode {
    let result = rt.block_on(async {
        let s = args.connect.session().await?;
        let mut query = args.scope.query(&s.namespace);
        if let Some(c) = &args.container {
            query.push(("container", c.clone()));
        }
        Ok::<_, anyhow::Error>(
            s.client
                .get::<WorkloadList>(paths::WORKLOADS, &query)
                .await?,
        )
    });
    let list = match result {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    if let Output::Json = args.scope.output {
        return print_json(&list);
    }
    let with_errors = list.items.iter().any(|w| w.error.is_some());
    let mut rows = Vec::new();
    for w in &list.items {
        for (i, c) in w.containers.iter().enumerate() {
            let first = i == 0;
            let mut row = vec![
                if first { w.id.clone() } else { String::new() },
                c.name.clone(),
                c.running.clone().unwrap_or_else(|| "-".to_owned()),
                if first {
                    w.rollout.to_string()
                } else {
                    String::new()
                },
                if first {
                    w.policies.to_string()
                } else {
                    String::new()
                },
            ];
            if with_errors {
                row.push(if first {
                    w.error.clone().unwrap_or_default()
                } else {
                    String::new()
                });
            }
            rows.push(row);
        }
    }
    let mut headers = vec!["WORKLOAD", "CONTAINER", "IMAGE", "STATUS", "POLICIES"];
    if with_errors {
        headers.push("ERROR");
    }
    out!("{}", render(&headers, &rows, args.scope.no_headers));
    ExitCode::SUCCESS
}

/// `tether list-images` through the agent.
pub fn list_images(
    rt: &tokio::runtime::Runtime,
    connect: &Connect,
    namespace: Option<String>,
    workload_arg: Option<String>,
    limit: usize,
    output: Output,
) -> ExitCode {
    let result = rt.block_on(async {
        let s = connect.session().await?;
        let mut query = vec![("limit", limit.to_string())];
        if let Some(w) = &workload_arg {
            let ns = namespace.clone().unwrap_or_else(|| s.namespace.clone());
            query.push(("workload", workload(w, &ns)?.to_string()));
        } else if let Some(ns) = &namespace {
            query.push(("namespace", ns.clone()));
        }
        Ok::<_, anyhow::Error>(s.client.get::<ImageList>(paths::IMAGES, &query).await?)
    });
    match result {
        Ok(list) => print_images(&list.items, output),
        Err(e) => failed(&e),
    }
}

/// Prints `list-images` rows (from the agent or offline); non-zero when a registry could not be asked.
pub fn print_images(rows: &[ContainerImages], output: Output) -> ExitCode {
    let code = match output {
        Output::Table => {
            out!("{}", images_table(rows));
            ExitCode::SUCCESS
        }
        Output::Json => print_json(&rows),
    };
    if rows.iter().any(|r| r.error.is_some()) {
        ExitCode::FAILURE
    } else {
        code
    }
}

/// Per container: the workload and policy, the image, then the candidates with the one automation would
/// pick marked.
fn images_table(rows: &[ContainerImages]) -> String {
    let mut out = String::new();
    for r in rows {
        let state = if r.locked {
            "locked"
        } else if r.automated {
            "automated"
        } else {
            "not automated"
        };
        out.push_str(&format!(
            "{}  container={}  {}  policy={}\n  image: {}\n",
            Shown(&r.workload),
            Shown(&r.container),
            state,
            Shown(&r.policy),
            Shown(&r.image)
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("  error: {}\n", Shown(e)));
        }
        for c in &r.candidates {
            let next = r.next.as_deref() == Some(c.tag.as_str());
            let marker = if next { "->" } else { "  " };
            let created = c.created.as_deref().unwrap_or("-");
            let note = match (c.current, next) {
                (true, _) => "  (current)",
                (false, true) if r.automated => "  (automation would deploy this)",
                (false, true) => "  (newest allowed)",
                _ => "",
            };
            out.push_str(&format!(
                "  {marker} {:<24} {}{note}\n",
                Shown(&c.tag).to_string(),
                Shown(created)
            ));
        }
    }
    out
}

/// Flags of `tether release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// How to reach the agent.
    #[command(flatten)]
    connect: Connect,
    /// Workloads to release (`namespace:kind/name`, or `kind/name` in -n), repeatable.
    #[arg(
        long,
        short = 'w',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    workload: Vec<String>,
    /// Every workload.
    #[arg(long)]
    all: bool,
    /// The image to release, `repository:tag`: every container running that repository gets it.
    #[arg(
        long,
        short = 'i',
        required_unless_present = "update_all_images",
        conflicts_with = "update_all_images"
    )]
    update_image: Option<String>,
    /// Move every container to the newest tag its filter allows.
    #[arg(long)]
    update_all_images: bool,
    /// Workloads to leave out, repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Print the plan and commit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Release locked workloads too, and images their tag filter does not allow.
    #[arg(long)]
    force: bool,
    /// Why, for the commit message.
    #[arg(long, short = 'm')]
    message: Option<String>,
    /// Who, for the commit message.
    #[arg(long)]
    user: Option<String>,
    /// Namespace of workloads given as `kind/name` [default: the kubeconfig context's].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

/// Runs `tether release`.
pub fn release(rt: &tokio::runtime::Runtime, args: ReleaseArgs) -> ExitCode {
    let result = rt.block_on(async {
        let s = args.connect.session().await?;
        let ns = args
            .namespace
            .clone()
            .unwrap_or_else(|| s.namespace.clone());
        let ids = |list: &[String]| -> anyhow::Result<Vec<String>> {
            list.iter()
                .map(|w| Ok(workload(w, &ns)?.to_string()))
                .collect()
        };
        let req = ReleaseRequest {
            workloads: ids(&args.workload)?,
            all: args.all,
            image: args.update_image.clone(),
            all_images: args.update_all_images,
            exclude: ids(&args.exclude)?,
            dry_run: args.dry_run,
            force: args.force,
            message: args.message.clone(),
            user: args.user.clone(),
        };
        Ok::<_, anyhow::Error>(
            s.client
                .post::<_, ReleaseResult>(paths::RELEASE, &req)
                .await?,
        )
    });
    let r = match result {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if let Output::Json = args.output {
        return print_json(&r);
    }
    let rows: Vec<Vec<String>> = r
        .plan
        .iter()
        .map(|i| {
            vec![
                i.workload.clone(),
                i.container.clone(),
                format!("{} -> {}", i.from, i.to),
            ]
        })
        .collect();
    if rows.is_empty() {
        outln!("nothing to release");
    } else {
        out!(
            "{}",
            render(&["WORKLOAD", "CONTAINER", "IMAGE"], &rows, false)
        );
    }
    for k in &r.skipped {
        let c = k
            .container
            .as_deref()
            .map(|c| format!(" container {c}"))
            .unwrap_or_default();
        outln!(
            "skipped {}{}: {}",
            Shown(&k.workload),
            Shown(&c),
            Shown(&k.reason)
        );
    }
    match (&r.commit, args.dry_run) {
        (_, true) => {
            outln!("dry run: nothing committed");
            ExitCode::SUCCESS
        }
        (Some(c), false) => {
            outln!("{} {c}", Shown(&r.subject));
            r.synced.as_ref().map_or(ExitCode::SUCCESS, synced)
        }
        (None, false) => ExitCode::SUCCESS,
    }
}

/// A policy change through the agent: one commit, pushed and deployed.
pub fn policy(
    rt: &tokio::runtime::Runtime,
    connect: &Connect,
    namespace: Option<String>,
    mut req: PolicyRequest,
) -> ExitCode {
    let result = rt.block_on(async {
        let s = connect.session().await?;
        let ns = namespace.unwrap_or_else(|| s.namespace.clone());
        req.workload = workload(&req.workload, &ns)?.to_string();
        Ok::<_, anyhow::Error>(
            s.client
                .post::<_, ChangeResult>(paths::POLICY, &req)
                .await?,
        )
    });
    match result {
        Ok(r) => match &r.commit {
            Some(c) => {
                outln!("{} {c}", r.subject);
                r.synced.as_ref().map_or(ExitCode::SUCCESS, synced)
            }
            None => {
                outln!("{}: nothing to change", req.workload);
                ExitCode::SUCCESS
            }
        },
        Err(e) => failed(&e),
    }
}
