//! The agent's API (version 1, `docs/api.md`; types in `tether-api`): read the sync state, workloads and
//! images, trigger a sync, change policies and release images. Every call is authenticated with a
//! TokenReview and authorised with a SubjectAccessReview ([`auth`]); changes are commits the agent pushes and
//! then syncs, so Git stays the only source of truth.

pub mod auth;
mod handlers;
pub mod hooks;
mod live;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tether_api::paths;
use tether_automation::Automation;
use tether_render::Renderer;
use tether_source::Repo;
use tokio::sync::Mutex;
use tracing::{info, info_span, Instrument};

use crate::config::Explain;
use crate::control::Control;
use crate::identity::DeployKey;

/// What the handlers work with: the cluster (for live state and the reviews), the clone (for commits),
/// and what the sync loop publishes.
pub struct ApiState {
    /// Authentication and authorisation.
    pub auth: auth::Auth,
    /// The sync loop's published state and request queue.
    pub control: Arc<Control>,
    /// The agent's Kubernetes client.
    pub kube: kube::Client,
    /// The clone shared with the loops.
    pub repo: Arc<Mutex<Repo>>,
    /// The renderer shared with the loops.
    pub renderer: Arc<Renderer>,
    /// Synced paths.
    pub paths: Vec<String>,
    /// Namespace of objects that name none.
    pub default_namespace: String,
    /// The agent's namespace (where `syncs` are authorised).
    pub namespace: String,
    /// The sync name.
    pub sync_name: String,
    /// The repository, without credentials.
    pub source: String,
    /// The branch.
    pub branch: String,
    /// The agent never pushes.
    pub readonly: bool,
    /// Image automation (registry access), when on.
    pub automation: Option<Arc<Automation>>,
    /// The deploy key Secret, when the agent uses one.
    pub deploy_key: Option<DeployKey>,
    /// How long a call waits for the sync it triggered.
    pub sync_wait: Duration,
    /// How failures are described (with the flag to fix).
    pub explain: Explain,
    /// What webhooks are verified against; webhooks are off without it.
    pub webhook_secret: Option<Vec<u8>>,
    /// Whether this replica may write (leader election).
    pub leadership: crate::leader::Leadership,
}

/// An error answer: a status and one line.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(tether_api::ErrorBody { error: self.1 })).into_response()
    }
}

impl From<auth::Denied> for ApiError {
    fn from(d: auth::Denied) -> Self {
        ApiError(d.status, d.message)
    }
}

/// Rows of `list-images` as the API gives them (the CLI's offline form prints the same).
pub fn images_of(
    rows: Vec<tether_automation::ContainerImages>,
) -> Vec<tether_api::ContainerImages> {
    rows.into_iter()
        .map(|r| tether_api::ContainerImages {
            workload: r.workload,
            container: r.container,
            image: r.image,
            automated: r.automated,
            locked: r.locked,
            policy: r.policy,
            candidates: r
                .candidates
                .into_iter()
                .map(|c| tether_api::Candidate {
                    tag: c.tag,
                    created: c.created.map(|t| t.to_rfc3339()),
                    current: c.current,
                })
                .collect(),
            next: r.next,
            error: r.error,
        })
        .collect()
}

/// The router, without a listener, so tests can drive it directly.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            paths::SYNC,
            get(handlers::sync_status).post(handlers::sync_now),
        )
        .route(paths::WORKLOADS, get(handlers::workloads))
        .route(paths::IMAGES, get(handlers::images))
        .route(paths::POLICY, post(handlers::policy))
        .route(paths::RELEASE, post(handlers::release))
        .route(paths::IDENTITY, get(handlers::identity))
        // GitHub sends push payloads of up to 25 MB; axum's default limit is 2 MB. Hooks come unauthenticated
        // until their signature is checked, so few are read at once and none for long.
        .route(
            paths::HOOK_GIT,
            post(hooks::git)
                .layer(axum::extract::DefaultBodyLimit::max(25 << 20))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    hooks::bounded,
                )),
        )
        .route(
            paths::HOOK_REGISTRY,
            post(hooks::registry).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                hooks::bounded,
            )),
        )
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such API path; see docs/api.md (version 1 lives under /api/v1/)".to_owned(),
            )
        })
        .with_state(state)
}

/// Binds `addr` (failing at start, not later) and serves the API in the background.
pub async fn serve(addr: SocketAddr, state: Arc<ApiState>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --listen {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    info!(component = "api", address = %bound, "serving the API (/api/v1/)");
    tokio::spawn(
        crate::http::serve(listener, router(state), crate::http::Limits::API, "api")
            .instrument(info_span!("api")),
    );
    Ok(bound)
}
