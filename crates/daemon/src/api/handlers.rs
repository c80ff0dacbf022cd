//! One function per call. Each authenticates first, authorises what it is about to read or change, and
//! answers with `tether-api`'s types; a change is logged with who asked for it.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tether_api::{
    ChangeResult, ContainerStatus, Identity, ImageList, Policies, PolicyRequest, ReleaseItem,
    ReleaseRequest, ReleaseResult, Resource, Skipped, SyncRecord, SyncStatus, Verb, WorkloadList,
    WorkloadStatus,
};
use tether_automation::change::{self, PolicyUpdate};
use tether_automation::release::{self, Targets};
use tether_automation::{ImageUpdate, Workload};
use tether_core::policy::{self, names};
use tether_core::ObjectId;
use tracing::info;

use super::auth::User;
use super::{live, ApiError, ApiState};

type St = State<Arc<ApiState>>;

/// The authenticated caller. An extractor, so that it runs before a handler's body is read: a caller
/// without a valid token gets its 401 without the agent buffering and parsing what it sent.
pub struct Caller(pub User);

impl axum::extract::FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(Caller(s.auth.authenticate(header).await?))
    }
}

/// Whether `user` may `verb` this agent's sync (read its state, trigger it): `syncs` named after the sync
/// in the agent's namespace.
async fn may_sync(s: &ApiState, user: &User, verb: Verb) -> Result<(), ApiError> {
    Ok(s.auth
        .authorize(user, verb, Resource::Syncs, &s.namespace, &s.sync_name)
        .await?)
}

/// The name a workload is authorised under: `kind/name`, as in its id.
fn authz_name(id: &ObjectId) -> String {
    format!("{}/{}", id.kind.to_ascii_lowercase(), id.name)
}

fn namespace_of(id: &ObjectId) -> &str {
    id.namespace.as_deref().unwrap_or_default()
}

fn bad_request(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

fn parse_id(s: &str, what: &str) -> Result<ObjectId, ApiError> {
    ObjectId::parse(s).map_err(|e| bad_request(format!("{what}: {e}")))
}

/// `GET /api/v1/sync`.
pub async fn sync_status(State(s): St, Caller(user): Caller) -> Result<Json<SyncStatus>, ApiError> {
    may_sync(&s, &user, Verb::Get).await?;
    let p = s.control.published();
    Ok(Json(SyncStatus {
        sync_name: s.sync_name.clone(),
        source: s.source.clone(),
        branch: s.branch.clone(),
        applied: p.applied,
        applied_commit: p.applied_commit,
        history: p.history.into(),
    }))
}

/// `POST /api/v1/sync`: fetch and apply now, also when the branch head has not moved (so hand-made drift is
/// repaired), answered when that sync ended.
pub async fn sync_now(State(s): St, Caller(user): Caller) -> Result<Json<SyncRecord>, ApiError> {
    may_sync(&s, &user, Verb::Update).await?;
    leading(&s)?;
    info!(component = "api", user = %user.name, "sync requested");
    Ok(Json(synced(&s).await?))
}

/// Runs a sync through the loop and waits for it.
async fn synced(s: &ApiState) -> Result<SyncRecord, ApiError> {
    let Some(record) = s.control.sync_now(s.sync_wait).await else {
        // Dropped because this replica stopped leading (then that is the answer), or the wait ran out.
        leading(s)?;
        return Err(ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the sync did not end within {} s; `tether sync` again, or look at the agent's log",
                s.sync_wait.as_secs()
            ),
        ));
    };
    Ok(record)
}

/// Query of the list calls.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    namespace: Option<String>,
    container: Option<String>,
    workload: Option<String>,
    limit: Option<usize>,
}

/// The workloads of the last applied commit that `user` may list: in `namespace` only (403 when not
/// allowed there), or in every namespace they may read.
async fn visible<'a>(
    s: &ApiState,
    user: &User,
    workloads: &'a [Workload],
    namespace: Option<&str>,
) -> Result<Vec<&'a Workload>, ApiError> {
    let namespaces: BTreeSet<&str> = match namespace {
        Some(ns) => [ns].into(),
        None => workloads.iter().map(|w| namespace_of(&w.id)).collect(),
    };
    let mut allowed = BTreeSet::new();
    for ns in namespaces {
        match s
            .auth
            .authorize(user, Verb::List, Resource::Workloads, ns, "")
            .await
        {
            Ok(()) => {
                allowed.insert(ns);
            }
            Err(d) if d.status == StatusCode::FORBIDDEN && namespace.is_none() => {}
            Err(d) => return Err(d.into()),
        }
    }
    Ok(workloads
        .iter()
        .filter(|w| allowed.contains(namespace_of(&w.id)))
        .collect())
}

/// `GET /api/v1/workloads`.
pub async fn workloads(
    State(s): St,
    Caller(user): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<WorkloadList>, ApiError> {
    let p = s.control.published();
    let mut shown = visible(&s, &user, &p.workloads, q.namespace.as_deref()).await?;
    if let Some(c) = &q.container {
        shown.retain(|w| w.containers.iter().any(|x| &x.name == c));
    }
    let live = live::objects(&s.kube, &s.sync_name, &shown)
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::BAD_GATEWAY,
                format!("cannot read the live workloads from the cluster: {e}"),
            )
        })?;
    let items = shown
        .iter()
        .map(|w| {
            let object = live.get(&w.id);
            let running = object.map(live::images).unwrap_or_default();
            WorkloadStatus {
                id: w.id.to_string(),
                namespace: namespace_of(&w.id).to_owned(),
                source: w.source.to_string(),
                containers: w
                    .containers
                    .iter()
                    .filter(|c| q.container.as_ref().is_none_or(|x| x == &c.name))
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        running: running.get(&c.name).cloned(),
                        git: c.image.clone(),
                    })
                    .collect(),
                rollout: live::rollout(object),
                policies: policies(w),
                error: p.object_errors.get(&w.id.to_string()).cloned(),
            }
        })
        .collect();
    Ok(Json(WorkloadList {
        items,
        revision: p.applied,
    }))
}

fn policies(w: &Workload) -> Policies {
    let a = w.annotations();
    Policies {
        automated: w.automated(),
        locked: w.locked(),
        locked_user: policy::get(a, names::LOCKED_USER).map(str::to_owned),
        locked_msg: policy::get(a, names::LOCKED_MSG).map(str::to_owned),
        ignore: w.ignored(),
        tags: tether_automation::policy::container_policies(a)
            .into_iter()
            .map(|p| {
                let value = a.get(&p.annotation).unwrap_or_default().to_owned();
                (p.container, value)
            })
            .collect(),
    }
}

/// `GET /api/v1/images`.
pub async fn images(
    State(s): St,
    Caller(user): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<ImageList>, ApiError> {
    // Authorised first: whether scanning is on is not news to someone who may not list anything.
    let p = s.control.published();
    visible(&s, &user, &p.workloads, q.namespace.as_deref()).await?;
    let Some(automation) = &s.automation else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "the agent does not scan registries (--registry-disable-scanning or --git-readonly); use \
             `tether list-images --git-url …` on your machine instead"
                .to_owned(),
        ));
    };
    let only = q
        .workload
        .as_deref()
        .map(|w| parse_id(w, "workload"))
        .transpose()?;
    let namespace = q
        .namespace
        .as_deref()
        .or_else(|| only.as_ref().and_then(|o| o.namespace.as_deref()));
    let shown: Vec<Workload> = visible(&s, &user, &p.workloads, namespace)
        .await?
        .into_iter()
        .filter(|w| only.as_ref().is_none_or(|o| o.matches(&w.id)))
        .cloned()
        .collect();
    let rows = automation.images(&shown, q.limit.unwrap_or(10)).await;
    let items = super::images_of(rows);
    Ok(Json(ImageList { items }))
}

/// Only the leader syncs and commits; a standby replica says who does.
fn leading(s: &ApiState) -> Result<(), ApiError> {
    let st = s.leadership.state();
    if st.leader {
        return Ok(());
    }
    Err(ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "this replica is standing by; the leader ({}) syncs and commits: retry (the Service routes to \
             ready replicas)",
            st.holder.as_deref().unwrap_or("not elected yet")
        ),
    ))
}

fn writable(s: &ApiState) -> Result<(), ApiError> {
    leading(s)?;
    if s.readonly {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "the agent runs with --git-readonly and never pushes; change the manifests in Git instead"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Maps a failed change to an answer that says what to do.
fn change_error(s: &ApiState, e: &tether_automation::run::Error) -> ApiError {
    use tether_automation::run::Error as E;
    use tether_automation::writeback::WriteError as W;
    let status = match e {
        E::Update(W::NoWorkload(_)) => StatusCode::NOT_FOUND,
        E::Update(_) | E::Render(_) => StatusCode::UNPROCESSABLE_ENTITY,
        E::Contended => StatusCode::CONFLICT,
        E::Source(_) => StatusCode::BAD_GATEWAY,
    };
    ApiError(status, (s.explain)(e))
}

/// `POST /api/v1/policy`.
pub async fn policy(
    State(s): St,
    Caller(user): Caller,
    Json(req): Json<PolicyRequest>,
) -> Result<Json<ChangeResult>, ApiError> {
    let id = parse_id(&req.workload, "workload")?;
    s.auth
        .authorize(
            &user,
            Verb::Update,
            Resource::Workloads,
            namespace_of(&id),
            &authz_name(&id),
        )
        .await?;
    writable(&s)?;
    let updates = policy_updates(&req);
    if updates.is_empty() {
        return Err(bad_request(
            "nothing to change: give automate, lock, tags or tagAll",
        ));
    }
    let (subject, commit) = {
        let repo = s.repo.lock().await;
        change::apply_policy(
            &repo,
            paths_of(&s),
            &id,
            &updates,
            change::Asked {
                message: req.message.as_deref(),
                user: req.user.as_deref(),
                authenticated: Some(&user.name),
            },
        )
        .await
        .map_err(|e| change_error(&s, &e))?
    };
    info!(component = "api", user = %user.name, workload = %id, requested_by = req.user.as_deref().unwrap_or(""),
        commit = commit.as_deref().unwrap_or("none"), "{subject}");
    let synced = match commit {
        // Pushed: the answer names the commit even when deploying it could not be waited for.
        Some(_) => synced(&s).await.ok(),
        None => None,
    };
    Ok(Json(ChangeResult {
        subject,
        commit,
        synced,
    }))
}

fn paths_of(s: &ApiState) -> change::Paths<'_> {
    change::Paths {
        paths: &s.paths,
        renderer: &s.renderer,
        default_namespace: &s.default_namespace,
    }
}

fn policy_updates(req: &PolicyRequest) -> Vec<PolicyUpdate> {
    let mut out = Vec::new();
    match req.automate {
        Some(true) => out.push(PolicyUpdate::Automate),
        Some(false) => out.push(PolicyUpdate::Deautomate),
        None => {}
    }
    match req.lock {
        Some(true) => out.push(PolicyUpdate::Lock {
            message: req.message.clone(),
            user: req.user.clone(),
        }),
        Some(false) => out.push(PolicyUpdate::Unlock),
        None => {}
    }
    for t in &req.tags {
        out.push(PolicyUpdate::Tag {
            container: t.container.clone(),
            pattern: t.pattern.clone(),
        });
    }
    if let Some(p) = &req.tag_all {
        out.push(PolicyUpdate::Tag {
            container: String::new(),
            pattern: p.clone(),
        });
    }
    out
}

/// Workloads a release may name (or exclude).
const MAX_NAMED: usize = 1000;

/// `POST /api/v1/release`.
pub async fn release(
    State(s): St,
    Caller(user): Caller,
    Json(req): Json<ReleaseRequest>,
) -> Result<Json<ReleaseResult>, ApiError> {
    // Exactly one of the two.
    if req.all != req.workloads.is_empty() {
        return Err(bad_request("give workloads or all, not both or neither"));
    }
    if req.image.is_some() == req.all_images {
        return Err(bad_request("give image or allImages, not both or neither"));
    }
    // Each named workload costs a SubjectAccessReview: a body of 2 MB could name tens of thousands.
    if req.workloads.len() > MAX_NAMED || req.exclude.len() > MAX_NAMED {
        return Err(bad_request(format!(
            "at most {MAX_NAMED} workloads may be named (and excluded); release all of them instead"
        )));
    }
    let targets = if req.all {
        Targets::All
    } else {
        Targets::Only(
            req.workloads
                .iter()
                .map(|w| parse_id(w, "workload"))
                .collect::<Result<_, _>>()?,
        )
    };
    let exclude = req
        .exclude
        .iter()
        .map(|w| parse_id(w, "exclude"))
        .collect::<Result<_, _>>()?;
    let head = {
        let repo = s.repo.lock().await;
        tether_render::Snapshot::head(&repo, &s.paths, &s.renderer)
            .await
            .map_err(|e| change_error(&s, &e.into()))?
    };
    let mut all = tether_automation::workloads(&head.resources, &s.default_namespace);
    // Every workload a release touches must be the caller's to change. With `all`, the others are left
    // out before anything is decided (and not named: the caller may not even read them), so a team can
    // release "everything of ours"; a named one the caller may not change is refused.
    let mut hidden = 0;
    if req.all {
        let mut allowed = Vec::new();
        for w in all {
            match s
                .auth
                .authorize(
                    &user,
                    Verb::Update,
                    Resource::Workloads,
                    namespace_of(&w.id),
                    &authz_name(&w.id),
                )
                .await
            {
                Ok(()) => allowed.push(w),
                Err(d) if d.status == StatusCode::FORBIDDEN => hidden += 1,
                Err(d) => return Err(d.into()),
            }
        }
        all = allowed;
    } else if let Targets::Only(ids) = &targets {
        for id in ids {
            s.auth
                .authorize(
                    &user,
                    Verb::Update,
                    Resource::Workloads,
                    namespace_of(id),
                    &authz_name(id),
                )
                .await?;
        }
    }
    if !req.dry_run {
        writable(&s)?;
    }
    let request = release::Request {
        targets,
        exclude,
        force: req.force,
    };
    let (mine, mut skipped) =
        release::select(&all, &request).map_err(|m| ApiError(StatusCode::NOT_FOUND, m))?;
    if hidden > 0 {
        info!(component = "api", user = %user.name, count = hidden,
            "release --all left out workloads the caller may not change");
    }
    let updates = match &req.image {
        Some(image) => {
            let (u, skip) = release::set_image(&mine, image, req.force).map_err(bad_request)?;
            skipped.extend(skip);
            u
        }
        None => latest(&s, &mine, &mut skipped).await?,
    };
    let subject = release::subject(req.image.as_deref(), &updates);
    let mut result = ReleaseResult {
        plan: updates.iter().map(item).collect(),
        skipped: Vec::new(),
        subject: subject.clone(),
        commit: None,
        synced: None,
    };
    if !req.dry_run && !updates.is_empty() {
        let image = req.image.clone();
        let committed = {
            let repo = s.repo.lock().await;
            release::commit(&repo, paths_of(&s), &updates, |applied| {
                change::commit_message(
                    &release::subject(image.as_deref(), applied),
                    change::Asked {
                        message: req.message.as_deref(),
                        user: req.user.as_deref(),
                        authenticated: Some(&user.name),
                    },
                )
            })
            .await
            .map_err(|e| change_error(&s, &e))?
        };
        for (id, e) in &committed.refused {
            skipped.push(release::Skip {
                workload: id.clone(),
                container: None,
                reason: (s.explain)(e),
            });
        }
        result.plan = committed.applied.iter().map(item).collect();
        result.subject = release::subject(req.image.as_deref(), &committed.applied);
        result.commit = committed.commit;
        info!(component = "api", user = %user.name, requested_by = req.user.as_deref().unwrap_or(""),
            commit = result.commit.as_deref().unwrap_or("none"), "{}", result.subject);
        if result.commit.is_some() {
            result.synced = synced(&s).await.ok();
        }
    }
    result.skipped = skipped
        .into_iter()
        .map(|k| Skipped {
            workload: k.workload.to_string(),
            container: k.container,
            reason: k.reason,
        })
        .collect();
    Ok(Json(result))
}

fn item(u: &ImageUpdate) -> ReleaseItem {
    ReleaseItem {
        workload: u.workload.to_string(),
        container: u.container.clone(),
        from: u.from.clone(),
        to: u.to.clone(),
    }
}

/// Each container of `workloads` to the newest tag its filter allows (asks the registries).
async fn latest(
    s: &ApiState,
    workloads: &[&Workload],
    skipped: &mut Vec<release::Skip>,
) -> Result<Vec<ImageUpdate>, ApiError> {
    let Some(automation) = &s.automation else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "releasing the latest images needs registry scanning, which is off \
             (--registry-disable-scanning); release one image with --update-image instead"
                .to_owned(),
        ));
    };
    let mut out = Vec::new();
    for w in workloads {
        let (id, result) = automation.scan_workload((*w).clone()).await;
        match result {
            Ok(u) => out.extend(u),
            Err(e) => {
                for c in e.0 {
                    skipped.push(release::Skip {
                        workload: id.clone(),
                        container: None,
                        reason: (s.explain)(&c),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `GET /api/v1/identity`: the public half of the deploy key, to who may read the sync.
pub async fn identity(State(s): St, Caller(user): Caller) -> Result<Json<Identity>, ApiError> {
    may_sync(&s, &user, Verb::Get).await?;
    let Some(key) = &s.deploy_key else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "the agent uses no deploy key of its own (--git-ssh-key is set, or the URL is not SSH)"
                .to_owned(),
        ));
    };
    let id = key
        .get_or_create(&s.kube, false)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    Ok(Json(Identity {
        public_key: id.public_line(),
        fingerprint: id.fingerprint(),
    }))
}
