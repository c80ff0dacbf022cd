//! Command-line flags (Flux v1 names where Flux had one) and their validation into the plain configuration
//! structs the libraries take. Only this binary knows flag names.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tether_daemon::config::{AutomationSettings, Config, LogFormat, SyncState};
use tether_plan::gc::Mode as Gc;
use tether_plan::NamespaceFilter;
use tether_render::{GenerationConfig, KustomizeConfig, RenderConfig};
use tether_source::{Auth, GitConfig, GitUrl};

/// `--sync-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncStateArg {
    /// An annotated tag in the repository (needs write access).
    Git,
    /// An annotation on a Secret in tether's namespace.
    Secret,
}

impl From<SyncStateArg> for SyncState {
    fn from(a: SyncStateArg) -> Self {
        match a {
            SyncStateArg::Git => SyncState::Git,
            SyncStateArg::Secret => SyncState::Secret,
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// logfmt (`key=value`).
    Fmt,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Fmt => LogFormat::Fmt,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// `--notify-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NotifyFormatArg {
    /// Slack-compatible incoming-webhook JSON (`{"text": …}`).
    Slack,
    /// tether's JSON document with every field.
    Generic,
}

/// Where the manifests come from: flags shared by `tether daemon` and the offline commands.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Repository: ssh://, git@host:path, https://, file:// or a local path.
    /// (Required by `daemon`; the other commands work through the agent without it.)
    #[arg(long, env = "TETHER_GIT_URL")]
    pub git_url: Option<String>,
    /// Branch to sync.
    #[arg(long, default_value = "main")]
    pub git_branch: String,
    /// Paths inside the repository to sync (repeatable or comma-separated; default: the whole repository).
    #[arg(long, value_delimiter = ',')]
    pub git_path: Vec<String>,
    /// Limit for each git operation.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub git_timeout: Duration,
    /// SSH private key (deploy key) for ssh:// and git@host:path URLs.
    #[arg(long)]
    pub git_ssh_key: Option<PathBuf>,
    /// known_hosts file for the Git host; unknown or changed host keys are refused.
    #[arg(long)]
    pub git_known_hosts: Option<PathBuf>,
    /// File with HTTPS credentials, `username:password` on one line (else TETHER_GIT_HTTPS_USER/_PASSWORD).
    #[arg(long)]
    pub git_https_credentials_file: Option<PathBuf>,
    /// Committer name for tags and commits tether makes.
    #[arg(long, default_value = "tether")]
    pub git_user: String,
    /// Committer email.
    #[arg(long, default_value = "tether@localhost")]
    pub git_email: String,
    /// Where the local clone and caches live.
    #[arg(long, env = "TETHER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// kustomize binary that builds directories holding a kustomization.
    #[arg(long, default_value = "kustomize")]
    pub kustomize_bin: PathBuf,
    /// Let kustomizations fetch remote bases and resources (git or HTTP URLs) while building.
    #[arg(long)]
    pub kustomize_allow_remote: bool,
    /// Limit for one kustomize build.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub kustomize_timeout: Duration,
    /// Generate manifests as a `.flux.yaml` at or above each git-path says (Flux v1's manifest generation).
    #[arg(long)]
    pub manifest_generation: bool,
    /// The largest manifest file read; larger ones fail the sync naming the file.
    #[arg(long, default_value_t = tether_render::DEFAULT_MAX_FILE_BYTES)]
    pub max_manifest_bytes: u64,
    /// Limit for one `.flux.yaml` command that sets no `timeout` of its own.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub generator_timeout: Duration,
}

/// How registries are queried: flags shared by `tether daemon` and `tether list-images`.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Requests per second to each registry host (halved on HTTP 429, recovering slowly).
    #[arg(long, default_value_t = 50.0)]
    pub registry_rps: f64,
    /// Burst of requests to each registry host.
    #[arg(long, default_value_t = 10)]
    pub registry_burst: u32,
    /// Registry hosts spoken to over plain HTTP (repeatable or comma-separated), e.g. 127.0.0.1:5000.
    #[arg(long, value_delimiter = ',')]
    pub registry_insecure_host: Vec<String>,
    /// Platform picked from multi-arch images.
    #[arg(long, default_value = "linux/amd64")]
    pub registry_platform: String,
    /// docker config.json with registry credentials, used after the workloads' imagePullSecrets.
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
}

/// Flags of `tether daemon`.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// Perform exactly one sync, print its summary and exit (0 on success).
    #[arg(long)]
    pub once: bool,
    /// The git source.
    #[command(flatten)]
    pub source: SourceArgs,
    /// How often to fetch the repository.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub git_poll_interval: Duration,
    /// How often to re-apply everything even without new commits (corrects drift).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub sync_interval: Duration,
    /// Never push: keeps the sync state in a Secret and turns image automation off.
    #[arg(long)]
    pub git_readonly: bool,
    /// Where to record the last applied revision [default: git, or secret with --git-readonly].
    #[arg(long, value_enum)]
    pub sync_state: Option<SyncStateArg>,
    /// Name of the sync tag [default: tether-sync] (with --sync-state git).
    #[arg(long)]
    pub git_sync_tag: Option<String>,
    /// Stable name of this sync; objects carry it as their owner.
    #[arg(long, default_value = "tether")]
    pub sync_name: String,
    /// Take over objects that another sync name applied (their label moves to this sync); without it
    /// such an object fails the sync, naming the other sync.
    #[arg(long)]
    pub sync_takeover: bool,
    /// Only touch these namespaces (repeatable); objects elsewhere are skipped with a warning.
    #[arg(long, value_delimiter = ',')]
    pub k8s_allow_namespace: Vec<String>,
    /// Namespace for namespaced objects that name none [default: the kubeconfig's, else "default"].
    #[arg(long)]
    pub k8s_default_namespace: Option<String>,
    /// Secret that holds the sync state with --sync-state secret.
    #[arg(long, default_value = "tether-sync")]
    pub k8s_secret_name: String,
    /// Secret in tether's namespace holding its deploy key (key `identity`), made on first start; used for
    /// SSH URLs when --git-ssh-key is not given. `tether identity` prints its public key.
    #[arg(long, default_value = "tether-git-deploy")]
    pub git_deploy_secret: String,
    /// tether's own namespace, for the state Secret and the GC inventory [default: $POD_NAMESPACE, else the
    /// kubeconfig's].
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Delete objects this sync applied earlier that are no longer in Git (and nothing else).
    #[arg(long)]
    pub sync_garbage_collection: bool,
    /// Like --sync-garbage-collection, but only log `would delete <id>`.
    #[arg(long)]
    pub sync_garbage_collection_dry: bool,
    /// Allow garbage collection to delete everything when the repository renders no objects at all.
    #[arg(long)]
    pub sync_garbage_collection_allow_empty: bool,
    /// How often image automation checks registries for newer tags of automated workloads.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub automation_interval: Duration,
    /// Turn image automation (and registry scanning) off.
    #[arg(long)]
    pub registry_disable_scanning: bool,
    /// Registry access for image automation.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Address of /healthz, /readyz and /metrics (not served with --once).
    #[arg(long, default_value = "0.0.0.0:3031")]
    pub listen_metrics: std::net::SocketAddr,
    /// Address of the API and webhooks (`docs/api.md`; not served with --once): /api/v1 calls need a bearer
    /// token, /hooks are signed with --webhook-secret-file.
    #[arg(long, default_value = "0.0.0.0:3030")]
    pub listen: std::net::SocketAddr,
    /// Run as one of several replicas: only the holder of the Lease `<sync-name>-leader` in tether's
    /// namespace syncs, collects and commits; the others serve the read API and take over when it stops.
    #[arg(long)]
    pub leader_elect: bool,
    /// How long the leader's Lease holds without renewal (a standby takes over after it).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// This replica's name in the Lease [default: $POD_NAME, else host name and process id].
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
    /// Send notifications (failed and recovered syncs, automation commits, collections) to this URL
    /// (repeatable).
    #[arg(long)]
    pub notify_url: Vec<String>,
    /// Format of notifications.
    #[arg(long, value_enum, default_value = "generic")]
    pub notify_format: NotifyFormatArg,
    /// File with the key notifications are signed with (`X-Tether-Signature: sha256=<HMAC>`).
    #[arg(long)]
    pub notify_secret_file: Option<PathBuf>,
    /// File with the secret webhooks are signed with (GitHub, GitLab, Gitea, Bitbucket, registries);
    /// `POST /hooks/git` and `/hooks/registry` are off without it.
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// Writes in flight at once while applying.
    #[arg(long, default_value_t = 32)]
    pub apply_concurrency: usize,
    /// Limit for each request to the Kubernetes API.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub k8s_timeout: Duration,
    /// Limit for one whole sync; a sync over it fails (the marker stays) and is retried with backoff.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub sync_timeout: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "fmt")]
    pub log_format: LogFormatArg,
}

/// A flag value or combination that tether refuses at start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A secret from `path` (surrounding whitespace, e.g. `echo`'s newline, is not part of it).
fn read_secret(
    flag: &str,
    path: &std::path::Path,
) -> Result<tether_daemon::config::Secret, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        return Err(format!(
            "{flag} {} is empty: put the secret in it",
            path.display()
        ));
    }
    Ok(tether_daemon::config::Secret(text.into_bytes()))
}

impl DaemonArgs {
    /// Validates every flag and combination; nothing is touched before this succeeds.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError(m);
        let automation = self.automation_settings().map_err(err)?;
        let source = self.source.settle().map_err(err)?;
        let sync_state = match (self.git_readonly, self.sync_state) {
            (true, Some(SyncStateArg::Git)) => {
                return Err(err(
                    "--git-readonly contradicts --sync-state git: a read-only key cannot push the sync tag; \
                     use --sync-state secret (the default with --git-readonly)"
                        .into(),
                ))
            }
            (true, _) => SyncState::Secret,
            (false, s) => s.map_or(SyncState::Git, SyncState::from),
        };
        if sync_state == SyncState::Secret && self.git_sync_tag.is_some() {
            return Err(err(
                "--git-sync-tag only applies with --sync-state git".into()
            ));
        }
        let webhook_secret = self
            .webhook_secret_file
            .as_deref()
            .map(|p| read_secret("--webhook-secret-file", p))
            .transpose()
            .map_err(err)?;
        if self.leader_elect && self.leader_election_lease_duration < Duration::from_secs(3) {
            return Err(err(
                "--leader-election-lease-duration must be at least 3s: the leader renews at a third of it"
                    .into(),
            ));
        }
        let leader = self.leader_elect.then(|| tether_daemon::leader::Settings {
            identity: self.leader_identity.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_else(|_| "tether".to_owned());
                format!("{host}-{}", std::process::id())
            }),
            lease_duration: self.leader_election_lease_duration,
        });
        let notify_secret = self
            .notify_secret_file
            .as_deref()
            .map(|p| read_secret("--notify-secret-file", p))
            .transpose()
            .map_err(err)?;
        for url in &self.notify_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(err(format!(
                    "--notify-url {}: give an http:// or https:// URL",
                    tether_daemon::notify::receiver_label(url)
                )));
            }
        }
        let notify = (!self.notify_url.is_empty()).then(|| tether_daemon::notify::Settings {
            urls: self.notify_url.clone(),
            format: match self.notify_format {
                NotifyFormatArg::Slack => tether_daemon::notify::Format::Slack,
                NotifyFormatArg::Generic => tether_daemon::notify::Format::Generic,
            },
            secret: notify_secret,
        });
        let sync_tag = self.git_sync_tag.unwrap_or_else(|| "tether-sync".into());
        if sync_tag.is_empty()
            || sync_tag.contains(char::is_whitespace)
            || sync_tag == source.git.branch
        {
            return Err(err(format!(
                "--git-sync-tag '{sync_tag}' must be a non-empty tag name different from the branch"
            )));
        }
        if !tether_core::id::is_dns_label(&self.sync_name) {
            return Err(err(format!(
                "--sync-name '{}' must be 1-63 characters of a-z, 0-9 and '-', starting and ending alphanumeric",
                self.sync_name
            )));
        }
        for (flag, d) in [
            ("--git-poll-interval", self.git_poll_interval),
            ("--sync-interval", self.sync_interval),
            ("--k8s-timeout", self.k8s_timeout),
            ("--sync-timeout", self.sync_timeout),
        ] {
            if d.is_zero() {
                return Err(err(format!("{flag} must be greater than zero")));
            }
        }
        if self.apply_concurrency == 0 {
            return Err(err("--apply-concurrency must be at least 1".into()));
        }
        let gc = match (
            self.sync_garbage_collection,
            self.sync_garbage_collection_dry,
        ) {
            (_, true) => Gc::DryRun,
            (true, false) => Gc::On,
            (false, false) => Gc::Off,
        };
        if self.sync_garbage_collection_allow_empty && gc == Gc::Off {
            return Err(err(
                "--sync-garbage-collection-allow-empty needs --sync-garbage-collection or --sync-garbage-collection-dry".into(),
            ));
        }
        Ok(Config {
            once: self.once,
            git: source.git,
            paths: source.paths,
            render: source.render,
            poll_interval: self.git_poll_interval,
            sync_interval: self.sync_interval,
            readonly: self.git_readonly,
            sync_state,
            sync_tag,
            sync_name: self.sync_name,
            takeover: self.sync_takeover,
            namespaces: NamespaceFilter(
                self.k8s_allow_namespace
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .collect::<BTreeSet<_>>(),
            ),
            default_namespace: self.k8s_default_namespace,
            secret_name: self.k8s_secret_name,
            deploy_key: Some(self.git_deploy_secret).filter(|s| !s.is_empty()),
            namespace: self.namespace,
            gc,
            gc_allow_empty: self.sync_garbage_collection_allow_empty,
            cache_dir: source.cache_dir,
            concurrency: self.apply_concurrency,
            k8s_timeout: self.k8s_timeout,
            sync_timeout: self.sync_timeout,
            log_format: self.log_format.into(),
            automation,
            listen_metrics: self.listen_metrics,
            listen: self.listen,
            webhook_secret,
            notify,
            leader,
            explain: crate::advice::explain,
        })
    }

    fn automation_settings(&self) -> Result<Option<AutomationSettings>, String> {
        if self.automation_interval.is_zero() {
            return Err("--automation-interval must be greater than zero".into());
        }
        let cache_dir = self
            .source
            .cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir);
        let (registry, docker_config) = self.registry.settle(&cache_dir)?;
        if self.git_readonly || self.registry_disable_scanning {
            return Ok(None);
        }
        Ok(Some(AutomationSettings {
            interval: self.automation_interval,
            registry,
            docker_config,
        }))
    }
}

/// A validated source: the git configuration, the paths to render and the cache directory.
#[derive(Debug, Clone)]
pub struct Source {
    /// The git source.
    pub git: GitConfig,
    /// Paths to render.
    pub paths: Vec<String>,
    /// Cache root.
    pub cache_dir: PathBuf,
    /// How the tree is rendered (kustomize, manifest generation).
    pub render: RenderConfig,
}

impl SourceArgs {
    /// Validates the source flags.
    pub fn settle(&self) -> Result<Source, String> {
        let Some(given) = &self.git_url else {
            return Err(
                "--git-url is required: the repository to read (or set TETHER_GIT_URL)".to_owned(),
            );
        };
        let url = GitUrl::parse(given)?;
        if self.git_branch.trim().is_empty() || self.git_branch.starts_with('-') {
            return Err(format!(
                "--git-branch '{}' is not a branch name",
                self.git_branch
            ));
        }
        let mut paths = Vec::new();
        for p in self
            .git_path
            .iter()
            .map(|p| p.trim().trim_end_matches('/'))
            .filter(|p| !p.is_empty())
        {
            tether_render::check_path(p).map_err(|e| format!("--git-path: {e}"))?;
            if p != "." {
                paths.push(p.to_owned());
            }
        }
        if self.git_timeout.is_zero() {
            return Err("--git-timeout must be greater than zero".into());
        }
        let is_ssh = matches!(url, GitUrl::Ssh(_));
        if !is_ssh && (self.git_ssh_key.is_some() || self.git_known_hosts.is_some()) {
            return Err(format!(
                "--git-ssh-key and --git-known-hosts only apply to SSH URLs, not {url}"
            ));
        }
        for (flag, f) in [
            ("--git-ssh-key", &self.git_ssh_key),
            ("--git-known-hosts", &self.git_known_hosts),
        ] {
            if let Some(f) = f {
                if !f.is_file() {
                    return Err(format!("{flag} {}: no such file", f.display()));
                }
            }
        }
        let https = https_credentials(&url, self.git_https_credentials_file.as_deref())?;
        if self.kustomize_timeout.is_zero() {
            return Err("--kustomize-timeout must be greater than zero".into());
        }
        if self.max_manifest_bytes == 0 {
            return Err("--max-manifest-bytes must be greater than zero".into());
        }
        if self.generator_timeout < Duration::from_secs(1) {
            return Err("--generator-timeout must be at least 1s".into());
        }
        let cache_dir = self.cache_dir.clone().unwrap_or_else(default_cache_dir);
        Ok(Source {
            git: GitConfig {
                url,
                branch: self.git_branch.clone(),
                timeout: self.git_timeout,
                auth: Auth {
                    ssh_key: self.git_ssh_key.clone(),
                    known_hosts: self.git_known_hosts.clone(),
                    https,
                },
                user_name: self.git_user.clone(),
                user_email: self.git_email.clone(),
            },
            paths,
            render: RenderConfig {
                kustomize: KustomizeConfig {
                    bin: self.kustomize_bin.clone(),
                    allow_remote: self.kustomize_allow_remote,
                    timeout: self.kustomize_timeout,
                    cache_dir: Some(cache_dir.join("kustomize")),
                },
                max_file_bytes: self.max_manifest_bytes,
                generation: self.manifest_generation.then(|| GenerationConfig {
                    timeout: self.generator_timeout,
                    // `kustomize build .` in a .flux.yaml runs the kustomize given to tether.
                    tools_dir: self
                        .kustomize_bin
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .map(std::path::Path::to_path_buf),
                }),
            },
            cache_dir,
        })
    }
}

impl RegistryArgs {
    /// Validates the registry flags; the client caches under `cache_dir`.
    pub fn settle(
        &self,
        cache_dir: &std::path::Path,
    ) -> Result<(tether_registry::ClientConfig, tether_registry::Credentials), String> {
        if !self.registry_rps.is_finite() || self.registry_rps <= 0.0 || self.registry_burst == 0 {
            return Err("--registry-rps must be positive and --registry-burst at least 1".into());
        }
        let platform = tether_registry::Platform::parse(&self.registry_platform)
            .map_err(|e| format!("--registry-platform {}: {e}", self.registry_platform))?;
        let docker_config = match &self.docker_config {
            Some(path) => {
                tether_registry::Credentials::read_docker_config(path).map_err(|e| e.to_string())?
            }
            None => tether_registry::Credentials::anonymous(),
        };
        let config = tether_registry::ClientConfig {
            rate_limit: tether_registry::RateLimit {
                rps: self.registry_rps,
                burst: self.registry_burst,
            },
            insecure_hosts: self.registry_insecure_host.clone(),
            platform,
            cache_dir: Some(cache_dir.to_path_buf()),
            ..Default::default()
        };
        Ok((config, docker_config))
    }
}

/// Where clones and caches live without `--cache-dir`.
fn default_cache_dir() -> PathBuf {
    std::env::temp_dir().join("tether-cache")
}

/// HTTPS credentials from `--git-https-credentials-file` or the environment; never from the URL.
fn https_credentials(
    url: &GitUrl,
    file: Option<&std::path::Path>,
) -> Result<Option<(String, String)>, String> {
    let from_env = std::env::var("TETHER_GIT_HTTPS_USER")
        .ok()
        .zip(std::env::var("TETHER_GIT_HTTPS_PASSWORD").ok());
    let creds = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--git-https-credentials-file {}: {e}", f.display()))?;
            let line = text.lines().next().unwrap_or("").trim();
            let (u, p) = line.split_once(':').ok_or_else(|| {
                format!(
                    "--git-https-credentials-file {}: expected one line `username:password`",
                    f.display()
                )
            })?;
            Some((u.to_owned(), p.to_owned()))
        }
        None => from_env,
    };
    if creds.is_some() && !matches!(url, GitUrl::Http(_)) {
        return Err(format!(
            "HTTPS credentials were given but --git-url {url} is not an https:// URL"
        ));
    }
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: DaemonArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut all = vec!["t", "--git-url", "file:///srv/repo"];
        all.extend_from_slice(args);
        T::try_parse_from(all)
            .map_err(|e| e.to_string())?
            .args
            .into_config()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_issue() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.git.branch, "main");
        assert_eq!(c.poll_interval, Duration::from_secs(60));
        assert_eq!(c.sync_interval, Duration::from_secs(300));
        assert_eq!(c.sync_state, SyncState::Git);
        assert_eq!(c.sync_tag, "tether-sync");
        assert!(c.paths.is_empty());
    }

    #[test]
    fn paths_are_repeatable_and_comma_separated_and_must_stay_inside() {
        let c = parse(&["--git-path", "a,b/", "--git-path", "c"]).unwrap();
        assert_eq!(c.paths, ["a", "b", "c"]);
        assert!(parse(&["--git-path", "../x"]).unwrap_err().contains(".."));
        assert!(parse(&["--git-path", "/abs"])
            .unwrap_err()
            .contains("absolute"));
    }

    #[test]
    fn readonly_forces_secret_state_and_rejects_contradictions() {
        assert_eq!(
            parse(&["--git-readonly"]).unwrap().sync_state,
            SyncState::Secret
        );
        assert!(parse(&["--git-readonly", "--sync-state", "git"])
            .unwrap_err()
            .contains("contradicts"));
        assert!(parse(&["--sync-state", "secret", "--git-sync-tag", "x"]).is_err());
        assert!(parse(&["--git-ssh-key", "/nonexistent"])
            .unwrap_err()
            .contains("only apply to SSH"));
        assert!(parse(&["--no-such-flag"]).is_err());
        assert!(parse(&["--git-poll-interval", "0s"])
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse(&["--sync-name", "Bad_Name"]).is_err());
        assert!(parse(&["--sync-garbage-collection-allow-empty"]).is_err());
        assert_eq!(
            parse(&["--sync-garbage-collection-dry"]).unwrap().gc,
            Gc::DryRun
        );
    }
}
