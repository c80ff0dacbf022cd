//! A port-forward through the Kubernetes API to the agent's pod (what fluxctl did without `--url`): a local
//! listener on 127.0.0.1 whose every connection is a new forward to the pod's API port, open as long as the
//! command runs.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The API port inside the agent's pod (`--listen`'s default, as `tether install` runs it).
const API_PORT: u16 = 3030;

/// A running port-forward; stopped on drop.
pub struct Forward {
    port: u16,
    task: JoinHandle<()>,
}

impl Forward {
    /// Finds a ready pod with `labels` in `namespace` and listens locally for connections to forward to it.
    pub async fn start(namespace: &str, labels: &str) -> anyhow::Result<Forward> {
        let mut config = kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!(
                "no --url, and no Kubernetes client for a port-forward to the agent: {e}"
            )
        })?;
        // Only connecting is bounded: a forwarded call may wait minutes for a sync, and the upgraded
        // connection would be cut by a read timeout.
        config.connect_timeout = Some(Duration::from_secs(30));
        config.read_timeout = None;
        let client = kube::Client::try_from(config)?;
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let list = pods
            .list(&ListParams::default().labels(labels))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot list the agent's pods ({labels}) in namespace {namespace}: {e}"
                )
            })?;
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect();
        // With two replicas only the leader takes changes; it labels its own Pod so.
        let leader = ready.iter().find(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(tether_core::ROLE_LABEL))
                .is_some_and(|r| r == "leader")
        });
        let chosen = leader
            .or_else(|| ready.first())
            .and_then(|p| p.metadata.name.clone());
        let Some(name) = chosen else {
            anyhow::bail!(
                "no ready pod with labels {labels} in namespace {namespace}: is the agent installed there \
                 (--k8s-fwd-ns, --k8s-fwd-labels), or give --url"
            );
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let pods = pods.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let Ok(mut pf) = pods.portforward(&name, &[API_PORT]).await else {
                        return;
                    };
                    if let Some(mut upstream) = pf.take_stream(API_PORT) {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    }
                    let _ = pf.join().await;
                });
            }
        });
        Ok(Forward { port, task })
    }

    /// The local URL of the forwarded API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}
