//! `tether install`: prints (or writes, one file per object) what `kubectl apply` needs to run tether in a
//! cluster. Offline: it reads at most the --git-known-hosts file and talks to no cluster, so whoever reviews
//! the output can apply it with their own rights.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use tether_install::{Manifest, Options, Scope};

/// `--scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Sync any kind into any namespace (explicit verbs; no escalate, bind, impersonate or non-resource URLs).
    Cluster,
    /// Sync only into the --k8s-allow-namespace namespaces, through a Role in each.
    Namespace,
}

/// Flags of `tether install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Repository the agent syncs: ssh://, git@host:path, https:// or file://.
    #[arg(long)]
    git_url: String,
    /// Branch to sync.
    #[arg(long, default_value = "main")]
    git_branch: String,
    /// Paths inside the repository to sync (repeatable or comma-separated; default: the whole repository).
    #[arg(long, value_delimiter = ',')]
    git_path: Vec<String>,
    /// tether's own namespace (created; its deploy key, sync state and inventory live there).
    #[arg(long, short = 'n', default_value = "tether")]
    namespace: String,
    /// Never push: the deploy key may be read-only; the sync state lives in a Secret.
    #[arg(long)]
    git_readonly: bool,
    /// Generate manifests as a `.flux.yaml` says (runs the repository's commands in the agent's pod).
    #[arg(long)]
    manifest_generation: bool,
    /// What the agent may change.
    #[arg(long, value_enum, default_value = "cluster")]
    scope: ScopeArg,
    /// Namespaces the agent may sync into (repeatable or comma-separated; required with --scope namespace).
    #[arg(long, value_delimiter = ',')]
    k8s_allow_namespace: Vec<String>,
    /// known_hosts file for the Git host [default: the keys github.com, gitlab.com and bitbucket.org publish].
    #[arg(long)]
    git_known_hosts: Option<PathBuf>,
    /// The agent's image [default: ghcr.io/tether-dev/tether:<this version>].
    #[arg(long)]
    image: Option<String>,
    /// Write one file per object into this directory (created) instead of printing one YAML stream.
    #[arg(long, short = 'o')]
    output_dir: Option<PathBuf>,
}

/// Runs the command: 64 for a flag to fix, 1 when the files cannot be written.
pub fn run(args: InstallArgs) -> ExitCode {
    let known_hosts = match &args.git_known_hosts {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("tether: --git-known-hosts {}: {e}", path.display());
                return ExitCode::from(crate::EX_USAGE);
            }
        },
        None => None,
    };
    let options = Options {
        git_url: args.git_url,
        git_branch: args.git_branch,
        git_paths: args.git_path,
        namespace: args.namespace,
        git_readonly: args.git_readonly,
        manifest_generation: args.manifest_generation,
        scope: match args.scope {
            ScopeArg::Cluster => Scope::Cluster,
            ScopeArg::Namespace => Scope::Namespace,
        },
        allow_namespaces: args.k8s_allow_namespace,
        known_hosts,
        image: args.image,
    };
    let manifests = match tether_install::render(&options) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(crate::EX_USAGE);
        }
    };
    let Some(dir) = args.output_dir else {
        crate::out::out!("{}", tether_install::to_yaml(&manifests));
        return ExitCode::SUCCESS;
    };
    match write_files(&dir, &manifests) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `NN-kind-name.yaml` per object and prints each path; warns about other YAML already there, which
/// `kubectl apply -f DIR` would apply too.
fn write_files(dir: &Path, manifests: &[Manifest]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("-o {}: {e}", dir.display()))?;
    let width = tether_install::index_width(manifests.len());
    let mut written = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        let name = m.file_name(i + 1, width);
        let path = dir.join(&name);
        std::fs::write(&path, m.to_yaml()).map_err(|e| format!("{}: {e}", path.display()))?;
        crate::out::outln!("{}", path.display());
        written.push(name);
    }
    let mut strays: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("-o {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && !written.contains(n))
        .collect();
    strays.sort();
    if !strays.is_empty() {
        eprintln!(
            "tether: warning: {} also holds {} not written now; `kubectl apply -f {}` would apply them too",
            dir.display(),
            strays.join(", "),
            dir.display()
        );
    }
    Ok(())
}
