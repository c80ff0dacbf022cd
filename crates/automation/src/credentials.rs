//! Pull credentials of a workload, as the kubelet would use them: the pod template's imagePullSecrets and
//! its ServiceAccount's, read from the cluster, plus a docker config file as the fallback.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use tether_registry::Credentials;
use tracing::warn;

use crate::workload::Workload;

/// Collects the credentials for one workload. Missing or unreadable Secrets are logged and skipped: the
/// registry then answers 401 and that error names the Secret to fix.
pub async fn for_workload(
    client: &kube::Client,
    w: &Workload,
    fallback: &Credentials,
) -> Credentials {
    let ns = w.id.namespace.as_deref().unwrap_or("default");
    let mut names = w.pull_secrets.clone();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    match sas.get_opt(&w.service_account).await {
        Ok(Some(sa)) => names.extend(
            sa.image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name),
        ),
        Ok(None) => {}
        Err(e) => warn!(component = "automation", workload = %w.id, error = %e,
            "cannot read the ServiceAccount {ns}/{}; its imagePullSecrets are not used", w.service_account),
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut creds = Credentials::anonymous();
    for name in names {
        let source = format!("imagePullSecret {ns}/{name}");
        match secrets.get_opt(&name).await {
            Ok(Some(s)) => {
                let data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                match Credentials::parse_secret(s.type_.as_deref().unwrap_or(""), &data, &source) {
                    Ok(c) => {
                        creds.merge(&c);
                    }
                    Err(e) => {
                        warn!(component = "automation", workload = %w.id, error = %e, "unusable image pull secret")
                    }
                }
            }
            Ok(None) => {
                warn!(component = "automation", workload = %w.id, "{source} does not exist")
            }
            Err(e) => {
                warn!(component = "automation", workload = %w.id, error = %e, "cannot read {source}")
            }
        }
    }
    creds.merge(fallback);
    creds
}
