//! Rewrites manifests written for the Kubernetes of 2019–2021 to the apiVersions a current server serves,
//! so an old config repository applies again. Like `yaml_edit`, only the lines that must change do:
//! comments, quoting, key order, indentation, line endings and the other documents of a file stay as they
//! were, and the commit is the diff a person would have written.
//!
//! Each conversion is made twice: on the parsed object, which is the reference, and as splices of the text.
//! The spliced text is read back and must equal the reference document by document; a layout the splices
//! misjudge becomes an error instead of a wrong manifest. Which apiVersions are gone, and what replaces
//! them, comes from `tether_core::removed`; what else changes with each is the `CONVERSIONS` table here.

#[cfg(test)]
mod tests;

use serde_json::{json, Map, Value};
use tether_core::removed::{self, Removal};

use crate::yaml_edit::spans::{self, Kind, Node, Style};

/// One converted object, so the caller can report what changed and what to review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 1-based line where the object starts, so the report points at it.
    pub line: usize,
    /// The object's kind.
    pub kind: String,
    /// The object's `metadata.name` (`(no name)` when it has none).
    pub name: String,
    /// The apiVersion it was written for.
    pub from: String,
    /// The apiVersion it has now.
    pub to: String,
    /// Each field conversion made, and each change of meaning left as written, for review.
    pub notes: Vec<String>,
}

/// Why a document cannot be migrated automatically (the caller reports it; nothing is written for that file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// The file is not YAML that can be read back, so nothing about it can be verified.
    #[error("the file is not valid YAML, so it was not migrated: {reason}")]
    Yaml {
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The conversion needs knowledge of the cluster or the software behind the object.
    #[error(
        "line {line}: {kind} '{name}' uses {api_version}, which Kubernetes no longer serves; convert it \
         by hand: {what}"
    )]
    Manual {
        /// 1-based line where the object starts.
        line: usize,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// Its removed apiVersion.
        api_version: String,
        /// What changes, and what the person must decide.
        what: String,
    },
    /// The object lacks what the new apiVersion requires, or holds what it cannot express.
    #[error("line {line}: {kind} '{name}' cannot be converted to {to} automatically: {what}")]
    Invalid {
        /// 1-based line where the object starts.
        line: usize,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The apiVersion it would have become.
        to: String,
        /// What is missing or wrong, and what to write.
        what: String,
    },
    /// The part to convert is written in a way that cannot be rewritten in place safely.
    #[error("line {line}: cannot convert {kind} '{name}' in place: {reason}")]
    Layout {
        /// 1-based line of the offending node.
        line: usize,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// What is in the way, and how to write it instead.
        reason: String,
    },
    /// Reading the result back showed a change other than the conversion.
    #[error(
        "converting {kind} '{name}' (line {line}) would have changed more than the conversion \
         ({detail}), so the file was left unchanged; please report it with the file"
    )]
    Verification {
        /// 1-based line where the object starts.
        line: usize,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The first unexpected difference.
        detail: String,
    },
}

// ---- what each removal involves ---------------------------------------------------------------------

/// What converting one removed apiVersion/kind involves besides the apiVersion line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// Nothing else changes.
    ApiVersion,
    /// To apps/v1: `spec.selector` becomes required, `spec.rollbackTo` is gone.
    Workload,
    /// autoscaling/v2beta1 to v2: each metric's target and identifier become nested objects.
    Hpa,
    /// To networking.k8s.io/v1: backends name a `service`, paths need a `pathType`.
    Ingress,
    /// Same schema, but an empty `spec.selector` now selects every pod.
    Pdb,
    /// flowcontrol before v1beta3: `assuredConcurrencyShares` became `nominalConcurrencyShares`.
    PriorityLevel,
    /// Needs a person; the text says what to decide (`None`: the removal's own description).
    Manual(Option<&'static str>),
}

const WORKLOADS: &[&str] = &["Deployment", "DaemonSet", "ReplicaSet", "StatefulSet"];

const CRD: &str = "apiextensions.k8s.io/v1 replaces spec.version with spec.versions[] (each with served, \
    storage and its own schema.openAPIV3Schema), and every schema must be structural (a type for every \
    field; x-kubernetes-preserve-unknown-fields: true instead of spec.preserveUnknownFields); \
    additionalPrinterColumns and subresources move into each version with JSONPath renamed jsonPath, and \
    conversion.webhookClientConfig becomes conversion.webhook.clientConfig. Writing a structural schema \
    needs knowledge of the resource: take the v1 CRD from the project that publishes it if there is one";

const WEBHOOKS: &str = "admissionregistration.k8s.io/v1 requires admissionReviewVersions (the \
    AdmissionReview versions the webhook server understands, e.g. [v1, v1beta1]) and sideEffects (None or \
    NoneOnDryRun) on every webhook, and changes defaults (failurePolicy Fail instead of Ignore, matchPolicy \
    Equivalent instead of Exact, timeoutSeconds 10 instead of 30); check what the webhook server supports, \
    set those fields, then change apiVersion";

const CSR: &str = "certificates.k8s.io/v1 requires spec.signerName (e.g. \
    kubernetes.io/kube-apiserver-client) and spec.usages; choose the signer the certificate is for, then \
    change apiVersion";

const PSP: &str =
    "PodSecurityPolicy was removed in Kubernetes 1.25 without a replacement: delete this \
    object and label each Namespace for Pod Security Admission instead (e.g. \
    pod-security.kubernetes.io/enforce: baseline), or use a policy engine";

/// Conversions that are more than the apiVersion line, by old apiVersion and kinds (empty: every kind).
/// Removals not listed convert by apiVersion alone when `tether_core::removed` says nothing else changes,
/// and need a person otherwise.
const CONVERSIONS: &[(&str, &[&str], Conversion)] = &[
    ("extensions/v1beta1", WORKLOADS, Conversion::Workload),
    ("apps/v1beta1", WORKLOADS, Conversion::Workload),
    ("apps/v1beta2", WORKLOADS, Conversion::Workload),
    (
        "apps/v1beta1",
        &["ControllerRevision"],
        Conversion::ApiVersion,
    ),
    (
        "apps/v1beta2",
        &["ControllerRevision"],
        Conversion::ApiVersion,
    ),
    (
        "autoscaling/v2beta1",
        &["HorizontalPodAutoscaler"],
        Conversion::Hpa,
    ),
    ("extensions/v1beta1", &["Ingress"], Conversion::Ingress),
    (
        "networking.k8s.io/v1beta1",
        &["Ingress"],
        Conversion::Ingress,
    ),
    (
        "networking.k8s.io/v1beta1",
        &["IngressClass"],
        Conversion::ApiVersion,
    ),
    ("policy/v1beta1", &["PodDisruptionBudget"], Conversion::Pdb),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        &["PriorityLevelConfiguration"],
        Conversion::PriorityLevel,
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta2",
        &["PriorityLevelConfiguration"],
        Conversion::PriorityLevel,
    ),
    (
        "apiextensions.k8s.io/v1beta1",
        &[],
        Conversion::Manual(Some(CRD)),
    ),
    (
        "admissionregistration.k8s.io/v1beta1",
        &[],
        Conversion::Manual(Some(WEBHOOKS)),
    ),
    (
        "certificates.k8s.io/v1beta1",
        &[],
        Conversion::Manual(Some(CSR)),
    ),
    (
        "extensions/v1beta1",
        &["PodSecurityPolicy"],
        Conversion::Manual(Some(PSP)),
    ),
    (
        "policy/v1beta1",
        &["PodSecurityPolicy"],
        Conversion::Manual(Some(PSP)),
    ),
];

fn conversion(api_version: &str, kind: &str, removal: &Removal) -> Conversion {
    let listed = CONVERSIONS
        .iter()
        .find(|(v, kinds, _)| *v == api_version && (kinds.is_empty() || kinds.contains(&kind)));
    match listed {
        Some((_, _, c)) => *c,
        None if removal.replacement.is_some() && removal.changes.is_none() => {
            Conversion::ApiVersion
        }
        None => Conversion::Manual(None),
    }
}

/// A v2beta1 metric source: where it sits in a metric and which of its fields move where in v2.
struct MetricSource {
    ty: &'static str,
    key: &'static str,
    /// The target fields it may set, the one that wins first.
    targets: &'static [&'static str],
    /// Whether setting two of `targets` is invalid (rather than the first winning).
    exclusive: bool,
    /// Whether it has `metricName`, which becomes `metric.name`.
    named: bool,
    /// Its selector field, which becomes `metric.selector`.
    selector: Option<&'static str>,
    /// Whether its `target` is the described object, which becomes `describedObject`.
    described: bool,
}

const RESOURCE_TARGETS: &[&str] = &["targetAverageUtilization", "targetAverageValue"];

const METRIC_SOURCES: &[MetricSource] = &[
    MetricSource {
        ty: "Resource",
        key: "resource",
        targets: RESOURCE_TARGETS,
        exclusive: true,
        named: false,
        selector: None,
        described: false,
    },
    MetricSource {
        ty: "ContainerResource",
        key: "containerResource",
        targets: RESOURCE_TARGETS,
        exclusive: true,
        named: false,
        selector: None,
        described: false,
    },
    MetricSource {
        ty: "Pods",
        key: "pods",
        targets: &["targetAverageValue"],
        exclusive: true,
        named: true,
        selector: Some("selector"),
        described: false,
    },
    MetricSource {
        // The HPA controller used averageValue when set and ignored targetValue.
        ty: "Object",
        key: "object",
        targets: &["averageValue", "targetValue"],
        exclusive: false,
        named: true,
        selector: Some("selector"),
        described: true,
    },
    MetricSource {
        ty: "External",
        key: "external",
        targets: &["targetValue", "targetAverageValue"],
        exclusive: true,
        named: true,
        selector: Some("metricSelector"),
        described: false,
    },
];

/// v2beta1 target fields: `(field, autoscaling/v2 target type, field under target)`.
const METRIC_TARGETS: &[(&str, &str, &str)] = &[
    (
        "targetAverageUtilization",
        "Utilization",
        "averageUtilization",
    ),
    ("targetAverageValue", "AverageValue", "averageValue"),
    ("averageValue", "AverageValue", "averageValue"),
    ("targetValue", "Value", "value"),
];

impl MetricSource {
    fn of(ty: &str) -> Option<&'static MetricSource> {
        METRIC_SOURCES.iter().find(|s| s.ty == ty)
    }

    /// Fields only the v2beta1 form has.
    fn old_keys(&self) -> Vec<&'static str> {
        let mut keys = self.targets.to_vec();
        if self.named {
            keys.push("metricName");
        }
        keys.extend(self.selector);
        if self.described {
            keys.push("target");
        }
        keys
    }

    /// Fields only the v2 form has.
    fn new_keys(&self) -> &'static [&'static str] {
        if self.described {
            &["describedObject"]
        } else if self.named {
            &["metric", "target"]
        } else {
            &["target"]
        }
    }
}

fn metric_target(old: &str) -> Option<(&'static str, &'static str)> {
    METRIC_TARGETS
        .iter()
        .find(|(field, _, _)| *field == old)
        .map(|(_, ty, new)| (*ty, *new))
}

/// A servicePort written as a string of digits: v1 takes it as the port number (a port name has a letter).
fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn port_number(n: u64) -> Option<u64> {
    (1..=65535).contains(&n).then_some(n)
}

// ---- the entry point ----------------------------------------------------------------------------------

/// The object being converted, for messages.
#[derive(Debug, Clone)]
struct Who {
    line: usize,
    kind: String,
    name: String,
}

impl Who {
    fn manual(&self, api_version: &str, what: String) -> MigrateError {
        MigrateError::Manual {
            line: self.line,
            kind: self.kind.clone(),
            name: self.name.clone(),
            api_version: api_version.to_owned(),
            what,
        }
    }

    fn verification(&self, detail: impl Into<String>) -> MigrateError {
        MigrateError::Verification {
            line: self.line,
            kind: self.kind.clone(),
            name: self.name.clone(),
            detail: detail.into(),
        }
    }
}

/// What a person must do for a removal tether does not convert.
fn manual_reason(what: Option<&str>, to: Option<&str>, removal: &Removal) -> String {
    let changes = removal
        .changes
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    match (what, to) {
        (Some(what), _) => what.to_owned(),
        (None, Some(to)) => format!(
            "{to} changes more than the apiVersion{changes}, which tether does not convert; make that \
             change, then set apiVersion to {to}"
        ),
        (None, None) => format!("it has no replacement{changes}"),
    }
}

/// Replaces bytes `start..end` of the text with `with`.
#[derive(Debug)]
struct Splice {
    start: usize,
    end: usize,
    with: String,
}

/// The removed apiVersion and kind of a document, with what the table says about them.
fn removed_of(doc: &Value) -> Option<(&str, &str, Removal)> {
    let api_version = doc.get("apiVersion")?.as_str()?;
    let kind = doc.get("kind")?.as_str()?;
    removed::removal(api_version, kind).map(|r| (api_version, kind, r))
}

/// Converts every document of `text` whose apiVersion Kubernetes removed; returns the new text (equal to
/// `text` when nothing needed converting) and one Change per converted document.
pub fn migrate_text(text: &str) -> Result<(String, Vec<Change>), MigrateError> {
    let values: Vec<Value> =
        tether_render::yaml::from_str_multiple(text).map_err(|e| MigrateError::Yaml {
            reason: e.to_string(),
        })?;
    if !values.iter().any(|v| removed_of(v).is_some()) {
        return Ok((text.to_owned(), Vec::new()));
    }
    let trees = spans::parse(text).map_err(|reason| MigrateError::Yaml { reason })?;
    if trees.len() != values.len() {
        return Err(MigrateError::Yaml {
            reason: format!(
                "the parser disagreed with itself about the number of documents ({} vs {})",
                trees.len(),
                values.len()
            ),
        });
    }
    let mut expected = values.clone();
    let mut splices: Vec<(usize, Splice)> = Vec::new();
    let mut changes = Vec::new();
    let mut whos: Vec<(usize, Who)> = Vec::new();
    for (index, (value, root)) in values.iter().zip(&trees).enumerate() {
        let Some((from, kind, removal)) = removed_of(value) else {
            continue;
        };
        let who = Who {
            line: spans::line_number(text, root.start),
            kind: kind.to_owned(),
            name: value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("(no name)")
                .to_owned(),
        };
        let conv = conversion(from, kind, &removal);
        let to = match (conv, removal.replacement) {
            (Conversion::Manual(what), to) => {
                return Err(who.manual(from, manual_reason(what, to, &removal)))
            }
            (_, None) => return Err(who.manual(from, manual_reason(None, None, &removal))),
            (_, Some(to)) => to,
        };
        let (converted, notes) =
            reference(conv, value, from, kind, to).map_err(|what| MigrateError::Invalid {
                line: who.line,
                kind: who.kind.clone(),
                name: who.name.clone(),
                to: to.to_owned(),
                what,
            })?;
        let mut edit = DocEdit {
            text,
            root,
            who: &who,
            step: indent_step(text, root).unwrap_or(2),
            splices: Vec::new(),
        };
        edit.api_version(to)?;
        edit.convert(conv)?;
        splices.extend(edit.splices.into_iter().map(|s| (index, s)));
        expected[index] = converted;
        changes.push(Change {
            line: who.line,
            kind: who.kind.clone(),
            name: who.name.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
            notes,
        });
        whos.push((index, who));
    }
    finish(text, &expected, splices, &whos).map(|out| (out, changes))
}

/// Applies the splices (each tagged with its document) and reads the result back: every document must
/// equal its `expected` value, so a splice that misjudged the layout fails here instead of being written.
fn finish(
    text: &str,
    expected: &[Value],
    splices: Vec<(usize, Splice)>,
    whos: &[(usize, Who)],
) -> Result<String, MigrateError> {
    let blame = |doc: usize| -> &Who {
        // The converted document at or before `doc`: the one whose splices could have reached it.
        whos.iter()
            .rev()
            .find(|(i, _)| *i <= doc)
            .or(whos.first())
            .map_or(&FALLBACK, |(_, w)| w)
    };
    let last = expected.len();
    let out =
        apply(text, splices).map_err(|doc| blame(doc).verification("two changes overlapped"))?;
    let reread: Vec<Value> = tether_render::yaml::from_str_multiple(&out)
        .map_err(|e| blame(last).verification(format!("the result would not parse: {e}")))?;
    if reread.len() != expected.len() {
        return Err(blame(last).verification(format!(
            "the file would have {} documents instead of {}",
            reread.len(),
            expected.len()
        )));
    }
    for (index, (want, got)) in expected.iter().zip(&reread).enumerate() {
        if let Some(path) = first_difference(want, got, String::new()) {
            return Err(blame(index)
                .verification(format!("document {} would differ at '{path}'", index + 1)));
        }
    }
    Ok(out)
}

static FALLBACK: Who = Who {
    line: 1,
    kind: String::new(),
    name: String::new(),
};

/// Applies the splices (each tagged with its document), last first; an overlap names the document.
fn apply(text: &str, mut splices: Vec<(usize, Splice)>) -> Result<String, usize> {
    splices.sort_by_key(|(_, s)| std::cmp::Reverse((s.start, s.end)));
    let mut out = text.to_owned();
    let mut limit = out.len();
    for (doc, splice) in &splices {
        if splice.start > splice.end || splice.end > limit {
            return Err(*doc);
        }
        out.replace_range(splice.start..splice.end, &splice.with);
        limit = splice.start;
    }
    Ok(out)
}

/// The JSON-pointer-like path of the first difference between two values, if any.
fn first_difference(want: &Value, got: &Value, path: String) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => a.keys().chain(b.keys()).find_map(|key| {
            let child = format!("{path}/{key}");
            match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) => first_difference(x, y, child),
                _ => Some(child),
            }
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}/{i}"))),
        _ if want == got => None,
        _ if path.is_empty() => Some("/".to_owned()),
        _ => Some(path),
    }
}

// ---- the reference: the conversion on the parsed object -----------------------------------------------

/// `doc` converted to `to`, and the notes for the report; `Err` says what the person must add or fix.
fn reference(
    conv: Conversion,
    doc: &Value,
    from: &str,
    kind: &str,
    to: &str,
) -> Result<(Value, Vec<String>), String> {
    let mut out = doc.clone();
    let mut notes = Vec::new();
    let obj = out
        .as_object_mut()
        .ok_or_else(|| "the document is not a mapping".to_owned())?;
    obj.insert("apiVersion".to_owned(), Value::String(to.to_owned()));
    match conv {
        Conversion::ApiVersion | Conversion::Manual(_) => {}
        Conversion::Workload => workload_value(obj, from, kind, &mut notes)?,
        Conversion::Hpa => hpa_value(obj, &mut notes)?,
        Conversion::Ingress => ingress_value(obj, &mut notes)?,
        Conversion::Pdb => pdb_value(obj, from, &mut notes),
        Conversion::PriorityLevel => priority_level_value(obj, &mut notes)?,
    }
    Ok((out, notes))
}

/// A scalar as a person would write it, for notes.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn workload_value(
    obj: &mut Map<String, Value>,
    from: &str,
    kind: &str,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let spec = obj
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| "it has no spec".to_owned())?;
    match spec.get("selector") {
        Some(Value::Null) => {
            return Err(
                "spec.selector is empty; set spec.selector.matchLabels to the labels of \
                        spec.template.metadata.labels"
                    .to_owned(),
            )
        }
        Some(_) => {}
        None => {
            let labels = spec
                .get("template")
                .and_then(|t| t.pointer("/metadata/labels"))
                .and_then(Value::as_object)
                .filter(|labels| !labels.is_empty())
                .ok_or_else(|| {
                    "spec.selector is missing and the pod template has no labels, so there is nothing \
                     to select its pods by; add labels to spec.template.metadata.labels and the same \
                     labels under spec.selector.matchLabels"
                        .to_owned()
                })?
                .clone();
            if let Some((key, _)) = labels.iter().find(|(_, v)| !v.is_string()) {
                return Err(format!(
                    "the pod template label '{key}' is not a string; quote its value"
                ));
            }
            let shown: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect();
            spec.insert("selector".to_owned(), json!({ "matchLabels": labels }));
            notes.push(format!(
                "spec.selector added: matchLabels {} from spec.template.metadata.labels ({from} \
                 defaulted it to them; apps/v1 requires it)",
                shown.join(",")
            ));
        }
    }
    if spec.remove("rollbackTo").is_some() {
        notes.push(
            "spec.rollbackTo dropped (apps/v1 has none; roll back with `kubectl rollout undo`)"
                .to_owned(),
        );
    }
    let defaulted_on_delete = (kind == "DaemonSet" && from == "extensions/v1beta1")
        || (kind == "StatefulSet" && from == "apps/v1beta1");
    if defaulted_on_delete && !spec.contains_key("updateStrategy") {
        notes.push(format!(
            "spec.updateStrategy is unset: apps/v1 defaults it to RollingUpdate where {from} defaulted \
             to OnDelete, so pods are now replaced as soon as the template changes; add \
             updateStrategy: {{type: OnDelete}} to keep the old behaviour"
        ));
    }
    Ok(())
}

fn hpa_value(obj: &mut Map<String, Value>, notes: &mut Vec<String>) -> Result<(), String> {
    let Some(metrics) = obj.get_mut("spec").and_then(|s| s.get_mut("metrics")) else {
        return Ok(());
    };
    if metrics.is_null() {
        return Ok(());
    }
    let metrics = metrics
        .as_array_mut()
        .ok_or_else(|| "spec.metrics is not a list".to_owned())?;
    for (i, metric) in metrics.iter_mut().enumerate() {
        let at = format!("metrics[{i}]");
        let ty = metric
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("spec.{at} has no type"))?
            .to_owned();
        let source = MetricSource::of(&ty).ok_or_else(|| {
            format!("spec.{at} has type {ty}, which autoscaling/v2beta1 does not have")
        })?;
        let fields = metric
            .get_mut(source.key)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("spec.{at} has type {ty} but no {} mapping", source.key))?;
        metric_value(source, fields, &at, notes)?;
    }
    Ok(())
}

fn metric_value(
    source: &MetricSource,
    fields: &mut Map<String, Value>,
    at: &str,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let key = source.key;
    let first_of = |keys: &[&'static str]| keys.iter().find(|k| fields.contains_key(**k)).copied();
    match (first_of(&source.old_keys()), first_of(source.new_keys())) {
        (None, Some(_)) => return Ok(()),
        (Some(old), Some(new)) => {
            return Err(format!(
                "spec.{at}.{key} mixes {old} (autoscaling/v2beta1) with {new} (autoscaling/v2); \
                 write it in one form"
            ))
        }
        _ => {}
    }
    if source.described {
        let described = fields.remove("target").ok_or_else(|| {
            format!("spec.{at}.{key} has no target (the object the metric describes)")
        })?;
        fields.insert("describedObject".to_owned(), described);
        notes.push(format!("{at}: target → describedObject"));
    }
    if source.named {
        let name = fields
            .remove("metricName")
            .ok_or_else(|| format!("spec.{at}.{key} has no metricName"))?;
        notes.push(format!("{at}: metricName {} → metric.name", show(&name)));
        let mut metric = Map::new();
        metric.insert("name".to_owned(), name);
        if let Some(selector_key) = source.selector {
            if let Some(selector) = fields.remove(selector_key) {
                metric.insert("selector".to_owned(), selector);
                notes.push(format!("{at}: {selector_key} → metric.selector"));
            }
        }
        fields.insert("metric".to_owned(), Value::Object(metric));
    }
    let present: Vec<(&str, Value)> = source
        .targets
        .iter()
        .filter_map(|t| fields.remove(*t).map(|v| (*t, v)))
        .collect();
    let Some(((first, value), rest)) = present.split_first() else {
        return Err(format!(
            "spec.{at}.{key} has no target; set {}",
            source.targets.join(" or ")
        ));
    };
    if let (true, Some((other, _))) = (source.exclusive, rest.first()) {
        return Err(format!(
            "spec.{at}.{key} sets both {first} and {other}; keep one"
        ));
    }
    let (ty, new) = metric_target(first).ok_or_else(|| format!("no conversion for {first}"))?;
    notes.push(format!("{at}: {first} {} → target.{new}", show(value)));
    fields.insert("target".to_owned(), json!({ "type": ty, new: value }));
    for (other, value) in rest {
        notes.push(format!(
            "{at}: {other} {} dropped (the controller ignored it because {first} is set)",
            show(value)
        ));
    }
    Ok(())
}

fn ingress_value(obj: &mut Map<String, Value>, notes: &mut Vec<String>) -> Result<(), String> {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(mut backend) = spec.remove("backend") {
        if spec.contains_key("defaultBackend") {
            return Err("it has both spec.backend and spec.defaultBackend; keep one".to_owned());
        }
        notes.push("spec.backend → spec.defaultBackend".to_owned());
        backend_value(&mut backend, "spec.defaultBackend", notes)?;
        spec.insert("defaultBackend".to_owned(), backend);
    }
    let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, rule) in rules.iter_mut().enumerate() {
        let Some(paths) = rule
            .get_mut("http")
            .and_then(|h| h.get_mut("paths"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for (j, path) in paths.iter_mut().enumerate() {
            let at = format!("rules[{i}].http.paths[{j}]");
            let path = path
                .as_object_mut()
                .ok_or_else(|| format!("spec.{at} is not a mapping"))?;
            if let Some(backend) = path.get_mut("backend") {
                backend_value(backend, &format!("{at}.backend"), notes)?;
            }
            match path.get("pathType") {
                None => {
                    path.insert(
                        "pathType".to_owned(),
                        Value::String("ImplementationSpecific".to_owned()),
                    );
                    notes.push(format!(
                        "{at}: pathType ImplementationSpecific added (what a path without one meant \
                         before)"
                    ));
                }
                Some(Value::Null) => {
                    return Err(format!(
                        "spec.{at}.pathType is empty; set it (ImplementationSpecific keeps the old \
                         meaning)"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn backend_value(backend: &mut Value, at: &str, notes: &mut Vec<String>) -> Result<(), String> {
    let Some(fields) = backend.as_object_mut() else {
        return Err(format!("spec.{at} is not a mapping"));
    };
    if !fields.contains_key("serviceName") && !fields.contains_key("servicePort") {
        return Ok(());
    }
    if fields.contains_key("service") {
        return Err(format!(
            "spec.{at} mixes serviceName/servicePort with service; write it in one form"
        ));
    }
    let name = fields
        .remove("serviceName")
        .filter(Value::is_string)
        .ok_or_else(|| format!("spec.{at} has a servicePort but no serviceName"))?;
    let port = fields
        .remove("servicePort")
        .ok_or_else(|| format!("spec.{at} has a serviceName but no servicePort"))?;
    let bad_port = || {
        format!(
            "spec.{at}.servicePort {} is not a port number or name",
            show(&port)
        )
    };
    let (field, value) = match &port {
        Value::Number(n) => (
            "number",
            Value::from(n.as_u64().and_then(port_number).ok_or_else(bad_port)?),
        ),
        Value::String(s) if digits(s) => (
            "number",
            Value::from(s.parse().ok().and_then(port_number).ok_or_else(bad_port)?),
        ),
        Value::String(s) if !s.is_empty() => ("name", port.clone()),
        _ => return Err(bad_port()),
    };
    notes.push(format!(
        "{at}: serviceName {}, servicePort {} → service.name, service.port.{field}",
        show(&name),
        show(&port)
    ));
    fields.insert(
        "service".to_owned(),
        json!({ "name": name, "port": { field: value } }),
    );
    Ok(())
}

fn pdb_value(obj: &Map<String, Value>, from: &str, notes: &mut Vec<String>) {
    let empty = |v: &Value| match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    };
    let selects_nothing = obj
        .get("spec")
        .and_then(|s| s.get("selector"))
        .and_then(Value::as_object)
        .is_some_and(|selector| selector.values().all(empty));
    if selects_nothing {
        notes.push(format!(
            "spec.selector is empty: in policy/v1 it selects every pod in the namespace, where in {from} \
             it selected none; left as written, so set matchLabels if that is not intended"
        ));
    }
}

fn priority_level_value(
    obj: &mut Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let Some(limited) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("limited"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    let Some(shares) = limited.remove("assuredConcurrencyShares") else {
        return Ok(());
    };
    if limited.contains_key("nominalConcurrencyShares") {
        return Err(
            "spec.limited has both assuredConcurrencyShares and nominalConcurrencyShares; keep one"
                .to_owned(),
        );
    }
    notes.push(format!(
        "spec.limited: assuredConcurrencyShares {} → nominalConcurrencyShares",
        show(&shares)
    ));
    limited.insert("nominalConcurrencyShares".to_owned(), shares);
    Ok(())
}

// ---- the text: the same conversion as splices ---------------------------------------------------------

/// The column of the key at `pos` if only indentation and `- ` list markers precede it on its line.
fn key_column(text: &str, pos: usize) -> Option<usize> {
    let start = spans::line_start(text, pos);
    let prefix = &text.as_bytes()[start..pos];
    prefix
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b' ' || (b == b'-' && prefix.get(i + 1) == Some(&b' ')))
        .then_some(pos - start)
}

/// How much deeper a nested block mapping's keys are than its own key, the first time the document nests
/// one: the step new nested lines use.
fn indent_step(text: &str, node: &Node) -> Option<usize> {
    if node.alias {
        return None;
    }
    match &node.kind {
        Kind::Map(entries) => entries.iter().find_map(|(key, value)| {
            let here = match &value.kind {
                Kind::Map(children) if !value.alias && !spans::is_flow(text, value) => {
                    children.first().and_then(|(child, _)| {
                        let outer = key_column(text, key.start)?;
                        let inner = spans::indent_of(text, child.start)?;
                        (inner > outer).then(|| inner - outer)
                    })
                }
                _ => None,
            };
            here.or_else(|| indent_step(text, value))
        }),
        Kind::Seq(items) => items.iter().find_map(|item| indent_step(text, item)),
        _ => None,
    }
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

/// Indents every non-blank line of `lines` (which starts at a line start) by `n` more spaces.
fn reindent(lines: &str, n: usize) -> String {
    lines
        .split_inclusive('\n')
        .map(|line| {
            if line.trim().is_empty() {
                line.to_owned()
            } else {
                format!("{}{line}", pad(n))
            }
        })
        .collect()
}

/// One entry of a mapping moving under a new parent key.
struct Member<'n> {
    entry: &'n (Node, Node),
    /// Its key path under the parent: `["name"]`, or `["port", "number"]` for a further level.
    keys: Vec<&'static str>,
    /// New text for its (scalar) value, when the value changes too.
    value: Option<String>,
}

impl<'n> Member<'n> {
    fn new(entry: &'n (Node, Node), keys: &[&'static str]) -> Self {
        Member {
            entry,
            keys: keys.to_vec(),
            value: None,
        }
    }
}

/// The splices for one document.
struct DocEdit<'a> {
    text: &'a str,
    root: &'a Node,
    who: &'a Who,
    /// The document's indentation step, for new nested lines.
    step: usize,
    splices: Vec<Splice>,
}

impl DocEdit<'_> {
    fn layout(&self, node: &Node, reason: impl Into<String>) -> MigrateError {
        MigrateError::Layout {
            line: spans::line_number(self.text, node.start),
            kind: self.who.kind.clone(),
            name: self.who.name.clone(),
            reason: reason.into(),
        }
    }

    fn alias(&self, node: &Node) -> MigrateError {
        self.layout(
            node,
            "it is a YAML alias (*…) or comes from a merge key (<<), so its text is shared with another \
             place; write it out in full here",
        )
    }

    fn push(&mut self, start: usize, end: usize, with: String) {
        self.splices.push(Splice { start, end, with });
    }

    /// The column of `key`, which must be in block style.
    fn column(&self, key: &Node) -> Result<usize, MigrateError> {
        key_column(self.text, key.start).ok_or_else(|| {
            self.layout(
                key,
                "it is inside a flow-style mapping or list ({…} or […]); write that part in block \
                 style, one key per line",
            )
        })
    }

    /// The indentation of `key`, which must start its own line.
    fn own_line(&self, key: &Node) -> Result<usize, MigrateError> {
        spans::indent_of(self.text, key.start).ok_or_else(|| {
            self.layout(
                key,
                "the key does not start its own line; write that mapping in block style, one key per \
                 line",
            )
        })
    }

    /// The entries of a block mapping that is to be edited inside.
    fn block_map<'n>(
        &self,
        node: &'n Node,
        what: &str,
    ) -> Result<&'n [(Node, Node)], MigrateError> {
        if node.alias {
            return Err(self.alias(node));
        }
        if spans::is_flow(self.text, node) {
            return Err(self.layout(
                node,
                format!("{what} is written in flow style ({{…}}); write it in block style, one key per line"),
            ));
        }
        node.entries()
            .ok_or_else(|| self.layout(node, format!("{what} is not a mapping")))
    }

    /// Refuses what stands between a key and its value when moving the text would change its meaning or
    /// break a reference: anchors and block scalars. Tags and comments are fine.
    fn check_gap(&self, key: &Node, value: &Node) -> Result<(), MigrateError> {
        if key.alias || value.alias {
            return Err(self.alias(value));
        }
        if matches!(value.kind, Kind::Null) && value.start == value.end {
            return Ok(());
        }
        // Reported at the key: anchors and block indicators stand on its line.
        spans::check_between(self.text, key, value).map_err(|reason| self.layout(key, &reason))
    }

    /// Refuses a subtree to be moved or re-indented that holds aliases, anchors or block scalars.
    fn check_tree(&self, node: &Node) -> Result<(), MigrateError> {
        if node.alias {
            return Err(self.alias(node));
        }
        match &node.kind {
            Kind::Map(entries) => {
                for (key, value) in entries {
                    self.check_gap(key, value)?;
                    self.check_tree(value)?;
                }
            }
            Kind::Seq(items) => {
                for item in items {
                    let before = self.text[..item.start].trim_end();
                    let token = before
                        .rsplit(char::is_whitespace)
                        .next()
                        .unwrap_or_default();
                    if token.starts_with(['&', '|', '>']) {
                        return Err(self.layout(
                            item,
                            "a list item carries a YAML anchor or is a block scalar; write it out \
                             plainly",
                        ));
                    }
                    self.check_tree(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Offset just past the last line of a block-mapping entry.
    fn entry_end(&self, entry: &(Node, Node)) -> Result<usize, MigrateError> {
        let column = self.column(&entry.0)?;
        Ok(spans::block_entry_end(
            self.text, &entry.0, &entry.1, column,
        ))
    }

    /// Offset of the line break ending an entry's last line: where lines after it are inserted.
    fn last_break(&self, entry: &(Node, Node)) -> Result<usize, MigrateError> {
        let end = self.entry_end(entry)?;
        let before = &self.text[..end];
        Ok(match before.strip_suffix('\n') {
            Some(rest) => rest.strip_suffix('\r').unwrap_or(rest).len(),
            None => end,
        })
    }

    fn rename(&mut self, key: &Node, new: &str) -> Result<(), MigrateError> {
        if key.alias {
            return Err(self.alias(key));
        }
        if key.as_str().is_none() || self.text[key.start..key.end].contains('\n') {
            return Err(self.layout(key, "the key is not a one-line string"));
        }
        self.push(key.start, key.end, new.to_owned());
        Ok(())
    }

    fn delete(&mut self, entry: &(Node, Node)) -> Result<(), MigrateError> {
        self.check_gap(&entry.0, &entry.1)?;
        self.check_tree(&entry.1)?;
        self.own_line(&entry.0)?;
        let start = spans::line_start(self.text, entry.0.start);
        let end = self.entry_end(entry)?;
        self.push(start, end, String::new());
        Ok(())
    }

    /// Inserts lines (extra indentation, text) after `entry`, at its key's column.
    fn insert_after(
        &mut self,
        entry: &(Node, Node),
        lines: &[(usize, String)],
    ) -> Result<(), MigrateError> {
        self.check_gap(&entry.0, &entry.1)?;
        let column = self.column(&entry.0)?;
        let at = self.last_break(entry)?;
        let eol = spans::eol_at(self.text, entry.0.start);
        let with = lines
            .iter()
            .map(|(extra, line)| format!("{eol}{}{line}", pad(column + extra)))
            .collect();
        self.push(at, at, with);
        Ok(())
    }

    /// Inserts lines (extra indentation, text) before the entry whose key is `key`, at its column.
    fn insert_before(&mut self, key: &Node, lines: &[(usize, String)]) -> Result<(), MigrateError> {
        let column = self.column(key)?;
        let eol = spans::eol_at(self.text, key.start);
        if spans::indent_of(self.text, key.start).is_some() {
            let with = lines
                .iter()
                .map(|(extra, line)| format!("{}{line}{eol}", pad(column + extra)))
                .collect();
            let at = spans::line_start(self.text, key.start);
            self.push(at, at, with);
        } else {
            // The key follows a `- ` marker: the first new line takes its place there.
            let mut with = String::new();
            for (i, (extra, line)) in lines.iter().enumerate() {
                if i > 0 {
                    with.push_str(&pad(column + extra));
                }
                with.push_str(line);
                with.push_str(eol);
            }
            with.push_str(&pad(column));
            self.push(key.start, key.start, with);
        }
        Ok(())
    }

    /// `keys[0]: keys[1]: …` as nested block keys, the first at `column`.
    fn key_path(&self, keys: &[&str], column: usize, eol: &str) -> String {
        let mut out = String::new();
        for (depth, key) in keys.iter().enumerate() {
            if depth > 0 {
                out.push(':');
                out.push_str(eol);
                out.push_str(&pad(column + depth * self.step));
            }
            out.push_str(key);
        }
        out
    }

    /// Moves `members`, entries of the block mapping `siblings`, under a new key `parent` written where the
    /// first of them is, with `header` lines first. Members that follow each other are re-indented where
    /// they are, so their comments stay on their lines; the others move up after them.
    fn nest(
        &mut self,
        siblings: &[(Node, Node)],
        parent: &str,
        header: &[String],
        members: Vec<Member<'_>>,
    ) -> Result<(), MigrateError> {
        let text = self.text;
        let mut members = members
            .into_iter()
            .map(|m| {
                siblings
                    .iter()
                    .position(|e| std::ptr::eq(e, m.entry))
                    .map(|i| (i, m))
                    .ok_or_else(|| {
                        self.who
                            .verification("a key to convert is not in its mapping")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by_key(|(i, _)| *i);
        for (_, member) in &members {
            let (key, value) = member.entry;
            self.check_gap(key, value)?;
            self.check_tree(value)?;
            if member.value.is_some()
                && (!value.is_scalar() || text[value.start..value.end].contains('\n'))
            {
                return Err(self.layout(value, "the value is not a one-line scalar"));
            }
        }
        let Some(((first_index, first), rest)) = members.split_first() else {
            return Ok(());
        };
        let first_key = &first.entry.0;
        let column = self.column(first_key)?;
        let inner = column + self.step;
        let eol = spans::eol_at(text, first_key.start);
        let mut head = format!("{parent}:{eol}");
        for line in header {
            head.push_str(&format!("{}{line}{eol}", pad(inner)));
        }
        head.push_str(&pad(inner));
        head.push_str(&self.key_path(&first.keys, inner, eol));
        self.push(first_key.start, first_key.end, head);
        self.rewrite_in_place(first)?;
        let mut chain_end = first.entry;
        let mut previous = *first_index;
        let mut moved = String::new();
        for (index, member) in rest {
            let key = &member.entry.0;
            if self.own_line(key)? != column {
                return Err(self.layout(key, "the keys of this mapping are not at one indentation"));
            }
            let path = self.key_path(&member.keys, inner, eol);
            if moved.is_empty() && *index == previous + 1 {
                self.push(
                    spans::line_start(text, key.start),
                    key.end,
                    format!("{}{path}", pad(inner)),
                );
                self.rewrite_in_place(member)?;
                chain_end = member.entry;
            } else {
                moved.push_str(eol);
                moved.push_str(&pad(inner));
                moved.push_str(&path);
                moved.push_str(&self.moved_rest(member)?);
                let start = spans::line_start(text, key.start);
                let end = self.entry_end(member.entry)?;
                self.push(start, end, String::new());
            }
            previous = *index;
        }
        if !moved.is_empty() {
            let at = self.last_break(chain_end)?;
            self.push(at, at, moved);
        }
        Ok(())
    }

    /// The value side of a member nested where it is: its new value, and its further lines re-indented.
    fn rewrite_in_place(&mut self, member: &Member<'_>) -> Result<(), MigrateError> {
        let (key, value) = member.entry;
        if let Some(new) = &member.value {
            self.push(value.start, value.end, new.clone());
        }
        let from = spans::line_end(self.text, key.start);
        let to = self.last_break(member.entry)?;
        if from < to {
            let lines = reindent(&self.text[from..to], self.step * member.keys.len());
            self.push(from, to, lines);
        }
        Ok(())
    }

    /// The text after a moved member's key, with its new value and its further lines re-indented.
    fn moved_rest(&self, member: &Member<'_>) -> Result<String, MigrateError> {
        let text = self.text;
        let (key, value) = member.entry;
        let end = self.last_break(member.entry)?;
        let rest = match &member.value {
            Some(new) => format!(
                "{}{new}{}",
                &text[key.end..value.start],
                &text[value.end..end]
            ),
            None => text[key.end..end].to_owned(),
        };
        Ok(match rest.split_once('\n') {
            Some((line, more)) => {
                format!("{line}\n{}", reindent(more, self.step * member.keys.len()))
            }
            None => rest,
        })
    }

    fn api_version(&mut self, to: &str) -> Result<(), MigrateError> {
        let (key, value) = self
            .root
            .entry("apiVersion")
            .ok_or_else(|| self.who.verification("the document has no apiVersion"))?;
        self.check_gap(key, value)?;
        spans::check_scalar_bytes(self.text, value).map_err(|r| self.layout(value, r))?;
        let flow = spans::is_flow(self.text, self.root);
        let with = spans::render(to, spans::style_of(self.text, value), flow);
        self.push(value.start, value.end, with);
        Ok(())
    }

    fn convert(&mut self, conv: Conversion) -> Result<(), MigrateError> {
        match conv {
            Conversion::ApiVersion | Conversion::Pdb | Conversion::Manual(_) => Ok(()),
            Conversion::Workload => self.workload(),
            Conversion::Hpa => self.hpa(),
            Conversion::Ingress => self.ingress(),
            Conversion::PriorityLevel => self.priority_level(),
        }
    }

    fn workload(&mut self) -> Result<(), MigrateError> {
        let root = self.root;
        let Some((spec_key, spec)) = root.entry("spec") else {
            return Ok(());
        };
        let rollback = spec.entry("rollbackTo");
        let add_selector = spec.entry("selector").is_none();
        if rollback.is_none() && !add_selector {
            return Ok(());
        }
        let entries = self.block_map(spec, "spec")?;
        if let Some(entry) = rollback {
            self.delete(entry)?;
        }
        if !add_selector {
            return Ok(());
        }
        let labels = spec
            .get("template")
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .and_then(Node::entries)
            .ok_or_else(|| self.who.verification("the pod template has no labels"))?;
        let step = self.step;
        let mut lines = vec![
            (0, "selector:".to_owned()),
            (step, "matchLabels:".to_owned()),
        ];
        for (key, value) in labels {
            let (Some(k), Some(v)) = (key.as_str(), value.as_str()) else {
                return Err(self.layout(key, "a pod template label is not a string; quote it"));
            };
            lines.push((
                2 * step,
                format!(
                    "{}: {}",
                    spans::render_key(k, false),
                    spans::render(v, Style::Plain, false)
                ),
            ));
        }
        let template = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("template"))
            .ok_or_else(|| self.layout(spec_key, "spec has no template"))?;
        // After the entry before the template, so a comment above the template stays with it.
        let anchor = entries[..template]
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() != Some("rollbackTo"));
        match anchor {
            Some(entry) => self.insert_after(entry, &lines),
            None => self.insert_before(&entries[0].0, &lines),
        }
    }

    fn hpa(&mut self) -> Result<(), MigrateError> {
        let root = self.root;
        let Some(Kind::Seq(items)) = root
            .get("spec")
            .and_then(|s| s.get("metrics"))
            .map(|m| &m.kind)
        else {
            return Ok(());
        };
        for (i, item) in items.iter().enumerate() {
            let Some(source) = item
                .get("type")
                .and_then(Node::as_str)
                .and_then(MetricSource::of)
            else {
                continue;
            };
            let Some(node) = item.get(source.key) else {
                continue;
            };
            let old = source.old_keys();
            let is_old = |(k, _): &(Node, Node)| k.as_str().is_some_and(|k| old.contains(&k));
            if !node.entries().is_some_and(|e| e.iter().any(is_old)) {
                continue;
            }
            let entries = self.block_map(node, &format!("spec.metrics[{i}].{}", source.key))?;
            let find = |name: &str| entries.iter().find(|(k, _)| k.as_str() == Some(name));
            if source.described {
                if let Some((key, _)) = find("target") {
                    self.rename(key, "describedObject")?;
                }
            }
            if source.named {
                let mut members = Vec::new();
                members.extend(find("metricName").map(|e| Member::new(e, &["name"])));
                members.extend(
                    source
                        .selector
                        .and_then(find)
                        .map(|e| Member::new(e, &["selector"])),
                );
                self.nest(entries, "metric", &[], members)?;
            }
            let present: Vec<_> = source
                .targets
                .iter()
                .filter_map(|t| find(t).map(|e| (*t, e)))
                .collect();
            if let Some(((first, entry), rest)) = present.split_first() {
                let (ty, new) = metric_target(first)
                    .ok_or_else(|| self.who.verification(format!("no conversion for {first}")))?;
                self.nest(
                    entries,
                    "target",
                    &[format!("type: {ty}")],
                    vec![Member::new(entry, &[new])],
                )?;
                for (_, entry) in rest {
                    self.delete(entry)?;
                }
            }
        }
        Ok(())
    }

    fn ingress(&mut self) -> Result<(), MigrateError> {
        let root = self.root;
        let Some(spec) = root.get("spec") else {
            return Ok(());
        };
        if let Some((key, backend)) = spec.entry("backend") {
            self.check_gap(key, backend)?;
            self.rename(key, "defaultBackend")?;
            self.backend(backend, "spec.backend")?;
        }
        let Some(Kind::Seq(rules)) = spec.get("rules").map(|r| &r.kind) else {
            return Ok(());
        };
        for (i, rule) in rules.iter().enumerate() {
            let Some(Kind::Seq(paths)) = rule
                .get("http")
                .and_then(|h| h.get("paths"))
                .map(|p| &p.kind)
            else {
                continue;
            };
            for (j, path) in paths.iter().enumerate() {
                let what = format!("spec.rules[{i}].http.paths[{j}]");
                if let Some(backend) = path.get("backend") {
                    self.backend(backend, &format!("{what}.backend"))?;
                }
                if path.entry("pathType").is_some() {
                    continue;
                }
                let entries = self.block_map(path, &what)?;
                let line = [(0, "pathType: ImplementationSpecific".to_owned())];
                match (path.entry("path"), entries.first()) {
                    (Some(entry), _) => self.insert_after(entry, &line)?,
                    (None, Some((first, _))) => self.insert_before(first, &line)?,
                    (None, None) => return Err(self.layout(path, format!("{what} is empty"))),
                }
            }
        }
        Ok(())
    }

    /// `serviceName`/`servicePort` of one backend become `service: {name, port: {number|name}}`.
    fn backend(&mut self, node: &Node, what: &str) -> Result<(), MigrateError> {
        let find = |name: &str| {
            node.entries()
                .and_then(|e| e.iter().find(|(k, _)| k.as_str() == Some(name)))
        };
        let (name, port) = (find("serviceName"), find("servicePort"));
        if name.is_none() && port.is_none() {
            return Ok(());
        }
        let entries = self.block_map(node, what)?;
        let mut members = Vec::new();
        members.extend(name.map(|e| Member::new(e, &["name"])));
        if let Some(entry) = port {
            let (field, value) = match &entry.1.kind {
                Kind::Str(s) if digits(s) => {
                    let n =
                        s.parse().ok().and_then(port_number).ok_or_else(|| {
                            self.layout(&entry.1, "servicePort is not a port number")
                        })?;
                    ("number", Some(n.to_string()))
                }
                Kind::Str(_) => ("name", None),
                _ => ("number", None),
            };
            members.push(Member {
                entry,
                keys: vec!["port", field],
                value,
            });
        }
        self.nest(entries, "service", &[], members)
    }

    fn priority_level(&mut self) -> Result<(), MigrateError> {
        let root = self.root;
        let shares = root
            .get("spec")
            .and_then(|s| s.get("limited"))
            .and_then(|l| l.entry("assuredConcurrencyShares"));
        if let Some((key, _)) = shares {
            self.rename(key, "nominalConcurrencyShares")?;
        }
        Ok(())
    }
}
