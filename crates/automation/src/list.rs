//! `tether list-images`: per container, the image in Git and the newest candidates its policy allows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tether_core::ObjectId;
use tether_registry::{Credentials, ImageRef, RegistryClient};

use crate::workload::Workload;

/// One container's view.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerImages {
    /// The workload.
    pub workload: String,
    /// `automated` and not locked or ignored.
    pub automated: bool,
    /// `locked: "true"`.
    pub locked: bool,
    /// The container.
    pub container: String,
    /// The image in Git.
    pub image: String,
    /// The tag policy (`glob:*` when none is set).
    pub policy: String,
    /// Newest candidates first.
    pub candidates: Vec<Candidate>,
    /// The tag automation would move to, if it differs from the current one.
    pub next: Option<String>,
    /// Why candidates could not be listed.
    pub error: Option<String>,
}

/// One candidate tag.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The tag.
    pub tag: String,
    /// When the image was built, when the policy needed it.
    pub created: Option<DateTime<Utc>>,
    /// The tag in Git now.
    pub current: bool,
}

/// Lists the newest `limit` candidates of every container of `workloads` (optionally only `only`).
pub async fn list_images(
    registry: &RegistryClient,
    workloads: &[Workload],
    only: Option<&ObjectId>,
    limit: usize,
    creds: &Credentials,
) -> Vec<ContainerImages> {
    let mut out = Vec::new();
    for w in workloads
        .iter()
        .filter(|w| only.is_none_or(|o| o.matches(&w.id)))
    {
        for c in &w.containers {
            let mut row = ContainerImages {
                workload: w.id.to_string(),
                automated: w.is_automatable(),
                locked: w.locked(),
                container: c.name.clone(),
                image: c.image.clone(),
                policy: String::new(),
                candidates: Vec::new(),
                next: None,
                error: None,
            };
            let result = async {
                let policy = w.policy(&c.name).map_err(|e| e.to_string())?;
                row.policy = policy.to_string();
                let current = ImageRef::parse(&c.image).map_err(|e| e.to_string())?;
                let newest = registry
                    .newest(&current.repo, &policy, creds, limit)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(first) = newest.first() {
                    if current.tag.as_deref() != Some(first.tag.as_str())
                        && current.digest.is_none()
                    {
                        row.next = Some(first.tag.clone());
                    }
                }
                row.candidates = newest
                    .iter()
                    .map(|d| Candidate {
                        tag: d.tag.clone(),
                        created: d.created(),
                        current: current.tag.as_deref() == Some(d.tag.as_str()),
                    })
                    .collect();
                Ok::<(), String>(())
            }
            .await;
            row.error = result.err();
            out.push(row);
        }
    }
    out
}
