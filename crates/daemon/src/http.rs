//! Serving HTTP to clients that may be hostile or merely stalled. `axum::serve` sets no timer, so hyper
//! applies no header-read timeout: a client that opens a connection and sends half a request line holds a
//! socket and its buffer forever, and enough of them exhaust the agent's file descriptors or memory while
//! `/healthz` stops answering and the kubelet restarts the agent. Here every connection must send a whole
//! request head within [`Limits::header_read`] (the same timer closes keep-alive connections left idle),
//! and at most [`Limits::connections`] are served at once; more wait in the listen backlog.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// How much one server gives its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Time a client has to send a request head, from connecting or from the last response.
    pub header_read: Duration,
}

impl Limits {
    /// The API and webhooks: the CLI, CI jobs and Git hosts, a few at a time each.
    pub const API: Limits = Limits {
        connections: 256,
        header_read: Duration::from_secs(10),
    };
    /// `/healthz`, `/readyz` and `/metrics`: the kubelet and a scraper or two.
    pub const ADMIN: Limits = Limits {
        connections: 64,
        header_read: Duration::from_secs(10),
    };
}

/// Serves `router` on `listener` until the process ends; `component` names the server in logs.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, component: &'static str) {
    let slots = Arc::new(Semaphore::new(limits.connections.max(1)));
    loop {
        // Closed only if dropped, which this loop never does.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be given back.
                warn!(component, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(component, peer = %peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", get(|| async { "ok" }));
        tokio::spawn(serve(listener, router, limits, "test"));
        addr
    }

    async fn get_healthz(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_client_that_stalls_in_its_request_head_is_cut_off_and_others_are_served() {
        let limits = Limits {
            connections: 4,
            header_read: Duration::from_millis(300),
        };
        let addr = start(limits).await;
        // As many stalled clients as there are slots: half a request each, then nothing.
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost:")
                .await
                .unwrap();
            stalled.push(s);
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), get_healthz(addr))
            .await
            .expect("a stalled client kept /healthz from answering");
        assert!(answer.ends_with("ok"), "{answer}");
        for mut s in stalled {
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "a stalled connection was kept open");
        }
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let addr = start(Limits {
            connections: 4,
            header_read: Duration::from_millis(300),
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "an idle connection was kept open");
        assert!(String::from_utf8_lossy(&rest).ends_with("ok"));
    }
}
