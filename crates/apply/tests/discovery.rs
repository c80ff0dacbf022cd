//! Discovery against the real API server: aggregated discovery is what a current server answers, and it sees
//! exactly what the legacy per-group-version path sees.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;

use tether_apply::Kinds;
use tether_testenv::Cluster;

#[tokio::test]
async fn aggregated_discovery_is_used_and_agrees_with_the_legacy_path() {
    let client = Cluster::shared().client().await;
    let aggregated = Kinds::discover_aggregated(&client)
        .await
        .unwrap()
        .expect("a supported server (1.30 or later) offers aggregated discovery");
    let legacy = Kinds::discover_legacy(&client).await.unwrap();

    // Kinds that only current servers serve, and that Flux v1 era repos were written without.
    for (group, version, kind) in [
        ("autoscaling", "v2", "HorizontalPodAutoscaler"),
        ("batch", "v1", "CronJob"),
        ("policy", "v1", "PodDisruptionBudget"),
        ("", "v1", "ConfigMap"),
    ] {
        let k = aggregated
            .resolve(group, version, kind)
            .unwrap_or_else(|| panic!("{group}/{version} {kind} not discovered"));
        assert!(k.namespaced, "{k:?}");
    }
    let set = |k: &Kinds| k.served().cloned().collect::<BTreeSet<_>>();
    assert_eq!(set(&aggregated), set(&legacy));
    let listable = |k: &Kinds| k.namespaced_listable().cloned().collect::<Vec<_>>();
    assert_eq!(listable(&aggregated), listable(&legacy));
    assert!(
        aggregated.unavailable.is_empty(),
        "{:?}",
        aggregated.unavailable
    );
}
