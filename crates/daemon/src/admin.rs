//! The admin server: `/healthz` (the loop comes round), `/readyz` (a sync has succeeded) and `/metrics`.
//! It runs beside the loops, so probes and scrapes answer even while a long sync is in progress.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing::{info, info_span, Instrument};

/// What the admin endpoints report on.
#[derive(Debug)]
pub struct AdminState {
    /// The metrics.
    pub metrics: Metrics,
    /// Set after the first successful sync.
    pub ready: AtomicBool,
    /// When the state was made.
    started: Instant,
    /// Milliseconds after `started` the loop last came round.
    alive_at_ms: AtomicU64,
    /// How long the loop may go without coming round before `/healthz` fails.
    stuck_after: Duration,
}

impl Default for AdminState {
    fn default() -> Self {
        AdminState::new(Duration::from_secs(u64::from(u32::MAX)))
    }
}

impl AdminState {
    /// A state whose `/healthz` fails once the loop has not come round for `stuck_after`.
    pub fn new(stuck_after: Duration) -> Self {
        AdminState {
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            alive_at_ms: AtomicU64::new(0),
            stuck_after,
        }
    }

    /// The loop came round.
    pub fn alive(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.alive_at_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the loop last came round.
    fn silent_for(&self) -> Duration {
        let at = Duration::from_millis(self.alive_at_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(at)
    }
}

/// The router, without a listener, so tests can drive it directly.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let silent = s.silent_for();
    if silent > s.stuck_after {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stuck: the sync loop has not come round for {} s (limit {} s)\n",
                silent.as_secs(),
                s.stuck_after.as_secs()
            ),
        )
    } else {
        (StatusCode::OK, "ok\n".to_owned())
    }
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
        crate::http::serve(listener, router(state), crate::http::Limits::ADMIN, "admin")
            .instrument(info_span!("admin")),
    );
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_fails_once_the_loop_stops_coming_round() {
        let s = AdminState::new(Duration::from_millis(50));
        s.alive();
        assert!(s.silent_for() <= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            s.silent_for() > s.stuck_after,
            "a silent loop still looks alive"
        );
        s.alive();
        assert!(s.silent_for() <= s.stuck_after);
    }
}
