//! Prometheus metrics of syncs, garbage collection and image automation (OpenMetrics text on `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `result` (and, for failures, `reason`) of a sync or automation pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: String,
    /// A stable error label (`rejected`, `read_only`, ...) or empty.
    pub reason: String,
}

/// What happened to objects in the last successful sync.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `created`, `configured`, `unchanged`, `skipped`, `deleted`, `gc_kept`.
    pub outcome: String,
}

/// Every metric tether exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    syncs: Family<ResultLabels, Counter>,
    sync_duration: Family<ResultLabels, Histogram>,
    objects: Family<OutcomeLabels, Gauge>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    automation_passes: Family<ResultLabels, Counter>,
    automation_updates: Counter,
    notifications: Family<OutcomeLabels, Counter>,
    drift_repairs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `tether` prefix, with the process's API request gate.
    pub fn new() -> Self {
        Self::with_gate(&crate::throttle::Gate::shared())
    }

    /// [`Metrics::new`] showing this gate's limit and refusals.
    pub fn with_gate(gate: &crate::throttle::Gate) -> Self {
        let mut registry = Registry::with_prefix("tether");
        let (limit, refused) = gate.metrics();
        registry.register(
            "k8s_request_concurrency_limit",
            "Requests tether may have in flight toward the API server (watches and Lease renewals aside): at \
             most 256, cut to half of what was in flight when the server answers 429 (priority and \
             fairness), grown back by about one per round of served answers and doubled by each minute \
             without a 429 (counted when the next request goes out)",
            limit,
        );
        registry.register(
            "k8s_requests_refused",
            "429 answers from the API server to gated requests (all but watches and Lease renewals); kube \
             sends a refused request again after its Retry-After, within its retry budget",
            refused,
        );
        let syncs = Family::<ResultLabels, Counter>::default();
        registry.register("syncs", "Syncs by result and failure reason", syncs.clone());
        let sync_duration = Family::<ResultLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 12))
        });
        registry.register(
            "sync_duration_seconds",
            "Wall time of a sync",
            sync_duration.clone(),
        );
        let objects = Family::<OutcomeLabels, Gauge>::default();
        registry.register(
            "sync_objects",
            "Objects per outcome in the last successful sync",
            objects.clone(),
        );
        let last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "sync_last_success_timestamp_seconds",
            "Unix time of the last successful sync (alert when it grows old)",
            last_success.clone(),
        );
        let automation_passes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "automation_passes",
            "Image automation passes by result",
            automation_passes.clone(),
        );
        let automation_updates = Counter::default();
        registry.register(
            "automation_updates",
            "Container images updated by automation",
            automation_updates.clone(),
        );
        let notifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by outcome: sent, failed (after retries) or dropped (queue full)",
            notifications.clone(),
        );
        let drift_repairs = Counter::default();
        registry.register(
            "drift_repairs",
            "Objects set back to Git between syncs after a watch saw them changed or deleted",
            drift_repairs.clone(),
        );
        Metrics {
            drift_repairs,
            notifications,
            registry,
            syncs,
            sync_duration,
            objects,
            last_success,
            automation_passes,
            automation_updates,
        }
    }

    /// Records a successful sync and its object counts.
    pub fn sync_succeeded(&self, seconds: f64, outcomes: &[(&str, usize)]) {
        let labels = result("success", "");
        self.syncs.get_or_create(&labels).inc();
        self.sync_duration.get_or_create(&labels).observe(seconds);
        for (outcome, n) in outcomes {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            self.objects
                .get_or_create(&OutcomeLabels {
                    outcome: (*outcome).to_owned(),
                })
                .set(n);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_success.set(now);
    }

    /// Counts objects set back to Git between syncs.
    pub fn drift_repaired(&self, n: usize) {
        self.drift_repairs.inc_by(n as u64);
    }

    /// Records a failed sync.
    pub fn sync_failed(&self, seconds: f64, reason: &str) {
        let labels = result("failure", reason);
        self.syncs.get_or_create(&labels).inc();
        self.sync_duration.get_or_create(&labels).observe(seconds);
    }

    /// Records an automation pass; `failure` is the stable label of what went wrong (the pass as a whole,
    /// or the first workload that could not be checked), `None` when everything was checked.
    pub fn automation_pass(&self, failure: Option<&str>, updates: usize) {
        let labels = match failure {
            None => result("success", ""),
            Some(reason) => result("failure", reason),
        };
        self.automation_passes.get_or_create(&labels).inc();
        self.automation_updates
            .inc_by(u64::try_from(updates).unwrap_or(u64::MAX));
    }

    /// Counts a notification `sent`, `failed` or `dropped`.
    pub fn notification(&self, outcome: &str) {
        self.notifications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn result(result: &str, reason: &str) -> ResultLabels {
    ResultLabels {
        result: result.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_sync_results_object_counts_and_freshness() {
        let m = Metrics::new();
        m.sync_succeeded(0.2, &[("created", 3), ("unchanged", 5)]);
        m.sync_failed(0.1, "rejected");
        let text = m.encode();
        assert!(
            text.contains(r#"tether_syncs_total{result="success",reason=""} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tether_syncs_total{result="failure",reason="rejected"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tether_sync_objects{outcome="created"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("tether_sync_last_success_timestamp_seconds"),
            "{text}"
        );
    }

    #[test]
    fn automation_failures_are_labelled_by_what_failed() {
        let m = Metrics::new();
        m.automation_pass(None, 2);
        m.automation_pass(Some("rate_limited"), 0);
        let text = m.encode();
        assert!(
            text.contains(
                r#"tether_automation_passes_total{result="failure",reason="rate_limited"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("tether_automation_updates_total 2"), "{text}");
    }

    #[test]
    fn the_api_request_limit_and_refusals_are_exported() {
        let text = Metrics::with_gate(&crate::throttle::Gate::new(256)).encode();
        assert!(
            text.contains("tether_k8s_request_concurrency_limit 256"),
            "{text}"
        );
        assert!(
            text.contains("tether_k8s_requests_refused_total 0"),
            "{text}"
        );
    }
}
