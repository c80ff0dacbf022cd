//! Patch files for Flux v1's `.flux.yaml` `patchUpdated` mode: a strategic merge patch for built-in kinds, a
//! JSON merge patch (RFC 7386) for everything else, on JSON values.
//!
//! Kubernetes learns how each list merges from tags on its Go types (or from the OpenAPI schema); we have
//! neither, so [`LIST_FIELDS`] names the list fields that matter in manifests. A list not in it is replaced
//! wholesale, which is what Kubernetes does for lists without a patch strategy, and never keeps items the
//! patch's author did not write.
//!
//! Where upstream (k8s.io/apimachinery/pkg/util/strategicpatch) is ambiguous, depends on Go's random map
//! order, or does something surprising, this module chooses:
//! - Items matched by merge key stay where they are in the original; new items are appended in patch order
//!   (upstream also moves matched items into patch order).
//! - `$setElementOrder/<field>` puts the items it names first, in its order, then every other item in its
//!   order after the merge (original items as they were, then new ones). Upstream interleaves the others by
//!   their original position, which is hard to predict; this is deterministic. The patch's own list is not
//!   checked against the directive (upstream rejects a patch whose list is in a different order).
//! - `$deleteFromPrimitiveList/<field>` applies before the patch's `<field>`, so a value both deleted and
//!   added ends up present.
//! - An item carrying its merge key and `$patch: replace` replaces that one item (upstream replaces the whole
//!   list and drops the item, which nobody means); `- $patch: replace` alone replaces the list.
//! - `$patch: merge` is accepted anywhere as the default it is (upstream rejects it in maps and lists).
//! - `$patch: delete` at the top of a patch deletes the object: [`merge`] returns `Value::Null`.
//! - Merged lists of scalars are unions: duplicates collapse to their first occurrence.
//! - Values the patch adds are taken as written minus directives and null-valued keys, as RFC 7386 does;
//!   a map the patch adds that is left empty by that is not added (upstream adds it, directives and all).
//!
//! Error paths are JSON-pointer-like (`/spec/template/spec/containers/0`), numbering items as they are in the
//! patch; keys are not escaped, because the paths are for people to read (`$setElementOrder/containers`
//! stays as written).

use serde_json::{Map, Value};

/// How a patch is merged into an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Kubernetes' strategic merge patch, for kinds the API server knows the schema of.
    Strategic,
    /// RFC 7386, for custom resources: their lists have no merge keys the API server would honour.
    JsonMerge,
}

/// Groups served by Kubernetes itself, whose objects the API server patches strategically. `extensions`,
/// `apiregistration.k8s.io` and `resource.k8s.io` are built in too; Flux v1 era manifests still use
/// `extensions/v1beta1`.
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "extensions",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "node.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "certificates.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
];

/// The strategy Kubernetes uses for this apiVersion/kind: Strategic for built-in groups ("" core, apps,
/// batch, autoscaling, policy, extensions, networking.k8s.io, rbac.authorization.k8s.io, storage.k8s.io,
/// scheduling.k8s.io, coordination.k8s.io, discovery.k8s.io, node.k8s.io, admissionregistration.k8s.io,
/// apiextensions.k8s.io, apiregistration.k8s.io, certificates.k8s.io, events.k8s.io,
/// flowcontrol.apiserver.k8s.io, resource.k8s.io), JsonMerge otherwise.
pub fn strategy_for(api_version: &str, kind: &str) -> Strategy {
    // Every kind of a built-in group is built in; the kind is taken so callers pass the pair they have, and
    // so a per-kind exception would not change them.
    let _ = kind;
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    if BUILT_IN_GROUPS.contains(&group) {
        Strategy::Strategic
    } else {
        Strategy::JsonMerge
    }
}

/// A patch that cannot be applied; nothing of it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// A `$patch`, `$retainKeys`, `$setElementOrder/…` or `$deleteFromPrimitiveList/…` directive is malformed.
    #[error("{path}: {message}")]
    Directive {
        /// Where in the patch, e.g. `/spec/template/spec/$setElementOrder/containers`.
        path: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// An item of a list merged by key is not a map, or does not say which item it is.
    #[error("{path}: {message}")]
    MergeKey {
        /// Where in the patch, e.g. `/spec/template/spec/containers/0`.
        path: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The patch, or the value a directive works on, is not the kind of value the merge needs.
    #[error("{path}: {message}")]
    Shape {
        /// Where in the patch (or the merged object), e.g. `/spec/template/spec/containers`.
        path: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

/// Merges `patch` into `original`.
pub fn merge(original: &Value, patch: &Value, strategy: Strategy) -> Result<Value, PatchError> {
    match strategy {
        Strategy::JsonMerge => Ok(json_merge(original, patch)),
        Strategy::Strategic => {
            let Value::Object(patch) = patch else {
                return Err(PatchError::Shape {
                    path: "/".to_owned(),
                    message: format!(
                        "the patch is {}; write it as a map with apiVersion, kind and metadata.name of the \
                         object to patch",
                        describe(patch)
                    ),
                });
            };
            // A non-map original has nothing to keep, as in RFC 7386.
            let original = match original {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            Ok(merge_map(original, patch, "", "")?.map_or(Value::Null, Value::Object))
        }
    }
}

/// RFC 7386 section 2, which never fails: anything that is not a map replaces.
fn json_merge(original: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            remove_key(&mut result, key);
        } else {
            let merged = json_merge(result.get(key).unwrap_or(&Value::Null), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

/// How the items of a list field merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMerge {
    /// Items are maps matched by this key; matches merge, the rest of the patch's items are appended.
    Key(&'static str),
    /// Items are scalars; the result is the union, in order.
    Union,
    /// The patch's list replaces the original.
    Replace,
}

/// A list field with a patch strategy.
struct ListField {
    /// The field's name.
    field: &'static str,
    /// Names of the key holding the map the field is in (list indices skipped, `""` for the top level);
    /// empty: anywhere. Disambiguates names such as `ports` that merge differently in different types.
    within: &'static [&'static str],
    /// How it merges.
    merge: ListMerge,
}

const fn list(field: &'static str, within: &'static [&'static str], merge: ListMerge) -> ListField {
    ListField {
        field,
        within,
        merge,
    }
}

const ANYWHERE: &[&str] = &[];
const CONTAINER: &[&str] = &["containers", "initContainers", "ephemeralContainers"];
/// A `spec` map: PodSpec (also inside templates), ServiceSpec.
const SPEC: &[&str] = &["spec"];
const METADATA: &[&str] = &["metadata"];
const TOP: &[&str] = &[""];

/// The patch strategies of the Kubernetes API types' list fields (the `patchStrategy`/`patchMergeKey` tags
/// in k8s.io/api), for the fields manifests carry. The first entry matching a field's name and place wins;
/// a list not matched is replaced. `Replace` entries are the default spelled out, for fields one would
/// expect to merge.
const LIST_FIELDS: &[ListField] = &[
    list("containers", ANYWHERE, ListMerge::Key("name")),
    list("initContainers", ANYWHERE, ListMerge::Key("name")),
    list("ephemeralContainers", ANYWHERE, ListMerge::Key("name")),
    list("env", CONTAINER, ListMerge::Key("name")),
    list("envFrom", CONTAINER, ListMerge::Replace),
    list("ports", CONTAINER, ListMerge::Key("containerPort")),
    list("volumeMounts", CONTAINER, ListMerge::Key("mountPath")),
    list("volumeDevices", CONTAINER, ListMerge::Key("devicePath")),
    // ServiceSpec; the `ports` of NetworkPolicy rules, EndpointSlices etc. are atomic.
    list("ports", SPEC, ListMerge::Key("port")),
    list("volumes", SPEC, ListMerge::Key("name")),
    // PodSpec only: a ServiceAccount's top-level imagePullSecrets are atomic.
    list("imagePullSecrets", SPEC, ListMerge::Key("name")),
    list("hostAliases", SPEC, ListMerge::Key("ip")),
    list("tolerations", ANYWHERE, ListMerge::Replace),
    list(
        "topologySpreadConstraints",
        SPEC,
        ListMerge::Key("topologyKey"),
    ),
    // PodSpec; a container's `resources.claims` is atomic.
    list("resourceClaims", SPEC, ListMerge::Key("name")),
    list("schedulingGates", SPEC, ListMerge::Key("name")),
    list("conditions", ANYWHERE, ListMerge::Key("type")),
    list("ownerReferences", METADATA, ListMerge::Key("uid")),
    // ObjectMeta; a Namespace's `spec.finalizers` is atomic.
    list("finalizers", METADATA, ListMerge::Union),
    // ServiceAccount.
    list("secrets", TOP, ListMerge::Key("name")),
];

/// How the list `field`, in a map held under the key `owner`, merges.
fn list_merge(field: &str, owner: &str) -> ListMerge {
    LIST_FIELDS
        .iter()
        .find(|f| f.field == field && (f.within.is_empty() || f.within.contains(&owner)))
        .map_or(ListMerge::Replace, |f| f.merge)
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Whether `key` is an instruction to the merge rather than data. Other `$` keys (a CRD schema's `$ref`) are
/// data.
fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn join(path: &str, key: impl std::fmt::Display) -> String {
    format!("{path}/{key}")
}

/// Removes `key` keeping the other keys' order, which `Map::remove` does not under serde_json's
/// `preserve_order` (it swaps the last key in).
fn remove_key(map: &mut Map<String, Value>, key: &str) {
    map.retain(|k, _| k != key);
}

fn is_empty_map(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn bad_patch_value(path: &str, value: &Value) -> PatchError {
    PatchError::Directive {
        path: join(path, PATCH),
        message: format!(
            "`$patch: {value}` is not a directive; write `$patch: replace`, `$patch: delete` or \
             `$patch: merge`"
        ),
    }
}

/// Merges the map `patch` (at `path`, held under the key `owner`) into `original`; `None` when the patch
/// deletes the map.
fn merge_map(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
    owner: &str,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(s)) if s == "merge" => {}
        Some(Value::String(s)) if s == "delete" => return Ok(None),
        Some(Value::String(s)) if s == "replace" => {
            let mut rest = patch.clone();
            remove_key(&mut rest, PATCH);
            return merge_map(Map::new(), &rest, path, owner);
        }
        Some(other) => return Err(bad_patch_value(path, other)),
    }

    let mut result = original;
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut result, keep, patch, path)?;
    }
    for (key, value) in patch {
        if let Some(rest) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut result, rest, value, path, owner)?;
        }
    }
    for (key, value) in patch {
        if is_directive(key) {
            continue;
        }
        if value.is_null() {
            remove_key(&mut result, key);
            continue;
        }
        let at = join(path, key);
        let merged = match result.get_mut(key) {
            Some(slot) => merge_field(Some(std::mem::take(slot)), value, &at, key, owner)?,
            // A map the patch only had directives or deletions for must not appear from nowhere: a
            // `spec: {}` added to a ConfigMap is an error at the API server.
            None => merge_field(None, value, &at, key, owner)?
                .filter(|v| !is_empty_map(v) || is_empty_map(value)),
        };
        match merged {
            Some(v) => {
                result.insert(key.clone(), v);
            }
            None => {
                remove_key(&mut result, key);
            }
        }
    }
    for (key, value) in patch {
        if let Some(rest) = key.strip_prefix(SET_ELEMENT_ORDER) {
            set_element_order(&mut result, rest, value, path, owner)?;
        }
    }
    Ok(Some(result))
}

/// Merges the patch's value for `field` (in a map held under `owner`) into the original's, if any; a
/// value of another type is replaced. `None` when the patch deletes it.
fn merge_field(
    original: Option<Value>,
    patch: &Value,
    path: &str,
    field: &str,
    owner: &str,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Array(items) => {
            let original = match original {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            let merged = merge_list(original, items, path, field, list_merge(field, owner))?;
            Ok(Some(Value::Array(merged)))
        }
        _ => merge_item(original, patch, path, field),
    }
}

/// Merges one item of the list `field` (or a map-or-scalar value under the key `field`).
fn merge_item(
    original: Option<Value>,
    patch: &Value,
    path: &str,
    field: &str,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(p) => {
            let original = match original {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            Ok(merge_map(original, p, path, field)?.map(Value::Object))
        }
        // Lists of lists have no patch strategy in Kubernetes' types.
        Value::Array(items) => Ok(Some(Value::Array(merge_list(
            Vec::new(),
            items,
            path,
            field,
            ListMerge::Replace,
        )?))),
        scalar => Ok(Some(scalar.clone())),
    }
}

/// Merges the patch's list for `field` into the original's.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    path: &str,
    field: &str,
    how: ListMerge,
) -> Result<Vec<Value>, PatchError> {
    let mut items = Vec::with_capacity(patch.len());
    let mut replace = false;
    for (i, item) in patch.iter().enumerate() {
        let directive = item
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get(PATCH));
        let Some(directive) = directive else {
            items.push((i, item));
            continue;
        };
        let at = join(path, i);
        match directive.as_str() {
            Some("replace") => replace = true,
            Some("merge") => {}
            Some("delete") => {
                let how_to = match how {
                    ListMerge::Key(key) => format!(
                        "add `{key}: <value>` to say which item of `{field}` to delete"
                    ),
                    _ => format!(
                        "to remove values from `{field}` write `$deleteFromPrimitiveList/{field}: [..]` \
                         next to it"
                    ),
                };
                return Err(PatchError::Directive {
                    path: join(&at, PATCH),
                    message: format!(
                        "`$patch: delete` here names no item; {how_to}, or set `{field}: null` to delete \
                         the whole list"
                    ),
                });
            }
            _ => return Err(bad_patch_value(&at, directive)),
        }
    }

    let how = if replace { ListMerge::Replace } else { how };
    let mut result = Vec::with_capacity(original.len() + items.len());
    match how {
        ListMerge::Replace => {
            for (i, item) in items {
                result.extend(merge_item(None, item, &join(path, i), field)?);
            }
        }
        ListMerge::Union => {
            for v in original {
                if !result.contains(&v) {
                    result.push(v);
                }
            }
            for (i, item) in items {
                if let Some(v) = merge_item(None, item, &join(path, i), field)? {
                    if !result.contains(&v) {
                        result.push(v);
                    }
                }
            }
        }
        ListMerge::Key(key) => {
            result = original;
            for (i, item) in items {
                let at = join(path, i);
                let Value::Object(p) = item else {
                    return Err(PatchError::MergeKey {
                        path: at,
                        message: format!(
                            "this item is {}, but items of `{field}` are maps matched by `{key}`; write \
                             it as a map with `{key}: <value>`",
                            describe(item)
                        ),
                    });
                };
                let Some(wanted) = p.get(key).filter(|v| !v.is_null()) else {
                    return Err(PatchError::MergeKey {
                        path: at,
                        message: format!(
                            "this item of `{field}` has no `{key}`; items of `{field}` are matched by \
                             `{key}`, so add `{key}: <value>` naming the item to change or add (or start \
                             the list with `- $patch: replace` to replace it whole)"
                        ),
                    });
                };
                let matches = |v: &Value| v.get(key) == Some(wanted);
                match result.iter().position(matches) {
                    Some(j) => {
                        let current = std::mem::take(&mut result[j]);
                        match merge_item(Some(current), item, &at, field)? {
                            Some(v) => result[j] = v,
                            None => {
                                // As upstream: every item with this key goes, duplicates included.
                                result.remove(j);
                                result.retain(|v| !matches(v));
                            }
                        }
                    }
                    None => result.extend(merge_item(None, item, &at, field)?),
                }
            }
        }
    }
    Ok(result)
}

/// The field a `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` directive names.
fn directive_field<'a>(prefix: &str, rest: &'a str, path: &str) -> Result<&'a str, PatchError> {
    rest.strip_prefix('/')
        .filter(|field| !field.is_empty())
        .ok_or_else(|| PatchError::Directive {
            path: join(path, format_args!("{prefix}{rest}")),
            message: format!("write `{prefix}/<field>`, naming the list the directive is about"),
        })
}

/// `$retainKeys`: keys of the original not listed are dropped, so a patch can switch between
/// mutually exclusive fields (a Deployment's `strategy.type: Recreate` without `rollingUpdate`).
fn retain_keys(
    result: &mut Map<String, Value>,
    keep: &Value,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    let at = join(path, RETAIN_KEYS);
    let Value::Array(list) = keep else {
        return Err(PatchError::Directive {
            path: at,
            message: format!(
                "`$retainKeys` is {}; write the list of keys to keep, like `$retainKeys: [type]`",
                describe(keep)
            ),
        });
    };
    let mut names = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let Some(name) = v.as_str() else {
            return Err(PatchError::Directive {
                path: join(&at, i),
                message: format!(
                    "`$retainKeys` lists key names, but this item is {}; write the key's name",
                    describe(v)
                ),
            });
        };
        names.push(name);
    }
    for (key, value) in patch {
        if !is_directive(key) && !value.is_null() && !names.contains(&key.as_str()) {
            return Err(PatchError::Directive {
                path: join(path, key),
                message: format!(
                    "`{key}` is set here but not listed in `$retainKeys`, which would drop it; add \
                     `{key}` to `$retainKeys`"
                ),
            });
        }
    }
    result.retain(|key, _| names.contains(&key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes the listed values from the list of scalars `<field>`.
fn delete_from_primitive_list(
    result: &mut Map<String, Value>,
    rest: &str,
    value: &Value,
    path: &str,
    owner: &str,
) -> Result<(), PatchError> {
    let field = directive_field(DELETE_FROM_PRIMITIVE_LIST, rest, path)?;
    let at = join(path, format_args!("{DELETE_FROM_PRIMITIVE_LIST}/{field}"));
    if let ListMerge::Key(key) = list_merge(field, owner) {
        return Err(PatchError::Directive {
            path: at,
            message: format!(
                "`{field}` is a list of maps matched by `{key}`, not of scalars; to delete an item, \
                 list it in `{field}` with its `{key}` and `$patch: delete`"
            ),
        });
    }
    let Value::Array(gone) = value else {
        return Err(PatchError::Directive {
            path: at,
            message: format!(
                "`$deleteFromPrimitiveList/{field}` is {}; write the list of values to remove from `{field}`",
                describe(value)
            ),
        });
    };
    match result.get_mut(field) {
        None => {}
        Some(Value::Array(items)) => items.retain(|v| !gone.contains(v)),
        Some(other) => {
            return Err(PatchError::Shape {
                path: join(path, field),
                message: format!(
                    "`$deleteFromPrimitiveList/{field}` removes values from a list, but `{field}` is {}; \
                     remove the directive or set `{field}` instead",
                    describe(other)
                ),
            })
        }
    }
    Ok(())
}

/// What `$setElementOrder` names an item by: its merge key's value, or the item itself.
fn identity<'a>(item: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// `$setElementOrder/<field>`: the merged list's items named by the directive come first, in its order; the
/// others follow in their merged order.
fn set_element_order(
    result: &mut Map<String, Value>,
    rest: &str,
    order: &Value,
    path: &str,
    owner: &str,
) -> Result<(), PatchError> {
    let field = directive_field(SET_ELEMENT_ORDER, rest, path)?;
    let at = join(path, format_args!("{SET_ELEMENT_ORDER}/{field}"));
    let key = match list_merge(field, owner) {
        ListMerge::Key(key) => Some(key),
        ListMerge::Union | ListMerge::Replace => None,
    };
    let Value::Array(order) = order else {
        let like = key.map_or_else(|| "- <value>".to_owned(), |k| format!("- {k}: <value>"));
        return Err(PatchError::Directive {
            path: at,
            message: format!(
                "`$setElementOrder/{field}` is {}; write the list of `{field}`'s items in the order \
                 wanted, like `{like}`",
                describe(order)
            ),
        });
    };
    let mut wanted = Vec::with_capacity(order.len());
    for (i, item) in order.iter().enumerate() {
        match key {
            None => wanted.push(item),
            Some(key) => match item.get(key).filter(|v| !v.is_null()) {
                Some(v) => wanted.push(v),
                None => {
                    return Err(PatchError::Directive {
                        path: join(&at, i),
                        message: format!(
                            "items of `$setElementOrder/{field}` name items of `{field}` by their `{key}`; \
                             write `- {key}: <value>`"
                        ),
                    })
                }
            },
        }
    }
    let Some(current) = result.get_mut(field) else {
        return Ok(());
    };
    let Value::Array(items) = current else {
        return Err(PatchError::Shape {
            path: join(path, field),
            message: format!(
                "`$setElementOrder/{field}` orders a list, but `{field}` is {}; remove the directive or \
                 make `{field}` a list",
                describe(current)
            ),
        });
    };
    let mut rest: Vec<Option<Value>> = std::mem::take(items).into_iter().map(Some).collect();
    let mut sorted = Vec::with_capacity(rest.len());
    for w in wanted {
        for slot in &mut rest {
            let hit = slot.as_ref().and_then(|v| identity(v, key)) == Some(w);
            if hit {
                sorted.extend(slot.take());
            }
        }
    }
    sorted.extend(rest.into_iter().flatten());
    *items = sorted;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Value {
        serde_saphyr::from_str::<Value>(text).unwrap()
    }

    fn smp(original: &Value, patch: &Value) -> Value {
        merge(original, patch, Strategy::Strategic).unwrap()
    }

    fn smp_err(original: &Value, patch: &Value) -> PatchError {
        merge(original, patch, Strategy::Strategic).unwrap_err()
    }

    fn path_of(e: &PatchError) -> &str {
        match e {
            PatchError::Directive { path, .. }
            | PatchError::MergeKey { path, .. }
            | PatchError::Shape { path, .. } => path,
        }
    }

    fn assert_no_directives(v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    assert!(!is_directive(k), "directive {k} left in the result");
                    assert_no_directives(v);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
  labels:
    app: podinfo
spec:
  replicas: 2
  selector:
    matchLabels:
      app: podinfo
  template:
    metadata:
      labels:
        app: podinfo
    spec:
      containers:
      - name: podinfod
        image: stefanprodan/podinfo:1.4.0
        command: [./podinfo, --port=9898]
        ports:
        - containerPort: 9898
          name: http
          protocol: TCP
        env:
        - name: PODINFO_UI_COLOR
          value: blue
        - name: PODINFO_UI_MESSAGE
          value: hello
        resources:
          limits:
            cpu: 500m
          requests:
            cpu: 100m
            memory: 64Mi
"#;

    #[test]
    fn strategy_follows_the_api_group() {
        for (api_version, kind) in [
            ("v1", "ConfigMap"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "CronJob"),
            ("extensions/v1beta1", "Ingress"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema"),
        ] {
            assert_eq!(
                strategy_for(api_version, kind),
                Strategy::Strategic,
                "{api_version}"
            );
        }
        for (api_version, kind) in [
            ("helm.fluxcd.io/v1", "HelmRelease"),
            ("snapshot.storage.k8s.io/v1", "VolumeSnapshot"),
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ("k8s.io/v1", "Thing"),
        ] {
            assert_eq!(
                strategy_for(api_version, kind),
                Strategy::JsonMerge,
                "{api_version}"
            );
        }
    }

    #[test]
    fn flux_patch_file_changes_only_the_image_and_adds_annotations() {
        let original = yaml(DEPLOYMENT);
        let patch = yaml(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: demo
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/tag.podinfod: semver:~1.4
spec:
  template:
    spec:
      $setElementOrder/containers:
      - name: podinfod
      containers:
      - image: stefanprodan/podinfo:1.4.2
        name: podinfod
"#,
        );
        let got = smp(&original, &patch);
        let mut want = original.clone();
        *want
            .pointer_mut("/spec/template/spec/containers/0/image")
            .unwrap() = json!("stefanprodan/podinfo:1.4.2");
        want["metadata"]["annotations"] =
            json!({"fluxcd.io/automated": "true", "fluxcd.io/tag.podinfod": "semver:~1.4"});
        assert_eq!(got, want);
    }

    #[test]
    fn maps_merge_recursively_and_null_deletes() {
        let original = json!({"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4, "g": 5});
        let patch = json!({"a": {"c": {"d": 20, "x": 1}}, "f": null, "h": {"i": null, "j": 1}, "nope": null});
        assert_eq!(
            smp(&original, &patch),
            json!({"a": {"b": 1, "c": {"d": 20, "e": 3, "x": 1}}, "g": 5, "h": {"j": 1}})
        );
    }

    #[test]
    fn values_of_another_type_are_replaced() {
        let original = json!({"a": {"b": 1}, "c": [1, 2], "d": "s"});
        let patch = json!({"a": "now a string", "c": {"k": 1}, "d": [{"x": null, "y": 1}]});
        assert_eq!(
            smp(&original, &patch),
            json!({"a": "now a string", "c": {"k": 1}, "d": [{"y": 1}]})
        );
    }

    #[test]
    fn containers_merge_by_name_and_new_ones_are_appended_in_patch_order() {
        let original = yaml(
            "spec:\n  containers:\n  - {name: a, image: a:1, args: [x]}\n  - {name: b, image: b:1}\n  initContainers:\n  - {name: init, image: i:1}\n",
        );
        let patch = yaml(
            "spec:\n  containers:\n  - {name: d, image: d:1}\n  - {name: b, image: b:2}\n  - {name: c, image: c:1}\n  initContainers:\n  - {name: init, image: i:2}\n",
        );
        assert_eq!(
            smp(&original, &patch),
            yaml(
                "spec:\n  containers:\n  - {name: a, image: a:1, args: [x]}\n  - {name: b, image: b:2}\n  - {name: d, image: d:1}\n  - {name: c, image: c:1}\n  initContainers:\n  - {name: init, image: i:2}\n",
            )
        );
    }

    #[test]
    fn container_fields_merge_by_their_keys() {
        let original = yaml(
            r#"
spec:
  template:
    spec:
      ephemeralContainers:
      - name: debug
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{containerPort: 80, name: http}, {containerPort: 443, name: https}]
        volumeMounts: [{mountPath: /data, name: data}, {mountPath: /tmp, name: tmp}]
        volumeDevices: [{devicePath: /dev/a, name: a}]
        envFrom: [{configMapRef: {name: one}}]
"#,
        );
        let patch = yaml(
            r#"
spec:
  template:
    spec:
      ephemeralContainers:
      - name: debug
        env: [{name: B, value: "20"}, {name: C, value: "3"}]
        ports: [{containerPort: 443, protocol: TCP}]
        volumeMounts: [{mountPath: /data, readOnly: true}]
        volumeDevices: [{devicePath: /dev/b, name: b}]
        envFrom: [{secretRef: {name: two}}]
"#,
        );
        assert_eq!(
            smp(&original, &patch),
            yaml(
                r#"
spec:
  template:
    spec:
      ephemeralContainers:
      - name: debug
        env: [{name: A, value: "1"}, {name: B, value: "20"}, {name: C, value: "3"}]
        ports: [{containerPort: 80, name: http}, {containerPort: 443, name: https, protocol: TCP}]
        volumeMounts: [{mountPath: /data, name: data, readOnly: true}, {mountPath: /tmp, name: tmp}]
        volumeDevices: [{devicePath: /dev/a, name: a}, {devicePath: /dev/b, name: b}]
        envFrom: [{secretRef: {name: two}}]
"#,
            )
        );
    }

    #[test]
    fn pod_spec_lists_merge_by_their_keys() {
        let original = yaml(
            r#"
spec:
  volumes: [{name: a, emptyDir: {}}, {name: b, secret: {secretName: s}}]
  imagePullSecrets: [{name: reg1}]
  hostAliases: [{ip: 10.0.0.1, hostnames: [a]}]
  tolerations: [{key: k1, operator: Exists}]
  topologySpreadConstraints: [{topologyKey: zone, maxSkew: 1}]
  resourceClaims: [{name: gpu, resourceClaimName: g1}]
"#,
        );
        let patch = yaml(
            r#"
spec:
  volumes: [{name: b, secret: {secretName: t}}, {name: c, emptyDir: {}}]
  imagePullSecrets: [{name: reg2}]
  hostAliases: [{ip: 10.0.0.1, hostnames: [b]}]
  tolerations: [{key: k2, operator: Exists}]
  topologySpreadConstraints: [{topologyKey: zone, maxSkew: 2}, {topologyKey: host, maxSkew: 1}]
  resourceClaims: [{name: gpu, resourceClaimName: g2}]
"#,
        );
        assert_eq!(
            smp(&original, &patch),
            yaml(
                r#"
spec:
  volumes: [{name: a, emptyDir: {}}, {name: b, secret: {secretName: t}}, {name: c, emptyDir: {}}]
  imagePullSecrets: [{name: reg1}, {name: reg2}]
  hostAliases: [{ip: 10.0.0.1, hostnames: [b]}]
  tolerations: [{key: k2, operator: Exists}]
  topologySpreadConstraints: [{topologyKey: zone, maxSkew: 2}, {topologyKey: host, maxSkew: 1}]
  resourceClaims: [{name: gpu, resourceClaimName: g2}]
"#,
            )
        );
    }

    #[test]
    fn ports_merge_by_port_in_a_service_and_are_replaced_elsewhere() {
        let service = yaml(
            "kind: Service\nspec:\n  ports:\n  - {port: 80, targetPort: 8080, name: http}\n  - {port: 443, name: https}\n",
        );
        let patch = yaml("spec:\n  ports:\n  - {port: 80, targetPort: 9090}\n");
        assert_eq!(
            smp(&service, &patch),
            yaml(
                "kind: Service\nspec:\n  ports:\n  - {port: 80, targetPort: 9090, name: http}\n  - {port: 443, name: https}\n"
            )
        );

        let policy = yaml("spec:\n  ingress:\n  - ports: [{port: 80}, {port: 443}]\n");
        let patch = yaml("spec:\n  ingress:\n  - ports: [{port: 8080}]\n");
        assert_eq!(smp(&policy, &patch), patch);
    }

    #[test]
    fn metadata_lists_merge() {
        let original = yaml(
            "metadata:\n  finalizers: [a, b]\n  ownerReferences:\n  - {uid: u1, name: x, kind: K}\nstatus:\n  conditions:\n  - {type: Ready, status: \"False\"}\n  - {type: Synced, status: \"True\"}\n",
        );
        let patch = yaml(
            "metadata:\n  finalizers: [c, a, c]\n  ownerReferences:\n  - {uid: u1, name: y}\n  - {uid: u2, name: z}\nstatus:\n  conditions:\n  - {type: Ready, status: \"True\"}\n",
        );
        assert_eq!(
            smp(&original, &patch),
            yaml(
                "metadata:\n  finalizers: [a, b, c]\n  ownerReferences:\n  - {uid: u1, name: y, kind: K}\n  - {uid: u2, name: z}\nstatus:\n  conditions:\n  - {type: Ready, status: \"True\"}\n  - {type: Synced, status: \"True\"}\n",
            )
        );
    }

    #[test]
    fn lists_without_a_strategy_are_replaced() {
        let original = yaml(
            "spec:\n  containers:\n  - {name: a, args: [x, y], command: [c]}\n  finalizers: [kubernetes]\n",
        );
        let patch = yaml("spec:\n  containers:\n  - {name: a, args: [z]}\n  finalizers: [other]\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("spec:\n  containers:\n  - {name: a, args: [z], command: [c]}\n  finalizers: [other]\n")
        );
    }

    #[test]
    fn patch_replace_in_a_map_replaces_it() {
        let original =
            json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "replicas": 1}});
        let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"c": "3"}}}});
        assert_eq!(
            smp(&original, &patch),
            json!({"spec": {"selector": {"matchLabels": {"c": "3"}}, "replicas": 1}})
        );
    }

    #[test]
    fn patch_delete_in_a_map_deletes_it() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate"}, "replicas": 1}});
        let patch = json!({"spec": {"strategy": {"$patch": "delete"}}});
        assert_eq!(smp(&original, &patch), json!({"spec": {"replicas": 1}}));

        let whole = json!({"kind": "Deployment", "$patch": "delete"});
        assert_eq!(smp(&original, &whole), Value::Null);
    }

    #[test]
    fn patch_merge_is_the_default() {
        let original = json!({"spec": {"a": 1, "containers": [{"name": "x", "image": "x:1"}]}});
        let patch = json!({"spec": {"$patch": "merge", "b": 2,
            "containers": [{"$patch": "merge"}, {"name": "x", "image": "x:2", "$patch": "merge"}]}});
        assert_eq!(
            smp(&original, &patch),
            json!({"spec": {"a": 1, "b": 2, "containers": [{"name": "x", "image": "x:2"}]}})
        );
    }

    #[test]
    fn patch_delete_in_a_list_item_deletes_the_matching_items() {
        let original = yaml(
            "spec:\n  containers:\n  - {name: a}\n  - {name: b}\n  - {name: a, image: dup}\n  - {name: c}\n",
        );
        let patch = yaml(
            "spec:\n  containers:\n  - {name: a, $patch: delete}\n  - {name: zz, $patch: delete}\n",
        );
        assert_eq!(
            smp(&original, &patch),
            yaml("spec:\n  containers:\n  - {name: b}\n  - {name: c}\n")
        );
    }

    #[test]
    fn patch_replace_as_a_list_item_replaces_the_list() {
        let original = yaml(
            "spec:\n  containers:\n  - {name: a, image: a:1}\n  - {name: b}\nmetadata:\n  finalizers: [x, y]\n",
        );
        let patch = yaml(
            "spec:\n  containers:\n  - $patch: replace\n  - {name: c, image: c:1}\nmetadata:\n  finalizers:\n  - z\n  - {$patch: replace}\n",
        );
        assert_eq!(
            smp(&original, &patch),
            yaml("spec:\n  containers:\n  - {name: c, image: c:1}\nmetadata:\n  finalizers: [z]\n")
        );
    }

    #[test]
    fn patch_replace_on_a_keyed_item_replaces_only_that_item() {
        let original = yaml(
            "spec:\n  containers:\n  - {name: a, image: a:1, args: [x]}\n  - {name: b, image: b:1}\n",
        );
        let patch = yaml("spec:\n  containers:\n  - {name: a, image: a:2, $patch: replace}\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("spec:\n  containers:\n  - {name: a, image: a:2}\n  - {name: b, image: b:1}\n")
        );
    }

    #[test]
    fn retain_keys_drops_unlisted_keys_of_the_original() {
        let original =
            yaml("spec:\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1}\n");
        let patch = yaml("spec:\n  strategy:\n    $retainKeys: [type]\n    type: Recreate\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("spec:\n  strategy:\n    type: Recreate\n")
        );
    }

    #[test]
    fn retain_keys_must_list_the_keys_the_patch_sets() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "other": 1}}});
        let e = smp_err(&original, &patch);
        assert!(matches!(e, PatchError::Directive { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/spec/strategy/other");

        let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
        assert_eq!(
            path_of(&smp_err(&original, &patch)),
            "/spec/strategy/$retainKeys"
        );
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type", 3]}}});
        assert_eq!(
            path_of(&smp_err(&original, &patch)),
            "/spec/strategy/$retainKeys/1"
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_values() {
        let original = yaml("metadata:\n  finalizers: [a, b, c, b]\n");
        let patch = yaml("metadata:\n  $deleteFromPrimitiveList/finalizers: [b, zz]\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("metadata:\n  finalizers: [a, c]\n")
        );

        // Deletion applies first, so what the patch adds stays.
        let patch =
            yaml("metadata:\n  $deleteFromPrimitiveList/finalizers: [a, d]\n  finalizers: [d]\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("metadata:\n  finalizers: [b, c, d]\n")
        );

        // A list the original does not have: nothing to delete.
        let patch = yaml("spec:\n  $deleteFromPrimitiveList/args: [x]\n");
        assert_eq!(smp(&original, &patch), original);
    }

    #[test]
    fn delete_from_primitive_list_errors() {
        let original = yaml("metadata:\n  finalizers: x\n");
        let e = smp_err(
            &original,
            &yaml("metadata:\n  $deleteFromPrimitiveList/finalizers: [x]\n"),
        );
        assert!(matches!(e, PatchError::Shape { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/metadata/finalizers");

        let e = smp_err(
            &original,
            &yaml("metadata:\n  $deleteFromPrimitiveList/finalizers: x\n"),
        );
        assert_eq!(path_of(&e), "/metadata/$deleteFromPrimitiveList/finalizers");

        let e = smp_err(
            &original,
            &yaml("spec:\n  $deleteFromPrimitiveList/containers: [a]\n"),
        );
        assert_eq!(path_of(&e), "/spec/$deleteFromPrimitiveList/containers");
        assert!(e.to_string().contains("$patch: delete"), "{e}");

        let e = smp_err(&original, &yaml("spec:\n  $deleteFromPrimitiveList: [a]\n"));
        assert_eq!(path_of(&e), "/spec/$deleteFromPrimitiveList");
    }

    #[test]
    fn set_element_order_orders_a_keyed_list() {
        let original = yaml(
            "spec:\n  containers:\n  - {name: a, image: a:1}\n  - {name: b, image: b:1}\n  - {name: c, image: c:1}\n",
        );
        let patch = yaml(
            "spec:\n  $setElementOrder/containers:\n  - name: d\n  - name: c\n  - name: a\n  - name: gone\n  containers:\n  - {name: d, image: d:1}\n  - {name: a, image: a:2}\n",
        );
        // Listed items first in the directive's order, then the rest (b) as they were.
        assert_eq!(
            smp(&original, &patch),
            yaml(
                "spec:\n  containers:\n  - {name: d, image: d:1}\n  - {name: c, image: c:1}\n  - {name: a, image: a:2}\n  - {name: b, image: b:1}\n",
            )
        );
    }

    #[test]
    fn set_element_order_without_the_list_in_the_patch_reorders_the_original() {
        let original = yaml("spec:\n  containers:\n  - {name: a}\n  - {name: b}\n  - {name: c}\n");
        let patch = yaml("spec:\n  $setElementOrder/containers: [{name: c}, {name: b}]\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("spec:\n  containers:\n  - {name: c}\n  - {name: b}\n  - {name: a}\n")
        );
        // Neither side has the list: nothing to order, and no list appears.
        let patch = yaml("spec:\n  $setElementOrder/initContainers: [{name: c}]\n");
        assert_eq!(smp(&original, &patch), original);
    }

    #[test]
    fn set_element_order_orders_a_primitive_list() {
        let original = yaml("metadata:\n  finalizers: [a, b, c]\n");
        let patch =
            yaml("metadata:\n  $setElementOrder/finalizers: [d, c, a]\n  finalizers: [d]\n");
        assert_eq!(
            smp(&original, &patch),
            yaml("metadata:\n  finalizers: [d, c, a, b]\n")
        );
    }

    #[test]
    fn set_element_order_errors_name_the_path() {
        let original = yaml(DEPLOYMENT);
        let e = smp_err(
            &original,
            &yaml("spec:\n  template:\n    spec:\n      $setElementOrder/containers: {name: podinfod}\n"),
        );
        assert!(matches!(e, PatchError::Directive { .. }), "{e:?}");
        assert_eq!(
            path_of(&e),
            "/spec/template/spec/$setElementOrder/containers"
        );
        assert!(e.to_string().contains("- name: <value>"), "{e}");

        let e = smp_err(
            &original,
            &yaml(
                "spec:\n  template:\n    spec:\n      $setElementOrder/containers: [{image: x}]\n",
            ),
        );
        assert_eq!(
            path_of(&e),
            "/spec/template/spec/$setElementOrder/containers/0"
        );

        let e = smp_err(
            &original,
            &yaml("spec:\n  $setElementOrder/replicas: [1]\n"),
        );
        assert!(matches!(e, PatchError::Shape { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/spec/replicas");

        let e = smp_err(&original, &yaml("spec:\n  $setElementOrder/: []\n"));
        assert_eq!(path_of(&e), "/spec/$setElementOrder/");
    }

    #[test]
    fn bad_patch_directives_are_errors() {
        let original = yaml(DEPLOYMENT);
        let e = smp_err(&original, &yaml("spec:\n  template:\n    $patch: remove\n"));
        assert!(matches!(e, PatchError::Directive { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/spec/template/$patch");
        assert!(e.to_string().contains("$patch: replace"), "{e}");

        let e = smp_err(
            &original,
            &yaml("spec:\n  template:\n    spec:\n      containers:\n      - {name: podinfod, $patch: 3}\n"),
        );
        assert_eq!(path_of(&e), "/spec/template/spec/containers/0/$patch");

        let e = smp_err(
            &original,
            &yaml("spec:\n  template:\n    spec:\n      containers:\n      - $patch: delete\n"),
        );
        assert_eq!(path_of(&e), "/spec/template/spec/containers/0/$patch");
        assert!(e.to_string().contains("name: <value>"), "{e}");
    }

    #[test]
    fn keyed_list_items_must_carry_their_key() {
        let original = yaml(DEPLOYMENT);
        let e = smp_err(
            &original,
            &yaml("spec:\n  template:\n    spec:\n      containers:\n      - {name: podinfod}\n      - {image: x:1}\n"),
        );
        assert!(matches!(e, PatchError::MergeKey { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/spec/template/spec/containers/1");
        assert!(e.to_string().contains("add `name: <value>`"), "{e}");

        let e = smp_err(
            &original,
            &yaml("spec:\n  template:\n    spec:\n      containers:\n      - {name: podinfod, env: [{value: x}]}\n"),
        );
        assert_eq!(path_of(&e), "/spec/template/spec/containers/0/env/0");

        let e = smp_err(
            &original,
            &yaml("spec:\n  template:\n    spec:\n      containers: [podinfod]\n"),
        );
        assert!(matches!(e, PatchError::MergeKey { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/spec/template/spec/containers/0");
    }

    #[test]
    fn the_patch_must_be_a_map() {
        let e = smp_err(&json!({}), &json!([1]));
        assert!(matches!(e, PatchError::Shape { .. }), "{e:?}");
        assert_eq!(path_of(&e), "/");
    }

    #[test]
    fn directives_never_appear_in_the_result() {
        let original = yaml("spec:\n  template:\n    spec:\n      containers: [{name: a}]\n");
        let patch = yaml(
            r#"
spec:
  template:
    spec:
      $setElementOrder/containers: [{name: b}, {name: a}]
      containers:
      - name: b
        $patch: merge
        $setElementOrder/env: [{name: X}]
        env: [{name: X, value: "1"}]
        resources:
          $retainKeys: [limits]
          limits: {cpu: 1}
      volumes:
      - name: v
        secret: {$patch: replace, secretName: s}
      - {name: w, $patch: delete}
      tolerations:
      - {$patch: replace}
      - {key: k, extra: {$patch: merge, a: 1}}
  strategy: {$patch: replace, type: Recreate}
  selector: {$patch: delete}
metadata:
  $deleteFromPrimitiveList/finalizers: [x]
  $setElementOrder/finalizers: [y]
  finalizers: [y]
"#,
        );
        let got = smp(&original, &patch);
        assert_no_directives(&got);
        assert_eq!(
            got,
            yaml(
                r#"
spec:
  template:
    spec:
      containers:
      - name: b
        env: [{name: X, value: "1"}]
        resources: {limits: {cpu: 1}}
      - name: a
      volumes:
      - {name: v, secret: {secretName: s}}
      tolerations:
      - {key: k, extra: {a: 1}}
  strategy: {type: Recreate}
metadata:
  finalizers: [y]
"#,
            )
        );
    }

    #[test]
    fn maps_only_directives_touched_do_not_appear() {
        let original = json!({"kind": "ConfigMap", "data": {"a": "1"}});
        let patch = json!({"spec": {"template": {"$setElementOrder/containers": [{"name": "a"}]}},
            "metadata": {"annotations": {"gone": null}}, "status": {}});
        assert_eq!(
            smp(&original, &patch),
            json!({"kind": "ConfigMap", "data": {"a": "1"}, "status": {}})
        );
    }

    #[test]
    fn dollar_keys_that_are_not_directives_are_data() {
        let original = json!({"spec": {"schema": {"$ref": "#/a"}}});
        let patch = json!({"spec": {"schema": {"$schema": "x", "$ref": "#/b"}}});
        assert_eq!(
            smp(&original, &patch),
            json!({"spec": {"schema": {"$schema": "x", "$ref": "#/b"}}})
        );
    }

    #[test]
    fn json_merge_follows_rfc_7386() {
        // The examples of RFC 7386 appendix A.
        for (original, patch, want) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ] {
            assert_eq!(
                merge(&original, &patch, Strategy::JsonMerge).unwrap(),
                want,
                "{original} + {patch}"
            );
        }
    }

    #[test]
    fn json_merge_replaces_lists_and_keeps_directives_as_data() {
        let original = yaml("spec:\n  containers:\n  - {name: a, image: a:1}\n  - {name: b}\n");
        let patch = yaml("spec:\n  $setElementOrder/containers: [{name: a}]\n  containers:\n  - {name: a, image: a:2}\n");
        assert_eq!(
            merge(&original, &patch, Strategy::JsonMerge).unwrap(),
            yaml("spec:\n  $setElementOrder/containers: [{name: a}]\n  containers:\n  - {name: a, image: a:2}\n")
        );
    }

    #[test]
    fn errors_show_the_path_and_the_fix() {
        let e = smp_err(
            &json!({}),
            &json!({"spec": {"containers": [{"image": "x"}]}}),
        );
        let text = e.to_string();
        assert!(text.starts_with("/spec/containers/0: "), "{text}");
        assert!(text.contains("matched by `name`"), "{text}");
    }
}
