//! Defaults the API server needs filled in *before* server-side apply.
//!
//! Servers before 1.21 reject an apply whose `ports` list omits `protocol`, because `protocol` is part of the
//! list's merge key ("associative list with keys has an element that omits key field"). kubectl's client-side
//! apply never hit this, so Flux v1 repos are full of such ports. Filling in the server's own default (TCP)
//! changes nothing in the resulting object and lets those manifests apply unchanged.

use serde_json::Value;

/// Fills `protocol: TCP` into the ports of Services and of every pod template's containers.
pub fn fill_native_defaults(body: &mut Value) {
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match kind.as_str() {
        "Service" => default_protocols(body.pointer_mut("/spec/ports")),
        "Pod" => pod_spec(body.pointer_mut("/spec")),
        "CronJob" => pod_spec(body.pointer_mut("/spec/jobTemplate/spec/template/spec")),
        _ => pod_spec(body.pointer_mut("/spec/template/spec")),
    }
}

fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers {
                default_protocols(c.get_mut("ports"));
            }
        }
    }
}

fn default_protocols(ports: Option<&mut Value>) {
    if let Some(Value::Array(ports)) = ports {
        for p in ports {
            if let Value::Object(p) = p {
                p.entry("protocol").or_insert_with(|| "TCP".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_tcp_into_service_and_container_ports_but_keeps_explicit_protocols() {
        let mut svc = json!({"kind": "Service", "spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}});
        fill_native_defaults(&mut svc);
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(svc["spec"]["ports"][1]["protocol"], "UDP");

        let mut cj = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "i", "ports": [{"containerPort": 1}]}]}}}}}});
        fill_native_defaults(&mut cj);
        assert_eq!(
            cj.pointer("/spec/jobTemplate/spec/template/spec/initContainers/0/ports/0/protocol")
                .unwrap(),
            "TCP"
        );

        let mut deploy = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}}}});
        fill_native_defaults(&mut deploy);
        assert_eq!(
            deploy
                .pointer("/spec/template/spec/containers/0/ports/0/protocol")
                .unwrap(),
            "TCP"
        );
    }
}
