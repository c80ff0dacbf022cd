//! The sync marker.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tether_core::FIELD_MANAGER;
use tether_source::Repo;

/// Annotation on the state Secret holding the last applied revision (Flux v1 used `flux.weave.works/sync-hwm`).
pub const HWM_ANNOTATION: &str = "tether.dev/sync-hwm";

/// Where the marker lives.
#[derive(Debug, Clone)]
pub enum Marker {
    /// An annotated tag in the Git repository.
    GitTag {
        /// The tag name (`--git-sync-tag`).
        tag: String,
    },
    /// An annotation on a Secret.
    Secret {
        /// tether's namespace.
        namespace: String,
        /// The Secret's name (`--k8s-secret-name`).
        name: String,
    },
}

/// The marker could not be read or moved. The sync itself was applied; the next sync retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Pushing or reading the tag failed.
    #[error(transparent)]
    Git(#[from] tether_source::Error),
    /// Reading or writing the Secret failed.
    #[error("cannot record the sync state in Secret {namespace}/{name}: {source}; tether needs get, create and patch on it")]
    Secret {
        /// tether's namespace.
        namespace: String,
        /// The state Secret.
        name: String,
        /// What the API server or the client said.
        #[source]
        source: kube::Error,
    },
}

impl Marker {
    /// The revision last recorded, if any.
    pub async fn read(&self, repo: &Repo, client: &kube::Client) -> Result<Option<String>, Error> {
        match self {
            Marker::GitTag { tag } => Ok(repo.tag_target(tag).await?),
            Marker::Secret { namespace, name } => {
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let secret = api
                    .get_opt(name)
                    .await
                    .map_err(|source| self.secret_error(source))?;
                Ok(secret
                    .and_then(|s| s.metadata.annotations)
                    .and_then(|mut a| a.remove(HWM_ANNOTATION)))
            }
        }
    }

    /// Moves the marker to `revision`. Returns whether anything was written.
    pub async fn write(
        &self,
        revision: &str,
        repo: &Repo,
        client: &kube::Client,
    ) -> Result<bool, Error> {
        match self {
            Marker::GitTag { tag } => Ok(repo.move_tag(tag, revision, "Sync pointer").await?),
            Marker::Secret { namespace, name } => {
                if self.read(repo, client).await?.as_deref() == Some(revision) {
                    return Ok(false);
                }
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let body = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": namespace, "annotations": {HWM_ANNOTATION: revision}},
                });
                let secret: Secret = serde_json::from_value(body.clone())
                    .map_err(|e| self.secret_error(kube::Error::SerdeError(e)))?;
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        api.patch(
                            name,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&body),
                        )
                        .await
                        .map_err(|source| self.secret_error(source))?;
                    }
                    Err(source) => return Err(self.secret_error(source)),
                }
                Ok(true)
            }
        }
    }

    fn secret_error(&self, source: kube::Error) -> Error {
        let (namespace, name) = match self {
            Marker::Secret { namespace, name } => (namespace.clone(), name.clone()),
            Marker::GitTag { tag } => (String::new(), tag.clone()),
        };
        Error::Secret {
            namespace,
            name,
            source,
        }
    }
}
