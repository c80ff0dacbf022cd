//! Garbage collection: deletes objects this sync applied before and Git no longer has — and nothing else.

use std::collections::BTreeSet;

use futures::{stream, StreamExt};
use kube::api::DeleteParams;
use serde_json::Value;
use tether_core::{Kind, ObjectId, ObjectRef};
use tether_plan::gc::{blocks_namespace_deletion, judge, Prune};
use tether_plan::SYNC_LABEL;
use tracing::{debug, info, warn};

use crate::discovery::Kinds;
use crate::engine::{list_key, Engine};
use crate::error::Error;

/// What garbage collection did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Deleted by this sync.
    pub deleted: Vec<ObjectRef>,
    /// Would have been deleted (dry-run mode).
    pub would_delete: Vec<ObjectRef>,
    /// Kept on purpose, with the reason; retried on the next sync.
    pub kept: Vec<(ObjectRef, String)>,
    /// Deletions that failed; retried on the next sync.
    pub failed: Vec<(ObjectRef, String)>,
    /// Kept because the live object says `ignore`; looked at again at every sync, so removing the
    /// annotation lets it be collected.
    pub exempt: Vec<ObjectRef>,
    /// No longer this sync's (its label or owner mark was changed by someone): left alone and forgotten.
    pub released: Vec<ObjectRef>,
}

impl PruneReport {
    /// Candidates that must stay in the inventory so the next sync looks at them again.
    pub fn retained(&self) -> impl Iterator<Item = &ObjectRef> {
        self.would_delete
            .iter()
            .chain(self.kept.iter().map(|(r, _)| r))
            .chain(self.failed.iter().map(|(r, _)| r))
            .chain(&self.exempt)
    }

    /// Candidates gone from Git that were not deleted, for whatever reason.
    pub fn not_deleted(&self) -> usize {
        self.kept.len() + self.failed.len() + self.exempt.len() + self.released.len()
    }
}

impl Engine {
    /// Every object in the cluster that carries sync `sync_name`'s label, whatever the inventory says: what a
    /// sync that died before recording its inventory (killed, timed out, failed after its first write) may
    /// have left. Lists each listable kind by label (in `namespaces` only, when restricted; cluster-scoped
    /// kinds only when not), metadata only. A kind that cannot be listed is skipped and named in the log.
    pub async fn owned(
        &self,
        sync_name: &str,
        namespaces: &tether_plan::NamespaceFilter,
    ) -> Result<Vec<ObjectRef>, Error> {
        let kinds = Kinds::discover(self.client()).await?;
        let mut lists: Vec<(Kind, Option<String>)> = Vec::new();
        for k in kinds.namespaced_listable() {
            if namespaces.0.is_empty() {
                lists.push((k.clone(), None));
            } else {
                lists.extend(namespaces.0.iter().map(|ns| (k.clone(), Some(ns.clone()))));
            }
        }
        if namespaces.0.is_empty() {
            lists.extend(kinds.cluster_listable().map(|k| (k.clone(), None)));
        }
        let params = kube::api::ListParams::default()
            .labels(&format!("{SYNC_LABEL}={sync_name}"))
            .limit(500);
        let params = &params;
        let found: Vec<Vec<ObjectRef>> = stream::iter(lists)
            .map(|(kind, ns)| async move {
                let api = self.api(&kind, ns.as_deref());
                let mut out = Vec::new();
                let mut page = params.clone();
                loop {
                    let list = match api.list_metadata(&page).await {
                        Ok(l) => l,
                        Err(e) => {
                            debug!(component = "gc", kind = %kind.plural, error = %e,
                                "cannot list this kind when looking for objects this sync owns");
                            return out;
                        }
                    };
                    let next = list.metadata.continue_.clone().filter(|c| !c.is_empty());
                    out.extend(list.items.into_iter().filter_map(|o| {
                        Some(ObjectRef {
                            id: ObjectId {
                                namespace: o.metadata.namespace.clone(),
                                group: kind.group.clone(),
                                kind: kind.kind.clone(),
                                name: o.metadata.name.clone()?,
                            },
                            kind: kind.clone(),
                        })
                    }));
                    match next {
                        Some(token) => page = params.clone().continue_token(&token),
                        None => return out,
                    }
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut out: Vec<ObjectRef> = found.into_iter().flatten().collect();
        out.sort();
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// Deletes the `candidates` (in the order given: reverse apply order) that are still live and carry this
    /// sync's ownership mark. `keep` is everything the current commit renders: a Namespace that still holds
    /// such objects, or objects tether does not own, is kept and reported.
    ///
    /// # Guarantees
    /// Objects without this sync's label *and* matching owner mark, and objects with `ignore: "true"` or
    /// `"sync_only"` on the live object, are never deleted. With `dry_run` nothing is deleted.
    pub async fn prune(
        &self,
        candidates: Vec<ObjectRef>,
        keep: &BTreeSet<ObjectId>,
        sync_name: &str,
        dry_run: bool,
    ) -> Result<PruneReport, Error> {
        let mut report = PruneReport::default();
        if candidates.is_empty() {
            return Ok(report);
        }
        // Decide every candidate first (GETs in parallel), then delete in order.
        let lives: Vec<(ObjectRef, Result<Option<Value>, String>)> = stream::iter(candidates)
            .map(|c| async move {
                let live = self.get(&c).await;
                (c, live)
            })
            .buffered(16)
            .collect()
            .await;
        let mut doomed: Vec<ObjectRef> = Vec::new();
        for (c, live) in lives {
            let live = match live {
                Ok(l) => l,
                Err(e) => {
                    report.failed.push((c, e));
                    continue;
                }
            };
            match judge(&c, live.as_ref(), sync_name) {
                Prune::Gone => {}
                Prune::NotOwned => {
                    info!(component = "gc", object = %c.id,
                        "not deleting: gone from Git but not marked as applied by this sync");
                    report.released.push(c);
                }
                Prune::Exempt => {
                    info!(component = "gc", object = %c.id,
                        "not deleting: ignore annotation on the live object");
                    report.exempt.push(c);
                }
                Prune::Delete => doomed.push(c),
            }
        }
        let doomed_ids: BTreeSet<ObjectId> = doomed.iter().map(|c| c.id.clone()).collect();
        let kinds = if doomed.iter().any(|c| c.kind.is_namespace()) {
            Some(Kinds::discover(self.client()).await?)
        } else {
            None
        };
        for c in doomed {
            if let Some(kinds) = kinds.as_ref().filter(|_| c.kind.is_namespace()) {
                let blockers = self
                    .namespace_blockers(kinds, &c.id.name, keep, &doomed_ids)
                    .await?;
                if !blockers.is_empty() {
                    let reason = format!(
                        "namespace still holds objects tether does not own or Git still has: {}",
                        blockers.join(", ")
                    );
                    warn!(component = "gc", object = %c.id, "not deleting: {reason}");
                    report.kept.push((c, reason));
                    continue;
                }
            }
            if dry_run {
                info!(component = "gc", object = %c.id, "would delete (dry run)");
                report.would_delete.push(c);
                continue;
            }
            match self
                .api(&c.kind, c.id.namespace.as_deref())
                .delete(&c.id.name, &DeleteParams::background())
                .await
            {
                Ok(_) => {
                    info!(component = "gc", object = %c.id, action = "deleted");
                    report.deleted.push(c);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    warn!(component = "gc", object = %c.id, error = %e, "deletion failed; retrying next sync");
                    report.failed.push((c, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    async fn get(&self, c: &ObjectRef) -> Result<Option<Value>, String> {
        match self
            .api(&c.kind, c.id.namespace.as_deref())
            .get_opt(&c.id.name)
            .await
        {
            Ok(Some(o)) => serde_json::to_value(o).map(Some).map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            // The kind itself is gone (its CRD was deleted): so is the object.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Objects in `namespace` that must keep it alive: unowned ones, and ones Git still renders. Kinds that
    /// cannot be listed (RBAC, a broken aggregated API) fail the check rather than hide objects.
    async fn namespace_blockers(
        &self,
        kinds: &Kinds,
        namespace: &str,
        keep: &BTreeSet<ObjectId>,
        doomed: &BTreeSet<ObjectId>,
    ) -> Result<Vec<String>, Error> {
        let groups = kinds
            .namespaced_listable()
            .map(|k| {
                (
                    list_key(k, Some(namespace)),
                    (k.clone(), Some(namespace.to_owned())),
                )
            })
            .collect();
        let mut out: Vec<String> = self
            .list_groups(groups, None, &|id, v| Some((id, v)))
            .await?
            .into_iter()
            .filter(|(id, v)| {
                keep.contains(id)
                    || (!doomed.contains(id) && blocks_namespace_deletion(&id.kind, v))
            })
            .map(|(id, _)| id.to_string())
            .collect();
        out.sort();
        Ok(out)
    }
}
