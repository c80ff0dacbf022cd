//! The deploy key kept in a Secret in tether's namespace (key `identity`): read at start, generated there
//! when the Secret is absent or empty, so a fresh install has a key to show with `tether identity`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use tether_core::FIELD_MANAGER;
use tether_source::identity::Identity;

/// The Secret's key holding the private key (OpenSSH format).
pub const KEY: &str = "identity";
/// The Secret's key holding the public key, for people reading the Secret.
pub const PUBLIC_KEY: &str = "identity.pub";

/// Where the deploy key lives.
#[derive(Debug, Clone)]
pub struct DeployKey {
    /// tether's namespace.
    pub namespace: String,
    /// The Secret, `tether-git-deploy` by default.
    pub name: String,
}

impl DeployKey {
    /// The stored key; a new one (stored) when the Secret is absent or has none, or when `regenerate`.
    pub async fn get_or_create(
        &self,
        client: &kube::Client,
        regenerate: bool,
    ) -> anyhow::Result<Identity> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        let secret = api.get_opt(&self.name).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the deploy key Secret {}/{}: {e}; tether needs get and patch on it",
                self.namespace,
                self.name
            )
        })?;
        let stored = secret
            .and_then(|s| s.data)
            .and_then(|mut d| d.remove(KEY))
            .filter(|b| !b.0.is_empty());
        if let (Some(bytes), false) = (&stored, regenerate) {
            let text = String::from_utf8_lossy(&bytes.0);
            return Identity::from_openssh(&text)
                .map_err(|e| anyhow::anyhow!("Secret {}/{}: {e}", self.namespace, self.name));
        }
        let id = Identity::generate(&format!("tether@{}", self.namespace))?;
        let private = id.to_openssh()?;
        let mut data = BTreeMap::new();
        data.insert(KEY.to_owned(), ByteString(private.as_bytes().to_vec()));
        data.insert(
            PUBLIC_KEY.to_owned(),
            ByteString(id.public_line().into_bytes()),
        );
        let body = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Default::default()
        };
        api.patch(
            &self.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot store the new deploy key in Secret {}/{}: {e}",
                self.namespace,
                self.name
            )
        })?;
        tracing::info!(component = "identity", secret = %format!("{}/{}", self.namespace, self.name),
            fingerprint = %id.fingerprint(), "generated a deploy key; add its public key to the repository");
        Ok(id)
    }
}
