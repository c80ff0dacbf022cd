//! One automation pass: render the branch head, ask registries for each automated container's newest
//! allowed tag, write the changes into a worktree, commit and push — retrying on a moved branch, never
//! forcing. The next sync deploys the commit.

use std::sync::Arc;

use tether_core::ObjectId;
use tether_registry::{Credentials, ImageRef, RegistryClient, TagPolicy};
use tether_render::{Snapshot, SnapshotError};
use tether_source::Repo;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::update::{commit_message, ImageUpdate};
use crate::workload::{workloads, Workload};
use crate::writeback::WriteError;

use crate::change::PUSH_ATTEMPTS;

/// Settings of the automation loop.
#[derive(Debug, Clone)]
pub struct AutomationConfig {
    /// Paths to render.
    pub paths: Vec<String>,
    /// Renders the tree (shared with the sync, so both use one kustomize cache).
    pub renderer: Arc<tether_render::Renderer>,
    /// Namespace of workloads that name none.
    pub default_namespace: String,
    /// Credentials from `--docker-config`, used after the workload's own.
    pub docker_config: Credentials,
}

/// What a pass found and did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Updates that were committed.
    pub updates: Vec<ImageUpdate>,
    /// The pushed commit.
    pub commit: Option<String>,
    /// Workloads that could not be considered, with why.
    pub errors: Vec<(ObjectId, WorkloadError)>,
}

impl Pass {
    /// The stable label of the first failure, for metrics; `None` when every workload was checked.
    pub fn failure_label(&self) -> Option<&'static str> {
        self.errors.first().map(|(_, e)| e.label())
    }
}

/// Why one container of a workload could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Its tag policy annotation is unusable.
    #[error("container {container}: {source}")]
    Policy {
        /// The container.
        container: String,
        /// What is wrong with the annotation.
        source: tether_registry::policy::PolicyError,
    },
    /// Its image reference does not parse.
    #[error("container {container}: {source}")]
    Image {
        /// The container.
        container: String,
        /// What is wrong with the reference.
        source: tether_registry::ReferenceError,
    },
    /// The registry could not be asked.
    #[error("container {container}: {source}")]
    Registry {
        /// The container.
        container: String,
        /// What the registry client reported.
        source: tether_registry::Error,
    },
    /// A newer image was found but could not be written into Git where the workload keeps it.
    #[error("{0}")]
    Write(#[source] crate::writeback::WriteError),
}

impl ContainerError {
    /// A short stable label for logs and metrics: `policy`, `image_reference`, or the registry error's own
    /// (`rate_limited`, `unauthorized`, ...).
    pub fn label(&self) -> &'static str {
        match self {
            ContainerError::Policy { .. } => "policy",
            ContainerError::Image { .. } => "image_reference",
            ContainerError::Registry { source, .. } => source.label(),
            ContainerError::Write(_) => "write",
        }
    }
}

/// Why a workload could not be checked: one error per container that failed (at least one).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct WorkloadError(pub Vec<ContainerError>);

impl WorkloadError {
    /// The label of its first container's failure.
    pub fn label(&self) -> &'static str {
        self.0.first().map_or("workload", ContainerError::label)
    }
}

/// A pass failed as a whole (git, or the manifests do not render).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fetching, committing or pushing failed.
    #[error(transparent)]
    Source(#[from] tether_source::Error),
    /// The branch head does not render.
    #[error(transparent)]
    Render(#[from] tether_render::Error),
    /// Writing an update failed.
    #[error(transparent)]
    Update(#[from] crate::writeback::WriteError),
    /// The branch kept moving.
    #[error(
        "the branch moved during each of {PUSH_ATTEMPTS} attempts to push; retrying next pass"
    )]
    Contended,
}

impl From<SnapshotError> for Error {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Source(e) => Error::Source(e),
            SnapshotError::Render(e) => Error::Render(e),
        }
    }
}

impl Error {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Source(e) => e.label(),
            Error::Render(_) => "render",
            Error::Update(_) => "update",
            Error::Contended => "contended",
        }
    }
}

/// The automation loop's state: registry client (with its cache), cluster client for credentials, the clone.
pub struct Automation {
    registry: RegistryClient,
    kube: kube::Client,
    repo: Arc<Mutex<Repo>>,
    cfg: AutomationConfig,
}

impl Automation {
    /// Builds the loop's state.
    pub fn new(
        registry: RegistryClient,
        kube: kube::Client,
        repo: Arc<Mutex<Repo>>,
        cfg: AutomationConfig,
    ) -> Self {
        Automation {
            registry,
            kube,
            repo,
            cfg,
        }
    }

    /// Runs one pass over every automated workload.
    pub async fn run_once(&self) -> Result<Pass, Error> {
        self.run_pass(None).await
    }

    /// Runs one pass over the automated workloads with a container running one of `only` (all of them
    /// when `None`): a registry said it has new tags there.
    pub async fn run_pass(
        &self,
        only: Option<&std::collections::BTreeSet<tether_registry::ImageRepo>>,
    ) -> Result<Pass, Error> {
        let snapshot = Snapshot::head(
            &*self.repo.lock().await,
            &self.cfg.paths,
            &self.cfg.renderer,
        )
        .await?;
        let candidates: Vec<Workload> = workloads(&snapshot.resources, &self.cfg.default_namespace)
            .into_iter()
            .filter(Workload::is_automatable)
            .filter(|w| {
                only.is_none_or(|repos| {
                    w.containers
                        .iter()
                        .any(|c| ImageRef::parse(&c.image).is_ok_and(|r| repos.contains(&r.repo)))
                })
            })
            .collect();
        let mut pass = Pass::default();
        // Bounded by the registry client's own per-host limits; a few workloads at once keep it busy.
        let permits = tokio::sync::Semaphore::new(4);
        let results = futures::future::join_all(candidates.into_iter().map(|w| async {
            let _permit = permits.acquire().await;
            self.scan_workload(w).await
        }))
        .await;
        let mut updates = Vec::new();
        for (id, r) in results {
            match r {
                Ok(u) => updates.extend(u),
                Err(e) => {
                    warn!(component = "automation", workload = %id, error = %e, "workload skipped");
                    pass.errors.push((id, e));
                }
            }
        }
        if updates.is_empty() {
            return Ok(pass);
        }
        updates.sort_by(|a, b| {
            (&a.file, &a.workload, &a.container).cmp(&(&b.file, &b.workload, &b.container))
        });
        let (applied, commit, refused) = self.commit(&updates).await?;
        for (id, e) in refused {
            pass.errors
                .push((id, WorkloadError(vec![ContainerError::Write(e)])));
        }
        for u in &applied {
            info!(component = "automation", workload = %u.workload, container = %u.container,
                from = %u.from, to = %u.to, "image updated");
        }
        pass.updates = applied;
        pass.commit = commit;
        Ok(pass)
    }

    /// Per container of `workloads`, the newest `limit` candidates its policy allows, asked with each
    /// workload's own pull credentials (the agent's `list-images`).
    pub async fn images(
        &self,
        workloads: &[Workload],
        limit: usize,
    ) -> Vec<crate::list::ContainerImages> {
        let mut out = Vec::new();
        for w in workloads {
            let creds =
                crate::credentials::for_workload(&self.kube, w, &self.cfg.docker_config).await;
            let one = std::slice::from_ref(w);
            out.extend(crate::list::list_images(&self.registry, one, None, limit, &creds).await);
        }
        out
    }

    /// The updates one workload's containers need (each to the newest tag its policy allows), or why it
    /// could not be considered.
    pub async fn scan_workload(
        &self,
        w: Workload,
    ) -> (ObjectId, Result<Vec<ImageUpdate>, WorkloadError>) {
        let creds = crate::credentials::for_workload(&self.kube, &w, &self.cfg.docker_config).await;
        let mut updates = Vec::new();
        let mut errors = Vec::new();
        for c in &w.containers {
            match self.newest_for(&w, &c.name, &c.image, &creds).await {
                Ok(Some(to)) => updates.push(ImageUpdate {
                    workload: w.id.clone(),
                    file: w.source.file.clone(),
                    container: c.name.clone(),
                    from: c.image.clone(),
                    to,
                }),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        let result = if errors.is_empty() {
            Ok(updates)
        } else {
            Err(WorkloadError(errors))
        };
        (w.id, result)
    }

    /// The image to move a container to, if its policy allows a newer tag than the one in Git.
    async fn newest_for(
        &self,
        w: &Workload,
        container: &str,
        image: &str,
        creds: &Credentials,
    ) -> Result<Option<String>, ContainerError> {
        let container_name = || container.to_owned();
        let policy: TagPolicy = w
            .policy(container)
            .map_err(|source| ContainerError::Policy {
                container: container_name(),
                source,
            })?;
        let current = ImageRef::parse(image).map_err(|source| ContainerError::Image {
            container: container_name(),
            source,
        })?;
        if current.digest.is_some() {
            return Ok(None); // pinned by digest: a person chose exactly this image
        }
        let tags = self
            .registry
            .candidates(&current.repo, &policy, creds)
            .await
            .map_err(|source| ContainerError::Registry {
                container: container_name(),
                source,
            })?;
        let Some(newest) = policy.newest(&tags) else {
            return Ok(None);
        };
        if current.tag.as_deref() == Some(newest.tag.as_str()) {
            return Ok(None);
        }
        Ok(Some(retag(image, &newest.tag)))
    }

    /// Writes, commits and pushes `updates` on the current branch head; on a moved branch, fetches and redoes.
    async fn commit(
        &self,
        updates: &[ImageUpdate],
    ) -> Result<
        (
            Vec<ImageUpdate>,
            Option<String>,
            Vec<(ObjectId, WriteError)>,
        ),
        Error,
    > {
        let repo = self.repo.lock().await;
        let at = crate::writeback::Paths {
            paths: &self.cfg.paths,
            renderer: &self.cfg.renderer,
            default_namespace: &self.cfg.default_namespace,
        };
        let done = crate::release::commit(&repo, at, updates, commit_message).await?;
        for (id, e) in &done.refused {
            warn!(component = "automation", workload = %id, error = %e, "not updated");
        }
        Ok((done.applied, done.commit, done.refused))
    }
}

/// `image` with its tag replaced by `tag`, keeping the repository exactly as written (host, short names).
pub fn retag(image: &str, tag: &str) -> String {
    format!("{}:{tag}", split_tag(image).0)
}

/// `image` split into its repository as written and its tag (`None` without one); a registry port is not a
/// tag, and a digest is dropped.
pub fn split_tag(image: &str) -> (&str, Option<&str>) {
    let name_end = image.find('@').unwrap_or(image.len());
    let name = &image[..name_end];
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].find(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::{retag, split_tag};

    #[test]
    fn tags_split_off_without_taking_a_registry_port() {
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:1.2"),
            ("127.0.0.1:5000/a/b", Some("1.2"))
        );
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", None)
        );
        assert_eq!(split_tag("app:1@sha256:abc"), ("app", Some("1")));
    }

    #[test]
    fn retag_keeps_the_repository_as_written() {
        assert_eq!(retag("nginx:1.0", "1.1"), "nginx:1.1");
        assert_eq!(retag("nginx", "1.1"), "nginx:1.1");
        assert_eq!(
            retag("127.0.0.1:5000/team/app:1.4.0", "1.4.9"),
            "127.0.0.1:5000/team/app:1.4.9"
        );
        assert_eq!(retag("localhost:5000/app", "2"), "localhost:5000/app:2");
    }
}

#[cfg(test)]
mod send_checks {
    use super::*;

    // Never run: fails to compile if the pass stops being spawnable.
    #[allow(dead_code)]
    fn pass_is_send(a: &'static Automation, w: Workload, c: &'static Credentials) {
        fn is_send<T: Send>(_: T) {}
        is_send(a.scan_workload(w.clone()));
        is_send(a.newest_for(&w, "c", "i", c));
        is_send(a.commit(&[]));
        is_send(a.run_once());
    }
}
