//! Workloads: the kinds that run Pods from a template, and where each keeps its pod spec. Image automation,
//! `list-images` and the manifest editor all read these from here.

use serde_json::Value;

/// The workload kinds whose containers tether reads and whose images it may update.
pub const KINDS: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "CronJob"];

const TEMPLATE: &[&str] = &["spec", "template", "spec"];
const CRONJOB: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];

/// True for one of [`KINDS`], spelled as the API server spells it.
pub fn is_workload(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// The keys from the object's root to its pod spec; kinds compare case-insensitively, as fluxctl's ids do.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind.to_ascii_lowercase().as_str() {
        "deployment" | "statefulset" | "daemonset" => Some(TEMPLATE),
        "cronjob" => Some(CRONJOB),
        _ => None,
    }
}

/// The pod spec of a workload object, when it has one where its kind keeps it.
pub fn pod_spec(object: &Value) -> Option<&Value> {
    let kind = object.get("kind").and_then(Value::as_str)?;
    pod_spec_path(kind)?
        .iter()
        .try_fold(object, |v, key| v.get(*key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_specs_are_found_where_each_kind_keeps_them() {
        let deploy =
            json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": []}}}});
        assert_eq!(pod_spec(&deploy), Some(&json!({"containers": []})));
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"a": 1}}}}}});
        assert_eq!(pod_spec(&cron), Some(&json!({"a": 1})));
        assert_eq!(pod_spec(&json!({"kind": "ConfigMap", "data": {}})), None);
        assert_eq!(pod_spec(&json!({"kind": "Deployment", "spec": {}})), None);
        assert_eq!(pod_spec_path("statefulset"), pod_spec_path("StatefulSet"));
        assert!(is_workload("DaemonSet") && !is_workload("Job"));
    }
}
