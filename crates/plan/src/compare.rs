//! Is the desired state already live? A structural comparison that tolerates what the server adds.

use serde_json::Value;

/// True when every field set in `desired` has the same value in `live`. Fields the server or other managers
/// added to `live` do not matter; lists must match element by element. A `null` in desired matches a missing
/// field (generated manifests often carry `creationTimestamp: null`).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => {
                dv.is_null()
                    || dv.as_object().is_some_and(|m| m.is_empty())
                    || dv.as_array().is_some_and(|a| a.is_empty())
            }
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Removes what changes on every write without meaning a different state (managedFields, resourceVersion,
/// timestamps of the write), so a dry-run result can be compared with the live object.
pub fn strip_volatile(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["managedFields", "resourceVersion", "generation"] {
            meta.remove(k);
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_added_fields_do_not_count_as_changes() {
        let desired = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "a", "image": "x"}]}}});
        let live = json!({"spec": {"replicas": 2, "strategy": {}, "template": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always"}]}}, "status": {}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn a_changed_value_or_list_length_is_a_change() {
        let desired = json!({"data": {"k": "v"}, "list": [1, 2]});
        assert!(!is_subset(
            &desired,
            &json!({"data": {"k": "edited"}, "list": [1, 2]})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"data": {"k": "v"}, "list": [1]})
        ));
        assert!(!is_subset(&desired, &json!({"list": [1, 2]})));
    }

    #[test]
    fn nulls_and_number_spelling_are_tolerated() {
        assert!(is_subset(
            &json!({"metadata": {"creationTimestamp": null}}),
            &json!({"metadata": {}})
        ));
        assert!(is_subset(&json!({"a": 1.0}), &json!({"a": 1})));
    }
}
