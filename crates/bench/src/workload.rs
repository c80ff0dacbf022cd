//! The generated repository: N objects of a realistic mix (Namespaces, ConfigMaps, Secrets, Services and
//! Deployments across up to 20 namespaces), as a Flux v1 config repo would hold them, plus the edits the
//! scenarios make (one changed object, drift, removal from Git).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// The label every generated object carries; `kubectl apply --prune -l` and the checks select on it.
pub const RUN_LABEL: &str = "bench.tether.dev/run";

/// The kinds the workload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1 Namespace`.
    Namespace,
    /// `v1 ConfigMap`.
    ConfigMap,
    /// `v1 Secret`.
    Secret,
    /// `v1 Service`.
    Service,
    /// `apps/v1 Deployment`.
    Deployment,
}

impl Kind {
    /// Every kind, Namespaces first.
    pub const ALL: [Kind; 5] = [
        Kind::Namespace,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Service,
        Kind::Deployment,
    ];

    /// `Kind` as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Service => "Service",
            Kind::Deployment => "Deployment",
        }
    }

    /// The REST resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Service => "services",
            Kind::Deployment => "deployments",
        }
    }

    /// API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Deployment => "apps",
            _ => "",
        }
    }

    /// `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment => "apps/v1",
            _ => "v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// From a manifest's `kind`.
    pub fn parse(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// The field a drift edit changes, as a JSON pointer, and the strategic-merge patch that changes it.
    pub fn drift(self) -> Option<(&'static str, Value)> {
        match self {
            Kind::Namespace => None,
            Kind::ConfigMap => Some(("/data/LOG_LEVEL", json!({"data": {"LOG_LEVEL": "trace"}}))),
            Kind::Secret => Some((
                "/data/password",
                json!({"data": {"password": "aHVudGVyMg=="}}),
            )),
            Kind::Service => Some((
                "/spec/ports/0/targetPort",
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            )),
            Kind::Deployment => Some((
                "/spec/template/spec/containers/0/image",
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": "registry.example.com/hotfix/app:patched-by-hand"}
                ]}}}}),
            )),
        }
    }
}

/// One object of the workload.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its kind.
    pub kind: Kind,
    /// Namespace (None for Namespaces).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The manifest.
    pub body: Value,
    /// The file (relative to the repository root) that holds it.
    pub file: String,
}

impl Object {
    /// `kind ns/name`, for messages.
    pub fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.name(), self.name),
            None => format!("{} {}", self.kind.name(), self.name),
        }
    }
}

/// The desired state in Git, and what the scenarios do to it.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Every object in Git now, Namespaces first.
    pub objects: Vec<Object>,
    /// The namespaces.
    pub namespaces: Vec<String>,
}

/// How many namespaces a workload of `n` objects spreads over: 20, fewer for tiny smoke runs.
fn namespace_count(n: usize) -> usize {
    (n / 50).clamp(1, 20)
}

impl Workload {
    /// `n` objects; namespaces are called `{prefix}team-NN`, every object is labelled `run`.
    pub fn generate(n: usize, prefix: &str, run: &str) -> Workload {
        let nns = namespace_count(n).min(n.max(1));
        let namespaces: Vec<String> = (0..nns).map(|i| format!("{prefix}team-{i:02}")).collect();
        let mut objects = Vec::with_capacity(n);
        for ns in &namespaces {
            objects.push(Object {
                kind: Kind::Namespace,
                namespace: None,
                name: ns.clone(),
                body: namespace(ns, run),
                file: format!("namespaces/{ns}.yaml"),
            });
        }
        let per_app = [
            Kind::ConfigMap,
            Kind::Secret,
            Kind::Service,
            Kind::Deployment,
        ];
        let mut app = 0usize;
        while objects.len() < n {
            let ns = &namespaces[app % nns];
            let name = format!("app-{app:04}");
            let file = format!("apps/{ns}/{name}.yaml");
            for kind in per_app {
                if objects.len() >= n {
                    break;
                }
                let (obj_name, body) = match kind {
                    Kind::ConfigMap => (format!("{name}-config"), configmap(ns, &name, run, app)),
                    Kind::Secret => (format!("{name}-credentials"), secret(ns, &name, run, app)),
                    Kind::Service => (name.clone(), service(ns, &name, run)),
                    _ => (name.clone(), deployment(ns, &name, run, app)),
                };
                objects.push(Object {
                    kind,
                    namespace: Some(ns.clone()),
                    name: obj_name,
                    body,
                    file: file.clone(),
                });
            }
            app += 1;
        }
        Workload {
            objects,
            namespaces,
        }
    }

    /// The files of the repository: path → multi-document YAML.
    pub fn files(&self) -> Result<BTreeMap<String, String>> {
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for o in &self.objects {
            let yaml = serde_saphyr::to_string(&o.body)
                .with_context(|| format!("serialise {} as YAML", o.id()))?;
            let f = files.entry(o.file.clone()).or_default();
            if !f.is_empty() {
                f.push_str("---\n");
            }
            f.push_str(&yaml);
            if !f.ends_with('\n') {
                f.push('\n');
            }
        }
        Ok(files)
    }

    /// Writes the repository's files under `root` (which must not hold other manifests).
    pub fn write(&self, root: &Path) -> Result<()> {
        for (path, content) in self.files()? {
            let p = root.join(&path);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
            }
            std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
        }
        Ok(())
    }

    /// The objects as JSON lines, Namespaces first (the raw client's input).
    pub fn jsonl(&self) -> Result<String> {
        let mut s = String::new();
        for o in &self.objects {
            let _ = writeln!(s, "{}", serde_json::to_string(&o.body)?);
        }
        Ok(s)
    }

    /// Scenario 3: changes one ConfigMap (the last app's); returns its index and the file to rewrite.
    pub fn change_one(&mut self) -> Option<(usize, String)> {
        let i = self
            .objects
            .iter()
            .rposition(|o| o.kind == Kind::ConfigMap)?;
        let o = &mut self.objects[i];
        o.body["data"]["LOG_LEVEL"] = "warn".into();
        Some((i, o.file.clone()))
    }

    /// Scenario 4: 1% of the objects (at least one), evenly spread, Namespaces excluded.
    pub fn drift_targets(&self) -> Vec<usize> {
        let candidates: Vec<usize> = (0..self.objects.len())
            .filter(|&i| self.objects[i].kind != Kind::Namespace)
            .collect();
        let k = self.objects.len().div_ceil(100).min(candidates.len());
        if k == 0 {
            return Vec::new();
        }
        let step = candidates.len() as f64 / k as f64;
        (0..k)
            .map(|j| candidates[((j as f64 + 0.5) * step) as usize])
            .collect()
    }

    /// Scenario 5: removes about 10% of the objects from Git (whole app files, every tenth app, never a
    /// Namespace); returns the removed objects and the removed files.
    pub fn remove_tenth(&mut self) -> (Vec<Object>, Vec<String>) {
        let target = self.objects.len().div_ceil(10);
        // Sorted by path (namespace, then app), so every namespace loses about a tenth of its apps; no
        // namespace is emptied (kubectl --prune only visits namespaces it applied something to).
        let files: Vec<String> = self
            .objects
            .iter()
            .filter(|o| o.kind != Kind::Namespace)
            .map(|o| o.file.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut chosen: Vec<String> = Vec::new();
        let mut removed = 0;
        // Every tenth file first, then the ones after it, until about 10% of objects are chosen.
        'outer: for offset in 0..10 {
            for f in files.iter().skip(offset).step_by(10) {
                if removed >= target {
                    break 'outer;
                }
                removed += self.objects.iter().filter(|o| &o.file == f).count();
                chosen.push(f.clone());
            }
        }
        let (gone, kept): (Vec<Object>, Vec<Object>) = std::mem::take(&mut self.objects)
            .into_iter()
            .partition(|o| chosen.contains(&o.file));
        self.objects = kept;
        (gone, chosen)
    }
}

fn labels(app: &str, run: &str) -> Value {
    json!({
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "bench-shop",
        "app.kubernetes.io/managed-by": "gitops",
        RUN_LABEL: run,
    })
}

fn namespace(ns: &str, run: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": ns,
            "labels": {"team": ns, RUN_LABEL: run},
            "annotations": {"owner": format!("{ns}@example.com")},
        },
    })
}

fn configmap(ns: &str, app: &str, run: &str, i: usize) -> Value {
    let props = format!(
        "server.port=8080\nserver.shutdown=graceful\nspring.application.name={app}\n\
         management.endpoints.web.exposure.include=health,info,prometheus\n\
         cache.ttl.seconds={}\ndownstream.url=http://app-{:04}.{ns}.svc.cluster.local\n\
         feature.new-checkout={}\npool.max-size={}\n",
        60 + i % 240,
        (i + 1) % 1000,
        if i.is_multiple_of(2) {
            "enabled"
        } else {
            "disabled"
        },
        8 + i % 24
    );
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{app}-config"), "namespace": ns, "labels": labels(app, run)},
        "data": {
            "LOG_LEVEL": "info",
            "REGION": "eu-west-1",
            "FEATURES": "search,recommendations,checkout-v2",
            "application.properties": props,
        },
    })
}

fn secret(ns: &str, app: &str, run: &str, i: usize) -> Value {
    // Base64 of a per-app user and a fixed-length password.
    let user = base64(format!("{app}-svc").as_bytes());
    let password = base64(format!("s3cret-{i:08}-{ns}").as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": format!("{app}-credentials"), "namespace": ns, "labels": labels(app, run)},
        "data": {"username": user, "password": password},
    })
}

fn service(ns: &str, app: &str, run: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "namespace": ns, "labels": labels(app, run)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": app},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    })
}

fn deployment(ns: &str, app: &str, run: &str, i: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": app,
            "namespace": ns,
            "labels": labels(app, run),
            "annotations": {"fluxcd.io/automated": "false"},
        },
        "spec": {
            "replicas": 1 + i % 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "bench-shop"}},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": format!("registry.example.com/{ns}/{app}:1.{}.{}", i % 7, i % 13),
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "envFrom": [
                            {"configMapRef": {"name": format!("{app}-config")}},
                            {"secretRef": {"name": format!("{app}-credentials")}},
                        ],
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http"},
                            "periodSeconds": 10,
                        },
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}}],
                },
            },
        },
    })
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_mix() {
        for n in [1, 30, 1000, 5000] {
            let w = Workload::generate(n, "", "bench");
            assert_eq!(w.objects.len(), n);
        }
        let w = Workload::generate(1000, "", "bench");
        assert_eq!(w.namespaces.len(), 20);
        let count = |k| w.objects.iter().filter(|o| o.kind == k).count();
        assert_eq!(count(Kind::Namespace), 20);
        assert_eq!(count(Kind::Deployment), 245);
        assert_eq!(w.drift_targets().len(), 10);
    }

    #[test]
    fn yaml_round_trips() {
        let w = Workload::generate(60, "x-", "r");
        for (path, yaml) in w.files().unwrap() {
            let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap();
            let expected: Vec<&Value> = w
                .objects
                .iter()
                .filter(|o| o.file == path)
                .map(|o| &o.body)
                .collect();
            assert_eq!(docs.iter().collect::<Vec<_>>(), expected, "{path}");
        }
    }

    #[test]
    fn removal_is_about_a_tenth() {
        let mut w = Workload::generate(1000, "", "bench");
        let (gone, files) = w.remove_tenth();
        assert!((100..=104).contains(&gone.len()), "{}", gone.len());
        assert!(gone.iter().all(|o| o.kind != Kind::Namespace));
        assert_eq!(w.objects.len() + gone.len(), 1000);
        assert!(!files.is_empty());
        // Spread over the namespaces, none emptied.
        for ns in &w.namespaces {
            let gone_here = gone
                .iter()
                .filter(|o| o.namespace.as_ref() == Some(ns))
                .count();
            let left_here = w
                .objects
                .iter()
                .filter(|o| o.namespace.as_ref() == Some(ns))
                .count();
            assert!(
                gone_here > 0 && left_here > 3 * gone_here,
                "{ns}: {gone_here} gone, {left_here} left"
            );
        }
    }

    #[test]
    fn base64_matches_reference() {
        assert_eq!(base64(b"hunter2"), "aHVudGVyMg==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
