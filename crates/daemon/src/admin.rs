//! The admin server: `/healthz` (the process runs), `/readyz` (a sync has succeeded) and `/metrics`.
//! It runs beside the loops, so probes and scrapes answer even while a long sync is in progress.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing::{error, info, info_span, Instrument};

/// What the admin endpoints report on.
#[derive(Debug, Default)]
pub struct AdminState {
    /// The metrics.
    pub metrics: Metrics,
    /// Set after the first successful sync.
    pub ready: AtomicBool,
}

/// The router, without a listener, so tests can drive it directly.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful sync yet\n")
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Binds `addr` (failing at start, not later) and serves the admin endpoints in the background.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --listen-metrics {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    info!(component = "admin", address = %bound, "serving /healthz, /readyz and /metrics");
    tokio::spawn(
        async move {
            if let Err(e) = axum::serve(listener, router(state)).await {
                error!(component = "admin", error = %e, "admin server stopped");
            }
        }
        .instrument(info_span!("admin")),
    );
    Ok(bound)
}
