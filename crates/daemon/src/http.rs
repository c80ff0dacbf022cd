//! Serving HTTP to clients that may be hostile or merely stalled. `axum::serve` sets no timer, so hyper
//! applies no header-read timeout: a client that opens a connection and sends half a request line holds a
//! socket and its buffer forever, and enough of them exhaust the agent's file descriptors or memory while
//! `/healthz` stops answering and the kubelet restarts the agent. Here every connection must send a whole
//! request head within [`Limits::header_read`] (the same timer closes keep-alive connections left idle),
//! one address may hold at most [`Limits::per_peer`] connections (more are closed at once, so one client
//! cannot take the slots the kubelet's probes need), and at most [`Limits::connections`] are served at
//! once; more wait in the listen backlog.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
    /// Connections one address may hold at once.
    pub per_peer: usize,
    /// Time a client has to send a request head, from connecting or from the last response.
    pub header_read: Duration,
}

impl Limits {
    /// The API and webhooks: the CLI, CI jobs and Git hosts, a few at a time each.
    pub const API: Limits = Limits {
        connections: 1024,
        per_peer: 32,
        header_read: Duration::from_secs(10),
    };
    /// `/healthz`, `/readyz` and `/metrics`: the kubelet and a scraper or two.
    pub const ADMIN: Limits = Limits {
        connections: 256,
        per_peer: 16,
        header_read: Duration::from_secs(10),
    };
}

/// Serves `router` on `listener` until the process ends; `component` names the server in logs.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, component: &'static str) {
    let slots = Arc::new(Semaphore::new(limits.connections.max(1)));
    let peers = Arc::new(Peers::default());
    loop {
        // Closed only if dropped, which this loop never does.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // The client gave up before it was accepted: nothing to say.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be given back.
                warn!(component, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(held) = peers.enter(peer.ip(), limits.per_peer) else {
            debug!(component, peer = %peer, "too many connections from one address: closed");
            drop(stream);
            continue;
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
            drop((held, slot));
        });
    }
}

/// Connections held per address.
#[derive(Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// One connection of an address, given back on drop.
struct Held(Arc<Peers>, IpAddr);

impl Peers {
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Held> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(Held(self.clone(), ip))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.1);
            }
        }
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

    /// `n` clients that each send half a request line, then nothing.
    async fn stall(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
        let mut stalled = Vec::new();
        for _ in 0..n {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost:")
                .await
                .unwrap();
            stalled.push(s);
        }
        stalled
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
            per_peer: 4,
            header_read: Duration::from_millis(300),
        };
        let addr = start(limits).await;
        // As many stalled clients as there are slots.
        let stalled = stall(addr, 4).await;
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
            per_peer: 4,
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

    #[tokio::test]
    async fn one_address_cannot_take_the_slots_another_needs() {
        let addr = start(Limits {
            connections: 64,
            per_peer: 4,
            header_read: Duration::from_secs(30),
        })
        .await;
        let stalled = stall(addr, 4).await;
        // A fifth from the same address is closed at once (long before the 30 s header timeout).
        let mut fifth = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), fifth.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a fifth connection of one address was kept");
        // Another address (all of 127/8 is loopback) is served at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), other.read_to_string(&mut answer))
            .await
            .expect("another address was not served")
            .unwrap();
        assert!(answer.ends_with("ok"), "{answer}");
        drop(stalled);
    }
}
