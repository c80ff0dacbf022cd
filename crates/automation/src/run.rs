//! One automation pass: render the branch head, ask registries for each automated container's newest
//! allowed tag, write the changes into a worktree, commit and push — retrying on a moved branch, never
//! forcing. The next sync deploys the commit.

use std::sync::Arc;

use tether_core::ObjectId;
use tether_registry::{Credentials, ImageRef, RegistryClient, TagPolicy};
use tether_source::Repo;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::update::{commit_message, write_updates, ImageUpdate};
use crate::workload::{workloads, Workload};

/// How many times a commit is redone on a branch that moved before the pass gives up (the next pass retries).
const PUSH_ATTEMPTS: usize = 5;

/// Settings of the automation loop.
#[derive(Debug, Clone)]
pub struct AutomationConfig {
    /// `--git-path`s to render.
    pub paths: Vec<String>,
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
    /// Workloads (or containers) that could not be considered, with the reason.
    pub errors: Vec<(ObjectId, String)>,
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
    Update(#[from] crate::update::UpdateError),
    /// The branch kept moving.
    #[error(
        "the branch moved during each of {PUSH_ATTEMPTS} attempts to push; retrying next pass"
    )]
    Contended,
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

    /// Runs one pass.
    pub async fn run_once(&self) -> Result<Pass, Error> {
        let resources = {
            let repo = self.repo.lock().await;
            let head = repo.fetch().await?;
            let wt = repo.worktree("automation", &head).await?;
            tether_render::render(wt.path(), &self.cfg.paths)?
        };
        let candidates: Vec<Workload> = workloads(&resources, &self.cfg.default_namespace)
            .into_iter()
            .filter(Workload::is_automatable)
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
        let (applied, commit) = self.commit(&updates).await?;
        for u in &applied {
            info!(component = "automation", workload = %u.workload, container = %u.container,
                from = %u.from, to = %u.to, "image updated");
        }
        pass.updates = applied;
        pass.commit = commit;
        Ok(pass)
    }

    /// The updates one workload's containers need, or why it could not be considered.
    async fn scan_workload(&self, w: Workload) -> (ObjectId, Result<Vec<ImageUpdate>, String>) {
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
                Err(e) => errors.push(format!("container {}: {e}", c.name)),
            }
        }
        let result = if errors.is_empty() {
            Ok(updates)
        } else {
            Err(errors.join("; "))
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
    ) -> Result<Option<String>, String> {
        let policy: TagPolicy = w.policy(container).map_err(|e| e.to_string())?;
        let current = ImageRef::parse(image).map_err(|e| e.to_string())?;
        if current.digest.is_some() {
            return Ok(None); // pinned by digest: a person chose exactly this image
        }
        let tags = self
            .registry
            .candidates(&current.repo, &policy, creds)
            .await
            .map_err(|e| e.to_string())?;
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
    ) -> Result<(Vec<ImageUpdate>, Option<String>), Error> {
        for _ in 0..PUSH_ATTEMPTS {
            let repo = self.repo.lock().await;
            let head = repo.fetch().await?;
            let wt = repo.worktree("automation", &head).await?;
            let applied = write_updates(wt.path(), updates, &self.cfg.default_namespace)?;
            if applied.is_empty() {
                return Ok((applied, None));
            }
            let Some(commit) = wt.commit_all(&commit_message(&applied)).await? else {
                return Ok((Vec::new(), None));
            };
            match wt.push().await {
                Ok(()) => return Ok((applied, Some(commit))),
                Err(tether_source::Error::Rejected { .. }) => {
                    info!(
                        component = "automation",
                        "the branch moved while pushing; redoing the change on the new head"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended)
    }
}

/// `image` with its tag replaced by `tag`, keeping the repository exactly as written (host, short names).
pub fn retag(image: &str, tag: &str) -> String {
    let name_end = image.rfind('@').unwrap_or(image.len());
    let name = &image[..name_end];
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[last_slash..].find(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    };
    format!("{repo}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::retag;

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
