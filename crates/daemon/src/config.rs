//! The daemon's settled configuration. The `tether` binary owns the flags and builds this from them.

use std::path::PathBuf;
use std::time::Duration;

use tether_plan::gc::Mode as Gc;
use tether_plan::NamespaceFilter;
use tether_source::GitConfig;

/// Where the sync marker is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// An annotated tag in the repository (needs write access).
    Git,
    /// An annotation on a Secret in tether's namespace.
    Secret,
}

/// Describes an error on one line with what to do about it. The binary supplies it, since the advice
/// names its flags; the daemon uses it for every failure it logs.
pub type Explain = fn(&(dyn std::error::Error + 'static)) -> String;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// logfmt (`key=value`).
    Fmt,
    /// One JSON object per line.
    Json,
}

/// A settled, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// One sync, then exit.
    pub once: bool,
    /// The git source.
    pub git: GitConfig,
    /// Paths to render.
    pub paths: Vec<String>,
    /// How kustomization directories are built.
    pub render: tether_render::RenderConfig,
    /// Fetch period.
    pub poll_interval: Duration,
    /// Full re-sync period.
    pub sync_interval: Duration,
    /// Never push.
    pub readonly: bool,
    /// Marker kind.
    pub sync_state: SyncState,
    /// Tag name in git mode.
    pub sync_tag: String,
    /// Owner name.
    pub sync_name: String,
    /// Take over objects another sync name applied.
    pub takeover: bool,
    /// Allowed namespaces.
    pub namespaces: NamespaceFilter,
    /// Default namespace override.
    pub default_namespace: Option<String>,
    /// State Secret name.
    pub secret_name: String,
    /// The Secret in tether's namespace holding the deploy key, used for SSH URLs without an explicit key.
    pub deploy_key: Option<String>,
    /// tether's namespace override.
    pub namespace: Option<String>,
    /// Garbage collection mode.
    pub gc: Gc,
    /// Let GC empty the cluster when Git renders nothing.
    pub gc_allow_empty: bool,
    /// Cache root.
    pub cache_dir: PathBuf,
    /// Apply parallelism.
    pub concurrency: usize,
    /// Limit for one request to the Kubernetes API (connect, send, and wait for the answer).
    pub k8s_timeout: Duration,
    /// Limit for one whole sync (fetch, render, apply, record); a sync over it fails and the marker stays.
    pub sync_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Image automation, unless read-only or disabled.
    pub automation: Option<AutomationSettings>,
    /// Admin server address.
    pub listen_metrics: std::net::SocketAddr,
    /// API address.
    pub listen: std::net::SocketAddr,
    /// Leader election among replicas, when on.
    pub leader: Option<crate::leader::Settings>,
    /// Where notifications go, when anywhere.
    pub notify: Option<crate::notify::Settings>,
    /// What webhooks are verified against (`--webhook-secret-file`); webhooks are off without it.
    pub webhook_secret: Option<Secret>,
    /// How failures are described in the log.
    pub explain: Explain,
}

/// A secret read from a file; its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Settings of image automation.
#[derive(Debug, Clone)]
pub struct AutomationSettings {
    /// Pass period.
    pub interval: Duration,
    /// The registry client's settings.
    pub registry: tether_registry::ClientConfig,
    /// Credentials from `--docker-config`.
    pub docker_config: tether_registry::Credentials,
}
