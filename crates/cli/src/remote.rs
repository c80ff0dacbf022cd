//! Talking to a running agent: where it is (`--url`, or a port-forward through the Kubernetes API to its
//! pod, as fluxctl did), who the caller is (`--token`, else the current kubeconfig context's token) and the
//! namespace `kind/name` workloads are in.

use std::time::Duration;

use clap::Args;
use kube::config::Kubeconfig;
use secrecy::ExposeSecret;
use tether_core::ObjectId;

/// How to reach the agent; flags shared by every command that calls its API.
#[derive(Clone, Args)]
pub struct Connect {
    /// The agent's API, e.g. http://127.0.0.1:3030 [default: a port-forward to the agent's pod].
    #[arg(long, env = "TETHER_URL")]
    pub url: Option<String>,
    /// Bearer token for the agent [default: the current kubeconfig context's token].
    #[arg(long, env = "TETHER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Namespace of the agent's pod for the port-forward.
    #[arg(long, default_value = "tether")]
    pub k8s_fwd_ns: String,
    /// Labels of the agent's pod for the port-forward.
    #[arg(long, default_value = "app.kubernetes.io/name=tether")]
    pub k8s_fwd_labels: String,
    /// Limit for the whole call (a sync or release waits for the agent to deploy; the agent itself gives
    /// up after twice its --sync-timeout).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Connect")
            .field("url", &self.url)
            .field("k8s_fwd_ns", &self.k8s_fwd_ns)
            .field("k8s_fwd_labels", &self.k8s_fwd_labels)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A connected client, and the namespace of the current kubeconfig context.
pub struct Session {
    /// The API client.
    pub client: tether_api::Client,
    /// The namespace `kind/name` workloads are in without `-n`.
    pub namespace: String,
    /// Keeps the port-forward open.
    _forward: Option<crate::forward::Forward>,
}

/// The kubeconfig context's namespace and token, when it has them.
fn context() -> (Option<String>, Option<String>) {
    let Ok(kc) = Kubeconfig::read() else {
        return (None, None);
    };
    let Some(current) = kc.current_context.as_deref() else {
        return (None, None);
    };
    let Some(ctx) = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
    else {
        return (None, None);
    };
    let token = ctx
        .user
        .as_deref()
        .and_then(|u| kc.auth_infos.iter().find(|a| a.name == u))
        .and_then(|a| a.auth_info.as_ref())
        .and_then(|a| {
            a.token
                .as_ref()
                .map(|t| t.expose_secret().to_owned())
                .or_else(|| {
                    a.token_file
                        .as_ref()
                        .and_then(|f| std::fs::read_to_string(f).ok())
                        .map(|t| t.trim().to_owned())
                })
        });
    (ctx.namespace.clone(), token)
}

impl Connect {
    /// Connects: the URL (or a new port-forward), the token, the default namespace.
    pub async fn session(&self) -> anyhow::Result<Session> {
        let (namespace, context_token) = context();
        let Some(token) = self.token.clone().or(context_token) else {
            anyhow::bail!(
                "no token for the agent: give --token or TETHER_TOKEN (e.g. `kubectl create token <account>`); \
                 the current kubeconfig context has no token (client certificates, exec plugins and auth providers are not \
                 read: the agent checks bearer tokens only)"
            );
        };
        let (url, forward) = match &self.url {
            Some(u) => (u.clone(), None),
            None => {
                let f =
                    crate::forward::Forward::start(&self.k8s_fwd_ns, &self.k8s_fwd_labels).await?;
                (f.url(), Some(f))
            }
        };
        Ok(Session {
            client: tether_api::Client::new(&url, &token, self.timeout)?,
            namespace: namespace.unwrap_or_else(|| "default".to_owned()),
            _forward: forward,
        })
    }
}

/// A workload given as `namespace:kind/name`, or `kind/name` in `namespace`.
pub fn workload(given: &str, namespace: &str) -> anyhow::Result<ObjectId> {
    let full = if given.contains(':') {
        given.to_owned()
    } else {
        format!("{namespace}:{given}")
    };
    ObjectId::parse(&full).map_err(|e| anyhow::anyhow!("--workload {given}: {e}"))
}

/// Prints an error of a call, with what to do, and gives the exit code.
pub fn failed(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!(
        "tether: {}",
        crate::advice::with_advice(e.as_ref(), format!("{e:#}"))
    );
    std::process::ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_without_a_namespace_take_the_given_one() {
        assert_eq!(
            workload("deployment/echov", "demo").unwrap().to_string(),
            "demo:deployment/echov"
        );
        assert_eq!(
            workload("b:deployment/x", "demo").unwrap().to_string(),
            "b:deployment/x"
        );
        assert!(workload("echov", "demo").is_err());
    }
}
