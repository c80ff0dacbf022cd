use super::*;
use chrono::TimeZone;

fn p(value: &str) -> TagPolicy {
    TagPolicy::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn err(value: &str) -> String {
    match TagPolicy::parse(value) {
        Ok(policy) => panic!("{value} parsed as {policy}"),
        Err(e) => e.to_string(),
    }
}

/// A build time `minutes` after a fixed day.
fn at(minutes: i64) -> Option<DateTime<Utc>> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .map(|t| t + chrono::Duration::minutes(minutes))
}

fn tags(list: &[(&str, Option<DateTime<Utc>>)]) -> Vec<TagInfo> {
    list.iter().map(|(t, c)| TagInfo::new(*t, *c)).collect()
}

fn newest(policy: &str, candidates: &[TagInfo]) -> Option<String> {
    p(policy).newest(candidates).map(|t| t.tag.clone())
}

fn sorted(policy: &str, candidates: &[TagInfo]) -> Vec<String> {
    p(policy)
        .sorted(candidates)
        .into_iter()
        .map(|t| t.tag.clone())
        .collect()
}

// ---- parsing -------------------------------------------------------------------------------------------

#[test]
fn a_value_without_prefix_is_a_glob_and_the_default_allows_every_tag() {
    assert_eq!(p("1.2.*"), p("glob:1.2.*"));
    assert_eq!(p("1.2.*").kind(), PolicyKind::Glob);
    assert_eq!(TagPolicy::default(), p("glob:*"));
    assert_eq!(TagPolicy::default().to_string(), "glob:*");
    assert!(TagPolicy::default().matches("anything-at-all"));
}

#[test]
fn display_shows_the_canonical_prefix_and_the_pattern() {
    assert_eq!(p("semver:~1.4").to_string(), "semver:~1.4");
    assert_eq!(p("regex:^v\\d+$").to_string(), "regexp:^v\\d+$");
    assert_eq!(p("  regexp: ^v\\d+$ \n").to_string(), "regexp:^v\\d+$");
    assert_eq!(p("main-*").to_string(), "glob:main-*");
    assert_eq!(
        "semver:^1".parse::<TagPolicy>().map(|p| p.kind()),
        Ok(PolicyKind::Semver)
    );
}

#[test]
fn invalid_patterns_are_errors_naming_the_pattern_instead_of_matching_everything() {
    let e = err("semver:>=1.0 <2.y");
    assert!(e.contains("'>=1.0 <2.y'") && e.contains("'<2.y'"), "{e}");
    let e = err("semver:foo || ^1.0");
    assert!(e.contains("'foo'"), "{e}");
    let e = err("semver:^1.0 ||");
    assert!(e.contains("empty"), "{e}");
    let e = err("semver:1.2.3.4");
    assert!(e.contains("1.2.3.4"), "{e}");
    let e = err("semver:!=1.2.3");
    assert!(e.contains("!= is not supported"), "{e}");
    let e = err("semver:1.0 -");
    assert!(e.contains("hyphen range"), "{e}");
    let e = err("semver:>=");
    assert!(e.contains("'>='"), "{e}");
    let e = err("regexp:v(1");
    assert!(
        e.starts_with("invalid regular expression 'v(1'") && e.contains("unclosed group"),
        "{e}"
    );
    let e = err("glob:[abc");
    assert!(
        e.starts_with("invalid glob pattern '[abc'") && e.contains("unclosed"),
        "{e}"
    );
    let e = err("sem:1.x");
    assert!(e.contains("'sem:'") && e.contains("semver:"), "{e}");
    for empty in ["", "glob:", "semver:", "regex: ", "regexp:"] {
        assert!(
            matches!(TagPolicy::parse(empty), Err(PolicyError::Empty { .. })),
            "{empty:?}"
        );
    }
    assert!(err("semver:").contains("glob:*"));
}

#[test]
fn huge_regexes_are_refused() {
    let e = err("regex:(\\w{100}){100}");
    assert!(e.contains("simplify"), "{e}");
}

// ---- matching ------------------------------------------------------------------------------------------

#[test]
fn latest_is_a_candidate_only_for_the_exact_glob_latest() {
    for policy in [
        "glob:*",
        "*",
        "glob:lat*",
        "glob:latest*",
        "regexp:.*",
        "regex:^latest$",
        "semver:*",
    ] {
        assert!(!p(policy).matches("latest"), "{policy}");
    }
    assert!(p("glob:latest").matches("latest"));
    assert!(p("latest").matches("latest"));
    assert!(!p("glob:latest").matches("latest-1"));
}

#[test]
fn globs_match_whole_tags() {
    let policy = p("glob:1.2.*");
    assert!(policy.matches("1.2.3"));
    assert!(policy.matches("1.2.3-alpine"));
    assert!(!policy.matches("1.3.0"));
    assert!(!policy.matches("v1.2.3"));
    assert!(p("glob:{main,release}-*").matches("release-abc123"));
    assert!(!p("glob:{main,release}-*").matches("feature-abc123"));
    assert!(p("glob:v?.0").matches("v2.0"));
    assert!(
        !p("glob:Main-*").matches("main-1"),
        "globs are case-sensitive"
    );
}

#[test]
fn regexes_are_unanchored_like_flux() {
    assert!(p("regex:rc").matches("1.0-rc1"));
    assert!(p("regexp:^v\\d+$").matches("v12"));
    assert!(!p("regexp:^v\\d+$").matches("v12-debug"));
    assert!(p("regexp:^main-[0-9a-f]{7}$").matches("main-abc1234"));
}

#[test]
fn semver_ranges_flux_users_write() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "~1.4",
            &["1.4.0", "1.4.9", "v1.4.2", "1.4"],
            &["1.5.0", "1.3.9", "2.4.0"],
        ),
        (
            "^1.2",
            &["1.2.0", "1.9.9", "v1.3.0"],
            &["2.0.0", "1.1.9", "0.9.0"],
        ),
        (">=1.0 <2.0", &["1.0.0", "1.99.0"], &["2.0.0", "0.9.9"]),
        (">=1.0, <2.0", &["1.0.0", "1.99.0"], &["2.0.0", "0.9.9"]),
        (">= 1.0 < 2.0", &["1.0.0", "1.99.0"], &["2.0.0", "0.9.9"]),
        ("1.x", &["1.0.0", "1.7.3"], &["2.0.0", "0.1.0"]),
        ("1.2.x || 2.x", &["1.2.7", "2.9.0"], &["1.3.0", "3.0.0"]),
        ("1.0 - 2.0", &["1.0.0", "2.0.9"], &["2.1.0", "0.9.0"]),
        ("v1.2", &["1.2.9"], &["1.3.0"]),
        ("*", &["0.0.1", "9.9.9"], &[]),
        ("=1.2.3", &["1.2.3", "v1.2.3"], &["1.2.4"]),
    ];
    for (range, yes, no) in cases {
        let policy = p(&format!("semver:{range}"));
        for tag in *yes {
            assert!(policy.matches(tag), "{range} should match {tag}");
        }
        for tag in *no {
            assert!(!policy.matches(tag), "{range} should not match {tag}");
        }
    }
}

#[test]
fn tags_that_are_not_versions_never_match_a_range() {
    let policy = p("semver:*");
    for tag in [
        "latest",
        "stable",
        "main-abc123",
        "1.2.3.4",
        "1.2.3rc1",
        "",
        "v",
        "1..2",
    ] {
        assert!(!policy.matches(tag), "{tag}");
    }
}

#[test]
fn comparators_in_one_alternative_all_have_to_hold() {
    // node-semver alone would read this as `~1.4 || ~1.5`.
    let policy = p("semver:~1.4 ~1.5");
    assert!(!policy.matches("1.4.1"));
    assert!(!policy.matches("1.5.1"));
}

#[test]
fn prereleases_match_only_when_the_range_names_one() {
    let stable = p("semver:^1.2");
    assert!(!stable.matches("1.3.0-rc.1"));
    assert!(
        !stable.matches("1.2.3-alpine"),
        "variant suffixes are pre-releases too"
    );
    let pre = p("semver:>=1.0.0-rc.1");
    assert!(pre.matches("1.0.0-rc.2"));
    assert!(
        pre.matches("1.1.0-rc.1"),
        "any pre-release within the bounds, as in Flux v1"
    );
    assert!(pre.matches("2.0.0"));
    assert!(!pre.matches("1.0.0-rc.0"));
    assert!(!pre.matches("0.9.0-rc.1"));
    assert!(!p("semver:>1.0.0-rc.1").matches("1.0.0-rc.1"));
    assert!(p("semver:~1.2.3-0").matches("1.2.4-beta.2"));
}

// ---- choosing the newest ------------------------------------------------------------------------------

#[test]
fn globs_and_regexes_pick_the_latest_build_not_the_greatest_name() {
    let candidates = tags(&[
        ("main-zzz", at(1)),
        ("main-abc", at(30)),
        ("main-mmm", at(10)),
        ("release-1", at(99)),
        ("latest", at(100)),
    ]);
    assert_eq!(
        newest("glob:main-*", &candidates).as_deref(),
        Some("main-abc")
    );
    assert_eq!(
        newest("regexp:^main-", &candidates).as_deref(),
        Some("main-abc")
    );
    assert_eq!(newest("glob:*", &candidates).as_deref(), Some("release-1"));
    assert_eq!(
        sorted("glob:main-*", &candidates),
        ["main-abc", "main-mmm", "main-zzz"]
    );
}

#[test]
fn builds_without_a_usable_time_are_skipped_by_time_ordered_policies() {
    let epoch = Utc.timestamp_opt(0, 0).single();
    let candidates = tags(&[("a", at(1)), ("b", None), ("c", epoch), ("d", at(0))]);
    assert_eq!(newest("glob:*", &candidates).as_deref(), Some("a"));
    assert_eq!(sorted("glob:*", &candidates), ["a", "d"]);
    assert_eq!(newest("glob:*", &tags(&[("b", None), ("c", epoch)])), None);
}

#[test]
fn equal_build_times_are_broken_by_natural_tag_order_whatever_the_input_order() {
    // One image pushed as 1, 1.9, 1.10 and 1.10.0: all share the build time.
    let mut candidates = tags(&[
        ("1", at(5)),
        ("1.10", at(5)),
        ("1.9", at(5)),
        ("1.10.0", at(5)),
    ]);
    assert_eq!(newest("glob:*", &candidates).as_deref(), Some("1.10.0"));
    assert_eq!(
        sorted("glob:*", &candidates),
        ["1.10.0", "1.10", "1.9", "1"]
    );
    candidates.reverse();
    assert_eq!(newest("glob:*", &candidates).as_deref(), Some("1.10.0"));
    assert_eq!(
        sorted("glob:*", &candidates),
        ["1.10.0", "1.10", "1.9", "1"]
    );
}

#[test]
fn semver_picks_the_highest_version_without_build_times() {
    let candidates = tags(&[
        ("1.9.0", None),
        ("1.10.0", None),
        ("v1.10.1", None),
        ("2.0.0", None),
        ("1.11.0-rc.1", None),
        ("latest", None),
        ("stable", None),
    ]);
    assert!(!p("semver:^1").needs_timestamps());
    assert_eq!(newest("semver:^1", &candidates).as_deref(), Some("v1.10.1"));
    assert_eq!(newest("semver:*", &candidates).as_deref(), Some("2.0.0"));
    assert_eq!(
        sorted("semver:^1", &candidates),
        ["v1.10.1", "1.10.0", "1.9.0"]
    );
    assert_eq!(
        newest("semver:^1.11.0-0", &candidates).as_deref(),
        Some("1.11.0-rc.1")
    );
    assert_eq!(newest("semver:^3", &candidates), None);
}

#[test]
fn semver_prefers_the_higher_version_over_the_newer_build() {
    let candidates = tags(&[("1.2.0", at(100)), ("1.3.0", at(1))]);
    assert_eq!(newest("semver:^1", &candidates).as_deref(), Some("1.3.0"));
}

#[test]
fn same_version_spelled_differently_is_decided_by_tag() {
    let candidates = tags(&[("1.2", None), ("1.2.0", None), ("v1.2.0", None)]);
    assert_eq!(
        sorted("semver:~1.2", &candidates),
        ["v1.2.0", "1.2.0", "1.2"]
    );
}

#[test]
fn a_glob_without_wildcards_picks_its_tag_without_build_times() {
    let candidates = tags(&[("1.2.3", None), ("1.2.4", at(9)), ("latest", None)]);
    assert!(!p("glob:1.2.3").needs_timestamps());
    assert_eq!(newest("glob:1.2.3", &candidates).as_deref(), Some("1.2.3"));
    assert_eq!(
        newest("glob:latest", &candidates).as_deref(),
        Some("latest")
    );
}

#[test]
fn only_time_ordered_policies_need_timestamps() {
    assert!(p("glob:*").needs_timestamps());
    assert!(p("glob:main-*").needs_timestamps());
    assert!(p("regexp:^v").needs_timestamps());
    assert!(!p("semver:~1.4").needs_timestamps());
}

#[test]
fn no_candidates_means_no_newest() {
    assert_eq!(newest("glob:*", &[]), None);
    assert!(p("semver:*").sorted(&[]).is_empty());
}

#[test]
fn natural_order_compares_digit_runs_as_numbers() {
    assert_eq!(natural_cmp("1.10", "1.9"), Ordering::Greater);
    assert_eq!(natural_cmp("build-2", "build-10"), Ordering::Less);
    assert_eq!(natural_cmp("a", "b"), Ordering::Less);
    assert_eq!(natural_cmp("1.2", "1.2.0"), Ordering::Less);
    // Equal numbers spelled with leading zeros are still ordered, so sorting is total.
    assert_ne!(natural_cmp("v01", "v1"), Ordering::Equal);
}

#[test]
fn tag_versions_parse_like_flux() {
    assert_eq!(
        parse_tag_version("v1.2").map(|v| v.to_string()).as_deref(),
        Some("1.2.0")
    );
    assert_eq!(
        parse_tag_version("3").map(|v| v.to_string()).as_deref(),
        Some("3.0.0")
    );
    assert!(parse_tag_version("1.2.3-rc.1").is_some_and(|v| v.is_prerelease()));
    assert!(parse_tag_version("v 1.2.3").is_none());
    assert!(parse_tag_version(" 1.2.3").is_none());
}
