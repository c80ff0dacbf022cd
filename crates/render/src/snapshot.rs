//! A commit's desired state, read the one way every command reads it: check the revision out of the local
//! clone, then render the configured paths. The sync, image automation and `list-images` all start here.

use tether_core::Resource;
use tether_source::Repo;

use crate::Renderer;

/// The resources one revision renders to.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The commit.
    pub revision: String,
    /// Every object under the paths, in a stable order, with its file and line.
    pub resources: Vec<Resource>,
}

/// Reading a revision failed: git could not produce the tree, or the tree does not render.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Fetching or checking out failed.
    #[error(transparent)]
    Source(#[from] tether_source::Error),
    /// The manifests are invalid.
    #[error(transparent)]
    Render(#[from] crate::Error),
}

impl Snapshot {
    /// Checks `revision` out of `repo` and renders `paths` (the whole tree when empty). The caller holds the
    /// clone for the duration: the checkout is shared.
    pub async fn read(
        repo: &Repo,
        revision: &str,
        paths: &[String],
        renderer: &Renderer,
    ) -> Result<Snapshot, SnapshotError> {
        let mut resources = Vec::new();
        Self::read_each(repo, revision, paths, renderer, &mut |unit| {
            resources.extend(unit)
        })
        .await?;
        Ok(Snapshot {
            revision: revision.to_owned(),
            resources,
        })
    }

    /// [`Snapshot::read`], handing over each render unit's objects as they are rendered
    /// ([`Renderer::render_each`]).
    pub async fn read_each(
        repo: &Repo,
        revision: &str,
        paths: &[String],
        renderer: &Renderer,
        emit: &mut (dyn FnMut(Vec<Resource>) + Send),
    ) -> Result<(), SnapshotError> {
        let tree = repo.checkout(revision).await?;
        // Rendering reads files and may run kustomize or generators for a while: off the async workers, so
        // probes, metrics and the other loop keep being served meanwhile.
        let mut render = || renderer.render_each(tree, paths, emit);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(render)
            }
            _ => render(),
        }?;
        Ok(())
    }

    /// Fetches the branch and reads its head.
    pub async fn head(
        repo: &Repo,
        paths: &[String],
        renderer: &Renderer,
    ) -> Result<Snapshot, SnapshotError> {
        let head = repo.fetch().await?;
        Self::read(repo, &head, paths, renderer).await
    }
}
