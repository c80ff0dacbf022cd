//! The registry client against a real registry (Debian's `docker-registry` on loopback, images pushed through
//! the v2 API without Docker), with every request counted by the test proxy in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tether_registry::{
    ClientConfig, Credentials, Error, ImageRepo, Platform, RefreshPolicy, RegistryClient, TagInfo,
    TagPolicy,
};
use tether_testenv::registry::{
    dockerconfigjson, Auth, Counts, Fault, Format, RegistryOptions, RequestKind, TestImage,
    TestRegistry,
};

fn config(registry: &TestRegistry, cache: Option<&Path>) -> ClientConfig {
    ClientConfig {
        insecure_hosts: vec![registry.host.clone()],
        cache_dir: cache.map(Path::to_path_buf),
        ..ClientConfig::default()
    }
}

fn client(registry: &TestRegistry, cache: Option<&Path>) -> RegistryClient {
    RegistryClient::new(config(registry, cache)).unwrap()
}

fn repo(registry: &TestRegistry, path: &str) -> ImageRepo {
    ImageRepo::parse(&registry.repo(path)).unwrap()
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn policy(s: &str) -> TagPolicy {
    TagPolicy::parse(s).unwrap()
}

fn anon() -> Credentials {
    Credentials::anonymous()
}

/// Tag → created, sorted by tag.
fn times(infos: &[TagInfo]) -> Vec<(String, Option<DateTime<Utc>>)> {
    let mut v: Vec<_> = infos.iter().map(|i| (i.tag.clone(), i.created)).collect();
    v.sort();
    v
}

/// Pushes `n` images tagged `v01`…, built a day apart from 2024-01-01.
async fn push_days(registry: &TestRegistry, path: &str, n: u32) {
    let pusher = registry.pusher();
    for i in 1..=n {
        let image = TestImage::new(&format!("2024-01-{i:02}T00:00:00Z"));
        pusher.push(path, &format!("v{i:02}"), &image).await;
    }
}

#[tokio::test]
async fn tag_lists_follow_link_pagination_to_the_end() {
    let registry = TestRegistry::start_with(RegistryOptions {
        page_size: Some(10),
        ..RegistryOptions::default()
    });
    let pusher = registry.pusher();
    let first = pusher
        .push("team/many", "t00", &TestImage::new("2024-01-01T00:00:00Z"))
        .await;
    for i in 1..35 {
        pusher.retag("team/many", &first, &format!("t{i:02}")).await;
    }
    let repo = repo(&registry, "team/many");

    let mut tags = client(&registry, None)
        .list_tags(&repo, &anon())
        .await
        .unwrap();
    tags.sort();
    let expected: Vec<String> = (0..35).map(|i| format!("t{i:02}")).collect();
    assert_eq!(tags, expected);
    assert_eq!(registry.counts().tags_list, 4, "{:#?}", registry.requests());
    assert!(registry
        .requests()
        .iter()
        .any(|r| r.path.contains("last=t29")));

    // The client's own page size is sent as `n` and the pages still add up.
    registry.reset_counts();
    let small = RegistryClient::new(ClientConfig {
        page_size: Some(6),
        ..config(&registry, None)
    })
    .unwrap();
    assert_eq!(small.list_tags(&repo, &anon()).await.unwrap().len(), 35);
    assert_eq!(registry.counts().tags_list, 6);

    let missing = client(&registry, None)
        .list_tags(&self::repo(&registry, "team/none"), &anon())
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::RepositoryNotFound { .. }),
        "{missing}"
    );
}

#[tokio::test]
async fn docker_oci_and_multi_arch_images_on_the_chosen_platform() {
    let registry = TestRegistry::start();
    let pusher = registry.pusher();
    let path = "team/multi";
    pusher
        .push(path, "docker", &TestImage::new("2024-01-01T00:00:00Z"))
        .await;
    pusher
        .push(path, "oci", &TestImage::new("2024-02-01T00:00:00Z").oci())
        .await;
    let list = pusher
        .push_index(
            path,
            "list",
            &[
                TestImage::new("2024-03-01T00:00:00Z"),
                TestImage::new("2024-03-02T00:00:00Z").platform("linux", "arm64", Some("v8")),
            ],
            Format::Docker,
            &[],
        )
        .await;
    let attestation = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": list.children[0].digest,
        "size": list.children[0].manifest.len(),
        "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
    });
    pusher
        .push_index(
            path,
            "index",
            &[
                TestImage::new("2024-04-01T00:00:00Z")
                    .platform("linux", "arm", Some("v7"))
                    .oci(),
                TestImage::new("2024-04-02T00:00:00Z").oci(),
            ],
            Format::Oci,
            &[attestation],
        )
        .await;
    pusher
        .push_index(
            path,
            "armonly",
            &[TestImage::new("2024-05-01T00:00:00Z")
                .platform("linux", "arm64", None)
                .oci()],
            Format::Oci,
            &[],
        )
        .await;
    let repo = repo(&registry, path);

    let amd64 = client(&registry, None)
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    assert_eq!(
        times(&amd64),
        vec![
            ("docker".into(), Some(time("2024-01-01T00:00:00Z"))),
            ("index".into(), Some(time("2024-04-02T00:00:00Z"))),
            ("list".into(), Some(time("2024-03-01T00:00:00Z"))),
            ("oci".into(), Some(time("2024-02-01T00:00:00Z"))),
        ],
        "armonly has no linux/amd64 image and is left out"
    );

    let arm = RegistryClient::new(ClientConfig {
        platform: Platform::parse("linux/arm64/v8").unwrap(),
        ..config(&registry, None)
    })
    .unwrap();
    let details = arm.scan(&repo, &policy("glob:*"), &anon()).await.unwrap();
    let by_tag = |t: &str| details.iter().find(|d| d.tag == t).unwrap();
    assert_eq!(by_tag("list").created(), Some(time("2024-03-02T00:00:00Z")));
    assert_eq!(
        by_tag("list")
            .meta
            .as_ref()
            .unwrap()
            .image_digest
            .as_deref(),
        Some(list.children[1].digest.as_str())
    );
    assert_eq!(by_tag("list").digest.as_deref(), Some(list.digest.as_str()));
    assert_eq!(
        by_tag("armonly").created(),
        Some(time("2024-05-01T00:00:00Z"))
    );
    let excluded = by_tag("index").excluded().unwrap();
    assert!(
        excluded.contains("linux/arm64/v8") && excluded.contains("linux/arm/v7"),
        "{excluded}"
    );
    let newest = arm
        .newest(&repo, &policy("glob:*"), &anon(), 2)
        .await
        .unwrap();
    let newest: Vec<&str> = newest.iter().map(|d| d.tag.as_str()).collect();
    assert_eq!(newest, ["armonly", "list"]);
}

#[tokio::test]
async fn build_times_come_from_the_config_or_the_labels() {
    let registry = TestRegistry::start();
    let pusher = registry.pusher();
    let path = "team/times";
    let epoch = "1970-01-01T00:00:00Z";
    pusher
        .push(
            path,
            "config",
            &TestImage::new("2024-05-01T10:00:00.123456789Z")
                .label("org.opencontainers.image.created", "2020-01-01T00:00:00Z"),
        )
        .await;
    pusher
        .push(
            path,
            "oci-label",
            &TestImage::new(epoch)
                .label("org.opencontainers.image.created", "2024-06-01T00:00:00Z")
                .oci(),
        )
        .await;
    pusher
        .push(
            path,
            "schema-label",
            &TestImage::new(epoch)
                .without_created()
                .label("org.label-schema.build-date", "2024-07-01T00:00:00+02:00"),
        )
        .await;
    pusher
        .push(path, "reproducible", &TestImage::new(epoch))
        .await;
    let repo = repo(&registry, path);
    let client = client(&registry, None);

    let infos = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    assert_eq!(
        times(&infos),
        vec![
            (
                "config".into(),
                Some(time("2024-05-01T10:00:00.123456789Z"))
            ),
            ("oci-label".into(), Some(time("2024-06-01T00:00:00Z"))),
            ("reproducible".into(), Some(time(epoch))),
            ("schema-label".into(), Some(time("2024-06-30T22:00:00Z"))),
        ]
    );
    // The epoch orders nothing: the policy skips it.
    assert_eq!(policy("glob:*").newest(&infos).unwrap().tag, "schema-label");
    assert_eq!(policy("glob:repro*").newest(&infos), None);
    let meta = client
        .image_meta(&repo, "config", &anon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.times.label_created, Some(time("2020-01-01T00:00:00Z")));
}

#[tokio::test]
async fn htpasswd_basic_auth_with_right_wrong_and_no_credentials() {
    let registry = TestRegistry::start_with(RegistryOptions {
        auth: Auth::Htpasswd {
            username: "alice".into(),
            password: "s3cret".into(),
        },
        ..RegistryOptions::default()
    });
    registry
        .pusher()
        .push(
            "team/private",
            "1.0",
            &TestImage::new("2024-01-01T00:00:00Z"),
        )
        .await;
    let repo = repo(&registry, "team/private");
    let client = client(&registry, None);

    let good = Credentials::parse_dockerconfigjson(
        &dockerconfigjson(&registry.host, "alice", "s3cret"),
        "imagePullSecret apps/regcred",
    )
    .unwrap();
    let infos = client
        .candidates(&repo, &policy("glob:*"), &good)
        .await
        .unwrap();
    assert_eq!(
        times(&infos),
        vec![("1.0".into(), Some(time("2024-01-01T00:00:00Z")))]
    );

    registry.reset_counts();
    let wrong = Credentials::parse_dockerconfigjson(
        &dockerconfigjson(&registry.host, "alice", "guess"),
        "imagePullSecret apps/stale",
    )
    .unwrap();
    let err = client
        .candidates(&repo, &policy("glob:*"), &wrong)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{msg}"
    );
    for part in [
        registry.host.as_str(),
        "imagePullSecret apps/stale",
        "'alice'",
        "rejected",
    ] {
        assert!(msg.contains(part), "'{part}' missing from: {msg}");
    }
    assert!(!msg.contains("guess"), "the password leaks: {msg}");
    assert_eq!(
        registry.counts().tags_list,
        2,
        "one challenge, one rejected try, no retry loop"
    );

    let err = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("no credentials for {}", registry.host))
            && err.contains("imagePullSecret"),
        "{err}"
    );
}

#[tokio::test]
async fn bearer_token_flow_fetches_one_token_per_repository() {
    let registry = TestRegistry::start_with(RegistryOptions {
        auth: Auth::Token {
            credentials: Some(("bot".into(), "robot-token".into())),
        },
        ..RegistryOptions::default()
    });
    push_days(&registry, "team/tok", 3).await;
    let repo = repo(&registry, "team/tok");
    let client = client(&registry, None);
    let mut creds = Credentials::anonymous();
    creds.insert(
        &registry.host,
        "bot",
        "robot-token",
        "--docker-config /etc/docker.json",
    );

    let infos = client
        .candidates(&repo, &policy("glob:*"), &creds)
        .await
        .unwrap();
    assert_eq!(infos.len(), 3);
    let counts = registry.counts();
    assert_eq!(counts.token, 1, "{:#?}", registry.requests());
    assert_eq!((counts.manifest_get, counts.blob), (3, 3));
    // One challenged request; every other one carried the token.
    assert_eq!(
        registry
            .requests()
            .iter()
            .filter(|r| r.status == 401)
            .count(),
        1
    );

    let mut wrong = Credentials::anonymous();
    wrong.insert(&registry.host, "bot", "expired", "imagePullSecret ci/bot");
    let err = client
        .candidates(&repo, &policy("glob:*"), &wrong)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("imagePullSecret ci/bot") && err.contains("rejected"),
        "{err}"
    );

    // A token service that hands out anonymous tokens, like Docker Hub for public images.
    let public = TestRegistry::start_with(RegistryOptions {
        auth: Auth::Token { credentials: None },
        ..RegistryOptions::default()
    });
    push_days(&public, "library/app", 1).await;
    let infos = self::client(&public, None)
        .candidates(
            &self::repo(&public, "library/app"),
            &policy("glob:*"),
            &anon(),
        )
        .await
        .unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(public.counts().token, 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_backed_off_and_the_result_is_complete() {
    let registry = TestRegistry::start();
    push_days(&registry, "team/busy", 4).await;
    let repo = repo(&registry, "team/busy");
    let client = client(&registry, None);

    registry.inject(Fault::too_many_requests(RequestKind::ManifestGet, 2, "1"));
    let http_date = (Utc::now() + chrono::Duration::seconds(2))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    registry.inject(Fault::too_many_requests(RequestKind::Blob, 1, &http_date));
    let start = Instant::now();
    let infos = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(
        times(&infos),
        (1..=4)
            .map(|i| (
                format!("v{i:02}"),
                Some(time(&format!("2024-01-{i:02}T00:00:00Z")))
            ))
            .collect::<Vec<_>>()
    );
    let counts = registry.counts();
    assert_eq!(counts.injected, 3);
    assert_eq!(registry.pending_faults(), 0);
    assert_eq!(counts.manifest_get, 4 + 2);
    assert_eq!(counts.blob, 4 + 1);
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After was not honoured: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn persistent_throttling_is_a_typed_error_never_a_partial_result() {
    let registry = TestRegistry::start();
    push_days(&registry, "team/throttled", 5).await;
    let repo = repo(&registry, "team/throttled");
    let dir = tempfile::tempdir().unwrap();
    let client = RegistryClient::new(ClientConfig {
        max_retries: 2,
        max_retry_wait: Duration::from_secs(5),
        ..config(&registry, Some(dir.path()))
    })
    .unwrap();

    // Every manifest request is throttled: the scan fails as a whole after bounded retries.
    registry.inject(Fault::too_many_requests(
        RequestKind::ManifestGet,
        1000,
        "0",
    ));
    let err = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RateLimited { host, attempts: 3, .. } if *host == registry.host),
        "{err:?}"
    );
    assert!(err.to_string().contains("rate limited"), "{err}");
    let attempts = registry.counts().manifest_get;
    assert!(
        (3..=3 * 4).contains(&attempts),
        "bounded retries, at most the in-flight tags: {attempts}"
    );
    registry.clear_faults();

    // A Retry-After longer than the client waits fails at once, and the host stays backed off: the next
    // call sends nothing at all.
    registry.reset_counts();
    registry.inject(Fault::too_many_requests(RequestKind::TagsList, 1, "3600"));
    let start = Instant::now();
    let err = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3600)),
        "{err:?}"
    );
    let err = client
        .candidates(&repo, &policy("semver:*"), &anon())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { attempts: 0, .. }),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(registry.counts().total(), 1);

    // Another client (a restart) is not blocked and gets everything.
    let infos = self::client(&registry, Some(dir.path()))
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    assert_eq!(infos.len(), 5);
    assert!(infos.iter().all(|i| i.created.is_some()));
}

#[tokio::test]
async fn a_restart_makes_no_manifest_or_blob_requests_for_cached_tags() {
    let registry = TestRegistry::start();
    push_days(&registry, "team/cached", 5).await;
    let repo = repo(&registry, "team/cached");
    let dir = tempfile::tempdir().unwrap();

    let first = client(&registry, Some(dir.path()))
        .candidates(&repo, &policy("glob:v*"), &anon())
        .await
        .unwrap();
    let counts = registry.counts();
    assert_eq!(
        (counts.tags_list, counts.manifest_get, counts.blob),
        (1, 5, 5)
    );

    registry.reset_counts();
    let restarted = client(&registry, Some(dir.path()));
    let second = restarted
        .candidates(&repo, &policy("glob:v*"), &anon())
        .await
        .unwrap();
    assert_eq!(times(&first), times(&second));
    assert_eq!(
        registry.counts(),
        Counts {
            tags_list: 1,
            ..Counts::default()
        },
        "{:#?}",
        registry.requests()
    );

    // A new tag costs its manifest and config; a new tag for a known image costs only its manifest.
    registry.reset_counts();
    let pusher = registry.pusher();
    pusher
        .push(
            "team/cached",
            "v06",
            &TestImage::new("2024-01-06T00:00:00Z"),
        )
        .await;
    let v01 = pusher
        .push(
            "team/cached",
            "v01",
            &TestImage::new("2024-01-01T00:00:00Z"),
        )
        .await;
    pusher.retag("team/cached", &v01, "v01-again").await;
    let third = restarted
        .candidates(&repo, &policy("glob:v*"), &anon())
        .await
        .unwrap();
    assert_eq!(third.len(), 7);
    let counts = registry.counts();
    assert_eq!(
        (counts.manifest_get, counts.blob),
        (2, 1),
        "{:#?}",
        registry.requests()
    );
}

#[tokio::test]
async fn semver_and_literal_policies_fetch_only_the_tag_list() {
    let registry = TestRegistry::start();
    let pusher = registry.pusher();
    let image = pusher
        .push("team/sv", "1.4.8", &TestImage::new("2024-01-01T00:00:00Z"))
        .await;
    for tag in ["1.4.9", "1.5.0", "latest", "1.4.10-rc.1"] {
        pusher.retag("team/sv", &image, tag).await;
    }
    let repo = repo(&registry, "team/sv");
    let client = client(&registry, None);

    let semver = policy("semver:~1.4");
    let infos = client.candidates(&repo, &semver, &anon()).await.unwrap();
    assert_eq!(
        times(&infos),
        vec![("1.4.8".into(), None), ("1.4.9".into(), None)]
    );
    assert_eq!(semver.newest(&infos).unwrap().tag, "1.4.9");
    let literal = client
        .candidates(&repo, &policy("glob:1.5.0"), &anon())
        .await
        .unwrap();
    assert_eq!(times(&literal), vec![("1.5.0".into(), None)]);
    assert_eq!(
        registry.counts(),
        Counts {
            tags_list: 2,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn due_tags_are_checked_with_one_head_and_refetched_only_when_moved() {
    let registry = TestRegistry::start();
    push_days(&registry, "team/due", 3).await;
    let repo = repo(&registry, "team/due");
    let dir = tempfile::tempdir().unwrap();
    let client = RegistryClient::new(ClientConfig {
        refresh: RefreshPolicy {
            new_tag: Duration::ZERO,
            min: Duration::ZERO,
            max: Duration::ZERO,
        },
        ..config(&registry, Some(dir.path()))
    })
    .unwrap();
    client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();

    registry.reset_counts();
    client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    let counts = registry.counts();
    assert_eq!(
        (counts.manifest_head, counts.manifest_get, counts.blob),
        (3, 0, 0)
    );

    // v02 is rebuilt: only it is fetched again.
    registry
        .pusher()
        .push("team/due", "v02", &TestImage::new("2024-03-01T00:00:00Z"))
        .await;
    registry.reset_counts();
    let infos = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    let counts = registry.counts();
    assert_eq!(
        (counts.manifest_head, counts.manifest_get, counts.blob),
        (3, 1, 1)
    );
    assert_eq!(
        policy("glob:*").newest(&infos).unwrap().created,
        Some(time("2024-03-01T00:00:00Z"))
    );

    // A deleted tag disappears from the candidates and the cache index.
    let v03 = registry
        .pusher()
        .push("team/due", "v03", &TestImage::new("2024-01-03T00:00:00Z"))
        .await;
    registry.pusher().delete("team/due", &v03.digest).await;
    let infos = client
        .candidates(&repo, &policy("glob:*"), &anon())
        .await
        .unwrap();
    let tags: Vec<String> = times(&infos).into_iter().map(|(t, _)| t).collect();
    assert_eq!(tags, ["v01", "v02"]);
}

#[tokio::test]
async fn an_https_client_against_a_plain_http_registry_says_how_to_fix_it() {
    let registry = TestRegistry::start();
    let client = RegistryClient::new(ClientConfig::default()).unwrap();
    let start = Instant::now();
    let err = client
        .list_tags(&repo(&registry, "team/x"), &anon())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            tether_registry::Error::Transport {
                hint: Some(tether_registry::TransportHint::MaybePlainHttp),
                ..
            }
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains(&registry.host) && err.contains("plain HTTP"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "TLS errors are not retried"
    );
}

#[tokio::test]
async fn tags_the_distribution_spec_does_not_allow_are_ignored() {
    // A tag ends up in a manifest and in automation's commit message: one holding a newline could forge
    // trailers there. Only a broken or hostile registry lists such tags.
    let registry = TestRegistry::start();
    registry.inject(Fault::answer(
        RequestKind::TagsList,
        200,
        r#"{"name":"team/x","tags":["v1","v2\n\nSigned-off-by: evil","../up","-rc","v3","","x y"]}"#,
    ));
    let tags = client(&registry, None)
        .list_tags(&repo(&registry, "team/x"), &anon())
        .await
        .unwrap();
    assert_eq!(tags, ["v1", "v3"]);
    assert_eq!(registry.pending_faults(), 0);
}

#[tokio::test]
async fn an_error_answer_is_read_and_shown_only_in_part() {
    // A registry may answer an error with any body: only its start is read, and only a few of its
    // messages are shown, each cut short and escaped.
    let registry = TestRegistry::start();
    let errors: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"code":"DENIED","message":"no {i}\nforged line {}"}}"#,
                "x".repeat(1000)
            )
        })
        .collect();
    registry.inject(Fault::answer(
        RequestKind::TagsList,
        403,
        &format!(r#"{{"errors":[{}]}}"#, errors.join(",")),
    ));
    let err = client(&registry, None)
        .list_tags(&repo(&registry, "team/x"), &anon())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("DENIED: no 0\\nforged line"), "{err}");
    assert!(err.contains("… and 7 more") && !err.contains('\n'), "{err}");
    assert!(err.len() < 2000, "{} bytes: {err}", err.len());
    // A body far larger than any error: the answer is still an error, not the client's memory.
    registry.inject(Fault::answer(
        RequestKind::TagsList,
        403,
        &format!(
            r#"{{"errors":[{{"code":"DENIED","message":"{}"}}]}}"#,
            "y".repeat(50 << 20)
        ),
    ));
    let err = client(&registry, None)
        .list_tags(&repo(&registry, "team/x"), &anon())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.len() < 2000, "{} bytes", err.len());
}
