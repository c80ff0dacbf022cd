//! Install: everything `kubectl apply` needs to run tether in a cluster, rendered offline from a few flags —
//! tether's namespace and ServiceAccount, RBAC with the reason for every rule, the deploy-key Secret the agent
//! fills, a known_hosts ConfigMap, the Deployment and its Service.
//!
//! Nothing here talks to a cluster or reads a file: [`render`] is a pure function of [`Options`], so the
//! output can be reviewed, committed and applied by whoever holds the rights to create it.
//!
//! Rights are the point: Flux v1 installed `*` on `*` plus every non-resource URL. tether's cluster scope
//! lists its verbs, grants no `escalate`, `bind` or `impersonate` and no non-resource URL; its namespace scope
//! grants Roles in the allowed namespaces only. Each rule carries its reason as a comment above it in the
//! YAML ([`Manifest::to_yaml`]), not as an annotation, so it reads where it is reviewed and costs nothing
//! in the cluster.

mod known_hosts;
mod rbac;
mod workload;
mod yaml;

use serde_json::{json, Value};
use tether_source::GitUrl;

pub use workload::{CACHE_DIR, KNOWN_HOSTS_PATH};

/// Where tether's image is published; the default tag is this crate's version.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/tether-dev/tether";

/// The deploy-key Secret the agent fills on its first start (key `identity`).
pub const DEPLOY_KEY_SECRET: &str = "tether-git-deploy";

/// The ConfigMap holding the agent's `known_hosts` (key `known_hosts`).
pub const KNOWN_HOSTS_CONFIGMAP: &str = "tether-known-hosts";

/// The name of the ServiceAccount, Deployment and Service in tether's namespace.
pub const NAME: &str = "tether";

/// The default image: [`IMAGE_REPOSITORY`] at this release.
pub fn default_image() -> String {
    format!("{IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// What the agent may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Any kind in any namespace, with explicit verbs (the default).
    #[default]
    Cluster,
    /// Only inside the allowed namespaces, through a Role in each.
    Namespace,
}

/// The flags of `tether install`, validated by [`render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--git-url`.
    pub git_url: String,
    /// `--git-branch`.
    pub git_branch: String,
    /// `--git-path`, in order.
    pub git_paths: Vec<String>,
    /// `--namespace`: tether's own namespace.
    pub namespace: String,
    /// `--git-readonly`.
    pub git_readonly: bool,
    /// `--manifest-generation`.
    pub manifest_generation: bool,
    /// `--scope`.
    pub scope: Scope,
    /// `--k8s-allow-namespace`, in order.
    pub allow_namespaces: Vec<String>,
    /// The content of `--git-known-hosts FILE`; `None` for the keys GitHub, GitLab and Bitbucket publish.
    pub known_hosts: Option<String>,
    /// `--image`; `None` for [`default_image`].
    pub image: Option<String>,
}

impl Options {
    /// The defaults of every flag but `--git-url`.
    pub fn new(git_url: impl Into<String>) -> Options {
        Options {
            git_url: git_url.into(),
            git_branch: "main".into(),
            git_paths: Vec::new(),
            namespace: NAME.into(),
            git_readonly: false,
            manifest_generation: false,
            scope: Scope::Cluster,
            allow_namespaces: Vec::new(),
            known_hosts: None,
            image: None,
        }
    }
}

/// A flag value `tether install` refuses; each names the flag to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// `--git-url` is not a URL git and tether understand (the message names the flag).
    #[error("{0}")]
    GitUrl(String),
    /// `--git-branch` is empty, has spaces or looks like a flag.
    #[error("--git-branch '{0}' is not a branch name")]
    Branch(String),
    /// A `--git-path` leaves the repository.
    #[error("--git-path '{path}' {reason}")]
    Path {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `--namespace` is not a valid namespace name.
    #[error("--namespace '{0}' is not a namespace name: {LABEL_RULE}")]
    Namespace(String),
    /// A `--k8s-allow-namespace` is not a valid namespace name.
    #[error("--k8s-allow-namespace '{0}' is not a namespace name: {LABEL_RULE}")]
    AllowNamespace(String),
    /// `--scope namespace` without any namespace to grant.
    #[error(
        "--scope namespace needs at least one --k8s-allow-namespace NS: the namespaces tether may sync into \
         (each gets a Role); or use --scope cluster"
    )]
    NoAllowedNamespace,
    /// `--image` is empty or has spaces.
    #[error("--image '{0}' is not an image reference")]
    Image(String),
    /// The `--git-known-hosts` file holds no host key line (or holds a private key).
    #[error(
        "--git-known-hosts: the file holds no known_hosts lines (`host key-type base64-key`), or holds a \
         private key; give the file ssh-keyscan or your Git host documents"
    )]
    KnownHosts,
}

const LABEL_RULE: &str =
    "1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit";

/// One object to apply, with the comments its YAML carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The object.
    pub object: Value,
    comments: yaml::Comments,
}

impl Manifest {
    fn new(object: Value) -> Manifest {
        Manifest {
            object,
            comments: yaml::Comments::new(),
        }
    }

    /// Adds a comment above the node at JSON pointer `at` (`""`: above the document).
    fn comment(mut self, at: &str, text: impl Into<String>) -> Manifest {
        self.comments.insert(at.to_owned(), text.into());
        self
    }

    /// The comment above the node at JSON pointer `at`, if any.
    pub fn comment_at(&self, at: &str) -> Option<&str> {
        self.comments.get(at).map(String::as_str)
    }

    /// The object's kind.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The object's namespace (none for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }

    /// The object as one YAML document (without `---`), comments in place.
    pub fn to_yaml(&self) -> String {
        yaml::document(&self.object, &self.comments)
    }

    /// `NN-kind-name.yaml`, numbered in apply order with `width` digits, so `kubectl apply -f DIR` (which
    /// reads a directory in name order) applies the Namespace before what lives in it.
    pub fn file_name(&self, index: usize, width: usize) -> String {
        // The number also keeps apart objects of one kind and name in different namespaces (the Roles).
        format!(
            "{index:0width$}-{}-{}.yaml",
            self.kind().to_ascii_lowercase(),
            self.name()
        )
    }
}

/// The manifests as one multi-document YAML stream.
pub fn to_yaml(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&m.to_yaml());
    }
    out
}

/// The digits [`Manifest::file_name`] needs for `count` files (at least two).
pub fn index_width(count: usize) -> usize {
    count.to_string().len().max(2)
}

/// The objects to apply, in apply order, as plain JSON.
pub fn manifests(options: &Options) -> Result<Vec<Value>, InstallError> {
    Ok(render(options)?.into_iter().map(|m| m.object).collect())
}

/// The objects to apply, in apply order, with their comments: Namespace, ServiceAccount, RBAC, the deploy-key
/// Secret, the known_hosts ConfigMap, the Deployment and the Service.
pub fn render(options: &Options) -> Result<Vec<Manifest>, InstallError> {
    let o = validate(options)?;
    let mut out = vec![
        Manifest::new(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": o.namespace, "labels": labels(&o.namespace)},
        }))
        .comment(
            "",
            "tether's own namespace: its deploy key, sync state and garbage-collection inventory live here.",
        ),
        Manifest::new(json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": o.namespace, "labels": labels(&o.namespace)},
        }))
        .comment("", "The identity the agent acts as: it has exactly the rights bound below."),
    ];
    out.extend(rbac::objects(&o));
    out.push(
        Manifest::new(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": DEPLOY_KEY_SECRET, "namespace": o.namespace, "labels": labels(&o.namespace)},
            "type": "Opaque",
        }))
        .comment(
            "",
            format!(
                "The deploy key. Empty on purpose: the agent generates an ed25519 key here (key `identity`) on\n\
                 its first start, so the private key never leaves the cluster. `tether identity -n {ns}` prints\n\
                 the public key: add it to the repository {access}.\n\
                 Applying this file again keeps the key: the agent, not kubectl, owns its data.",
                ns = o.namespace,
                access = if o.git_readonly {
                    "as a deploy key (read-only is enough with --git-readonly)"
                } else {
                    "as a deploy key with write access (for the sync tag)"
                },
            ),
        ),
    );
    out.push(
        Manifest::new(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": KNOWN_HOSTS_CONFIGMAP, "namespace": o.namespace, "labels": labels(&o.namespace)},
            "data": {"known_hosts": o.known_hosts},
        }))
        .comment(
            "",
            "The SSH host keys the agent trusts; ssh refuses any host that is not listed, and any changed key.",
        ),
    );
    out.push(workload::deployment(&o));
    out.push(workload::service(&o));
    Ok(out)
}

/// The options after validation, defaults filled in.
struct Valid {
    git_url: GitUrl,
    git_branch: String,
    git_paths: Vec<String>,
    namespace: String,
    git_readonly: bool,
    manifest_generation: bool,
    scope: Scope,
    allow_namespaces: Vec<String>,
    known_hosts: String,
    image: String,
}

fn validate(o: &Options) -> Result<Valid, InstallError> {
    let git_url = GitUrl::parse(&o.git_url).map_err(InstallError::GitUrl)?;
    let branch = o.git_branch.trim();
    if branch.is_empty() || branch.starts_with('-') || branch.contains(char::is_whitespace) {
        return Err(InstallError::Branch(o.git_branch.clone()));
    }
    let mut git_paths = Vec::new();
    for raw in &o.git_paths {
        let p = raw.trim().trim_end_matches('/');
        let bad = |reason| InstallError::Path {
            path: raw.clone(),
            reason,
        };
        if p.starts_with('/') {
            return Err(bad(
                "is absolute; give it relative to the repository's root",
            ));
        }
        if p.split('/').any(|c| c == "..") {
            return Err(bad("leaves the repository (`..`)"));
        }
        // The daemon splits --git-path at commas, so one path cannot hold one.
        if p.contains(',') {
            return Err(bad("holds a comma, which separates paths"));
        }
        if !p.is_empty() && p != "." && !git_paths.iter().any(|q| q == p) {
            git_paths.push(p.to_owned());
        }
    }
    if !tether_core::id::is_dns_label(&o.namespace) {
        return Err(InstallError::Namespace(o.namespace.clone()));
    }
    let mut allow_namespaces: Vec<String> = Vec::new();
    for ns in &o.allow_namespaces {
        if !tether_core::id::is_dns_label(ns) {
            return Err(InstallError::AllowNamespace(ns.clone()));
        }
        if !allow_namespaces.contains(ns) {
            allow_namespaces.push(ns.clone());
        }
    }
    if o.scope == Scope::Namespace && allow_namespaces.is_empty() {
        return Err(InstallError::NoAllowedNamespace);
    }
    let known_hosts = match &o.known_hosts {
        Some(text) => {
            known_hosts::check(text)?;
            text.clone()
        }
        None => known_hosts::published(),
    };
    let image = match &o.image {
        Some(i) if i.trim().is_empty() || i.contains(char::is_whitespace) => {
            return Err(InstallError::Image(i.clone()))
        }
        Some(i) => i.clone(),
        None => default_image(),
    };
    Ok(Valid {
        git_url,
        git_branch: branch.to_owned(),
        git_paths,
        namespace: o.namespace.clone(),
        git_readonly: o.git_readonly,
        manifest_generation: o.manifest_generation,
        scope: o.scope,
        allow_namespaces,
        known_hosts,
        image,
    })
}

/// Every object carries these: they select the pod, and find (and remove) one install's cluster-scoped
/// objects among another's.
fn labels(namespace: &str) -> Value {
    json!({"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": namespace})
}

#[cfg(test)]
mod tests;
