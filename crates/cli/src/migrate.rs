//! `tether migrate`: rewrites manifests written for Kubernetes releases that served API versions since
//! removed (Flux v1 era repositories) to the versions the cluster serves, converting the fields that changed,
//! byte for byte unchanged elsewhere. The result is checked with a server-side dry-run before it is committed
//! as one commit listing every change; `--dry-run` prints the diff and commits nothing.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use tether_apply::{Engine, SyncOptions};
use tether_automation::migrate::{migrate_text, Change};
use tether_core::report::Shown;
use tether_render::Renderer;
use tether_source::Repo;

use crate::flags::SourceArgs;

/// Flags of `tether migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Where the manifests come from.
    #[command(flatten)]
    source: SourceArgs,
    /// Print the change and what it converts; commit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Namespace of namespaced objects the manifests write without one (for the dry-run).
    #[arg(long, default_value = "default")]
    k8s_default_namespace: String,
}

/// One converted file.
struct Converted {
    file: String,
    changes: Vec<Change>,
}

/// Runs the command.
pub fn run(rt: &tokio::runtime::Runtime, args: MigrateArgs) -> ExitCode {
    let source = match args.source.settle() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(crate::EX_USAGE);
        }
    };
    let result = rt.block_on(async {
        let repo = Repo::open(source.git.clone(), &source.cache_dir).await?;
        let head = repo.fetch().await?;
        let wt = repo.worktree("migrate", &head).await?;
        let root = wt.path();
        let mut converted = Vec::new();
        let mut manual = Vec::new();
        let mut files = tether_render::source_files(root, &source.paths)?;
        // A `.flux.yaml` patch file is written like manifests, but only the generator's output names it.
        for path in tether_render::path_roots(&source.paths) {
            if let Ok(Some(config)) = tether_render::generate::find(root, &path) {
                files.extend(config.patch_file().filter(|f| root.join(f).is_file()));
            }
        }
        files.sort();
        files.dedup();
        for file in files {
            let path = root.join(&file);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    manual.push(format!("{file}: cannot read it: {e}"));
                    continue;
                }
            };
            match migrate_text(&text) {
                Ok((_, changes)) if changes.is_empty() => {}
                Ok((new, changes)) => {
                    std::fs::write(&path, new)
                        .map_err(|e| anyhow::anyhow!("cannot write {file}: {e}"))?;
                    converted.push(Converted { file, changes });
                }
                Err(e) => manual.push(format!("{file}: {e}")),
            }
        }
        // What is still old after the conversion: items of a `List`, generated output, what needs a person.
        let renderer = Renderer::from_config(source.render.clone());
        let rendered = renderer.render(root, &source.paths)?;
        for r in &rendered {
            if tether_core::removed::removal(r.api_version(), r.kind()).is_some()
                && !manual.iter().any(|m| m.starts_with(&format!("{}:", r.source.file)))
            {
                manual.push(format!(
                    "{}: {} {} still uses {}, which tether cannot rewrite there (an item of a List, or the \
                     output of a generator); convert it by hand",
                    r.source,
                    r.kind(),
                    r.name(),
                    r.api_version()
                ));
            }
        }
        for m in &manual {
            eprintln!("tether: needs a person: {m}");
        }
        if converted.is_empty() {
            if manual.is_empty() {
                crate::out::outln!("nothing to migrate: every object uses an API version Kubernetes serves");
                return Ok::<_, anyhow::Error>(true);
            }
            return Ok(false);
        }
        let files: Vec<&str> = converted.iter().map(|c| c.file.as_str()).collect();
        let names: Vec<(&str, &str)> = converted
            .iter()
            .flat_map(|c| c.changes.iter().map(|ch| (ch.kind.as_str(), ch.name.as_str())))
            .collect();
        let check: Vec<_> = rendered
            .into_iter()
            .filter(|r| {
                // Namespaces too: objects in one the repository creates are checked without it.
                (r.kind() == "Namespace" && r.api_version() == "v1")
                    || files.contains(&r.source.file.as_str())
                    || names.iter().any(|(k, n)| *k == r.kind() && r.name().ends_with(n))
            })
            .collect();
        let client = kube::Client::try_default().await?;
        let checked = Engine::new(client)
            .check(
                check,
                &SyncOptions {
                    default_namespace: args.k8s_default_namespace.clone(),
                    namespaces: tether_plan::NamespaceFilter::default(),
                    sync_name: "tether-migrate".into(),
                    // Only dry-runs: whoever owns an object, the check is whether the server accepts it.
                    takeover: true,
                    concurrency: 8,
                },
            )
            .await?;
        let message = commit_message(&converted);
        if args.dry_run {
            let diff = worktree_diff(root)?;
            crate::out::out!("{diff}");
            crate::out::outln!("{message}");
            crate::out::outln!("(dry run: the server accepted {checked} converted object(s); nothing was committed)");
            return Ok(manual.is_empty());
        }
        let changed: Vec<String> = converted.iter().map(|c| c.file.clone()).collect();
        let Some(commit) = wt.commit_files(&message, &changed).await? else {
            return Ok(manual.is_empty());
        };
        match wt.push().await {
            Ok(()) => {}
            Err(tether_source::Error::Rejected { .. }) => anyhow::bail!(
                "the branch moved while the migration was checked; nothing was pushed, run tether migrate again"
            ),
            Err(e) => return Err(e.into()),
        }
        crate::out::outln!("{message}");
        crate::out::outln!("committed {commit}");
        Ok(manual.is_empty())
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!(
                "tether: {}",
                crate::advice::with_advice(e.as_ref(), format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// The diff of the worktree against its commit: git prints it best, and it is a git worktree anyway.
fn worktree_diff(root: &std::path::Path) -> anyhow::Result<String> {
    let out = std::process::Command::new("git")
        .args(["diff", "--no-color", "--no-ext-diff"])
        .current_dir(root)
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "git diff failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Migrate N object(s) to served API versions`, then one line per object and its field conversions.
fn commit_message(converted: &[Converted]) -> String {
    let count: usize = converted.iter().map(|c| c.changes.len()).sum();
    let mut out = format!("Migrate {count} object(s) to API versions Kubernetes serves\n");
    for c in converted {
        for ch in &c.changes {
            // File and object names come from the repository: one holding a newline would add lines
            // (trailers, say) to the commit message.
            let _ = write!(
                out,
                "\n- {}:{} {} {}: {} -> {}",
                Shown(&c.file),
                ch.line,
                Shown(&ch.kind),
                Shown(&ch.name),
                Shown(&ch.from),
                Shown(&ch.to)
            );
            for note in &ch.notes {
                let _ = write!(out, "\n  - {}", Shown(note));
            }
        }
    }
    out
}
