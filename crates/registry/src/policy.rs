//! Tag policies: which tags of an image a container may move to, and which of them is the newest.
//!
//! A workload's annotations (`tag.<container>`, read by tether-automation) give a policy as one of these
//! values:
//!
//! | value | meaning | newest is |
//! |---|---|---|
//! | `glob:<pattern>`, or `<pattern>` without a prefix | `*`, `?`, `[abc]`, `{a,b}` | the most recently built |
//! | `semver:<range>` | npm-style ranges: `~1.4`, `^1.2`, `>=1.0 <2.0`, `>=1.0, <2.0`, `1.x`, `1.0 - 2.0`, `\|\|` | the highest version |
//! | `regex:<re>` or `regexp:<re>` | an unanchored regular expression, as Flux v1 | the most recently built |
//!
//! Unlike Flux v1, an invalid pattern is an error instead of silently matching every tag: a typo must not
//! roll a workload to an arbitrary image.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use globset::{Glob, GlobMatcher};
use node_semver::{Range, Version};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// Compiled regexes may not grow past this many bytes, so a hostile or careless annotation cannot make the
/// daemon allocate without bound.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The only tag that may never be chosen by a pattern, because it names no particular build.
const LATEST: &str = "latest";

/// One tag of an image repository, as the registry client reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagInfo {
    /// The tag, e.g. `1.4.2`.
    pub tag: String,
    /// When the image was built (the config's `created`), if the registry told us.
    pub created: Option<DateTime<Utc>>,
}

impl TagInfo {
    /// A tag with an optional build time.
    pub fn new(tag: impl Into<String>, created: Option<DateTime<Utc>>) -> Self {
        TagInfo {
            tag: tag.into(),
            created,
        }
    }

    /// The build time when it can order images: reproducible builds (ko, Bazel, Nix, `SOURCE_DATE_EPOCH=0`)
    /// stamp every image with the Unix epoch or earlier, which says nothing about which one is newer, so such
    /// timestamps count as missing.
    pub fn usable_created(&self) -> Option<DateTime<Utc>> {
        self.created.filter(|t| t.timestamp() > 0)
    }
}

/// The kind of a tag policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `glob:`: shell-style wildcards, newest by build time.
    Glob,
    /// `semver:`: a version range, newest by version.
    Semver,
    /// `regex:` / `regexp:`: a regular expression, newest by build time.
    Regex,
}

impl PolicyKind {
    /// The prefix the kind is written with (`regexp:` for regexes, as Flux v1 documented it).
    pub fn prefix(self) -> &'static str {
        match self {
            PolicyKind::Glob => "glob:",
            PolicyKind::Semver => "semver:",
            PolicyKind::Regex => "regexp:",
        }
    }
}

/// A tag pattern that cannot be used; it names the pattern and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Nothing after the prefix.
    #[error("empty {kind} pattern in '{value}': give a pattern, or use glob:* to allow every tag")]
    Empty {
        /// The prefix that was used, e.g. `semver:`.
        kind: &'static str,
        /// The annotation value.
        value: String,
    },
    /// A prefix that is not `glob:`, `semver:`, `regex:` or `regexp:`; such a value could never match,
    /// because tags cannot contain `:`.
    #[error(
        "unknown tag pattern kind '{kind}:' in '{value}': use glob:, semver:, regex: or regexp:"
    )]
    UnknownKind {
        /// What stood before the first `:`.
        kind: String,
        /// The annotation value.
        value: String,
    },
    /// A glob that does not compile.
    #[error("invalid glob pattern '{pattern}': {reason}")]
    Glob {
        /// The pattern after `glob:`.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A semver range that does not parse.
    #[error("invalid semver range '{range}': {reason}")]
    Semver {
        /// The range after `semver:`.
        range: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A regular expression that does not compile.
    #[error("invalid regular expression '{pattern}': {reason}")]
    Regex {
        /// The pattern after `regex:` or `regexp:`.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The annotation holds a number, boolean, list or map instead of a string.
    #[error(
        "annotation {annotation} is not a string (it is {found}): quote the value in the manifest"
    )]
    NotAString {
        /// The annotation key.
        annotation: String,
        /// A JSON rendering of what it holds.
        found: String,
    },
}

/// A parsed tag policy. Parse with [`TagPolicy::parse`]; the default allows every tag (`glob:*`).
#[derive(Debug, Clone)]
pub struct TagPolicy {
    pattern: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// The glob `*`, the default; kept apart so the default needs no compiling that could fail.
    AnyTag,
    /// `literal` globs (no wildcard) match at most one tag, so they need no build times to pick it.
    Glob {
        glob: GlobMatcher,
        literal: bool,
    },
    Semver(SemverRange),
    Regex(Regex),
}

impl Default for TagPolicy {
    fn default() -> Self {
        TagPolicy {
            pattern: "*".to_owned(),
            matcher: Matcher::AnyTag,
        }
    }
}

impl PartialEq for TagPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind() && self.pattern == other.pattern
    }
}

impl Eq for TagPolicy {}

impl fmt::Display for TagPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind().prefix(), self.pattern)
    }
}

impl std::str::FromStr for TagPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TagPolicy::parse(s)
    }
}

impl TagPolicy {
    /// Parses an annotation value: `glob:…`, `semver:…`, `regex:…`, `regexp:…`, or a bare glob.
    ///
    /// Surrounding whitespace is ignored (tags never contain any, and a YAML block scalar easily adds a
    /// newline).
    pub fn parse(value: &str) -> Result<TagPolicy, PolicyError> {
        let trimmed = value.trim();
        let (kind, prefix, rest) = if let Some(rest) = trimmed.strip_prefix("glob:") {
            (PolicyKind::Glob, "glob:", rest)
        } else if let Some(rest) = trimmed.strip_prefix("semver:") {
            (PolicyKind::Semver, "semver:", rest)
        } else if let Some(rest) = trimmed.strip_prefix("regexp:") {
            (PolicyKind::Regex, "regexp:", rest)
        } else if let Some(rest) = trimmed.strip_prefix("regex:") {
            (PolicyKind::Regex, "regex:", rest)
        } else if let Some((kind, _)) = trimmed.split_once(':') {
            return Err(PolicyError::UnknownKind {
                kind: kind.to_owned(),
                value: value.to_owned(),
            });
        } else {
            (PolicyKind::Glob, "glob:", trimmed)
        };
        let pattern = rest.trim();
        if pattern.is_empty() {
            return Err(PolicyError::Empty {
                kind: prefix,
                value: value.to_owned(),
            });
        }
        let matcher = match kind {
            PolicyKind::Glob if pattern == "*" => Matcher::AnyTag,
            PolicyKind::Glob => {
                let glob = Glob::new(pattern).map_err(|e| PolicyError::Glob {
                    pattern: pattern.to_owned(),
                    reason: e.kind().to_string(),
                })?;
                Matcher::Glob {
                    glob: glob.compile_matcher(),
                    literal: !pattern.contains(['*', '?', '[', ']', '{', '}', '\\']),
                }
            }
            PolicyKind::Semver => Matcher::Semver(SemverRange::parse(pattern)?),
            PolicyKind::Regex => Matcher::Regex(
                RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| PolicyError::Regex {
                        pattern: pattern.to_owned(),
                        reason: regex_reason(&e),
                    })?,
            ),
        };
        Ok(TagPolicy {
            pattern: pattern.to_owned(),
            matcher,
        })
    }

    /// Which kind of policy this is.
    pub fn kind(&self) -> PolicyKind {
        match self.matcher {
            Matcher::AnyTag | Matcher::Glob { .. } => PolicyKind::Glob,
            Matcher::Semver(_) => PolicyKind::Semver,
            Matcher::Regex(_) => PolicyKind::Regex,
        }
    }

    /// The pattern without its prefix.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether choosing the newest tag needs build times. When false, the registry client must not fetch
    /// manifests and configs for this policy: the tag list is enough, and every manifest GET counts against
    /// registry rate limits.
    pub fn needs_timestamps(&self) -> bool {
        match &self.matcher {
            Matcher::AnyTag | Matcher::Regex(_) => true,
            Matcher::Glob { literal, .. } => !literal,
            Matcher::Semver(_) => false,
        }
    }

    /// Whether `tag` is allowed. `latest` is allowed only by the glob `latest` itself: it names no particular
    /// build, so no wildcard, range or regex may move a workload to it.
    pub fn matches(&self, tag: &str) -> bool {
        if tag == LATEST {
            return matches!(self.matcher, Matcher::Glob { literal: true, .. })
                && self.pattern == LATEST;
        }
        match &self.matcher {
            Matcher::AnyTag => true,
            Matcher::Glob { glob, .. } => glob.is_match(tag),
            Matcher::Semver(range) => parse_tag_version(tag).is_some_and(|v| range.allows(&v)),
            Matcher::Regex(re) => re.is_match(tag),
        }
    }

    /// The newest allowed tag, or `None` when no tag qualifies.
    ///
    /// - semver: the highest version; tags that are the same version (`1.2` and `1.2.0`, `v1.2.0`, build
    ///   metadata) are ordered by tag, see below.
    /// - glob and regex: the latest build time; tags without a usable build time
    ///   ([`TagInfo::usable_created`]) are skipped, because they cannot be ordered. A glob without wildcards
    ///   picks its one tag whether or not it has a build time.
    ///
    /// Remaining ties go to the greater tag in natural order (digit runs compare as numbers, so `1.10` beats
    /// `1.9`), then to the greater tag byte-wise, so the choice never depends on the order of `candidates`.
    pub fn newest<'a>(&self, candidates: &'a [TagInfo]) -> Option<&'a TagInfo> {
        self.ranked(candidates)
            .into_iter()
            .max_by(|a, b| a.cmp(b))
            .map(|r| r.info)
    }

    /// The allowed tags, newest first, by the same order as [`TagPolicy::newest`] (whose answer is always the
    /// first element). Tags that [`TagPolicy::newest`] skips for lack of a build time are left out here too.
    pub fn sorted<'a>(&self, candidates: &'a [TagInfo]) -> Vec<&'a TagInfo> {
        let mut ranked = self.ranked(candidates);
        ranked.sort_by(|a, b| b.cmp(a));
        ranked.into_iter().map(|r| r.info).collect()
    }

    fn ranked<'a>(&self, candidates: &'a [TagInfo]) -> Vec<Ranked<'a>> {
        candidates
            .iter()
            .filter(|c| self.matches(&c.tag))
            .filter_map(|info| {
                let key = match &self.matcher {
                    Matcher::Semver(_) => Key::Version(parse_tag_version(&info.tag)?),
                    Matcher::Glob { literal: true, .. } => Key::None,
                    Matcher::AnyTag | Matcher::Glob { .. } | Matcher::Regex(_) => {
                        Key::Time(info.usable_created()?)
                    }
                };
                Some(Ranked { key, info })
            })
            .collect()
    }
}

/// A candidate with what it is ordered by.
struct Ranked<'a> {
    key: Key,
    info: &'a TagInfo,
}

/// All keys in one ranking are of the same variant.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    None,
    Time(DateTime<Utc>),
    Version(Version),
}

impl Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| natural_cmp(&self.info.tag, &other.info.tag))
    }
}

/// Compares strings with runs of ASCII digits compared as numbers, then byte-wise, so that the order is
/// total and `1.10 > 1.9`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let (dx, rx) = split_digits(x);
                let (dy, ry) = split_digits(y);
                let (nx, ny) = (trim_zeros(dx), trim_zeros(dy));
                let ord = nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny));
                if ord != Ordering::Equal {
                    return ord;
                }
                (x, y) = (rx, ry);
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b'0').count();
    &s[n..]
}

fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("it compiles to more than {limit} bytes; simplify it")
        }
        // The syntax error is a multi-line drawing of the pattern; its last line says what is wrong.
        other => other
            .to_string()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().trim_start_matches("error: ").to_owned())
            .unwrap_or_else(|| other.to_string()),
    }
}

/// A version tag as Flux v1 (Masterminds semver) accepted it: an optional `v`, one to three numbers, then
/// optional `-prerelease` and `+build`.
static TAG_VERSION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$",
    )
    .ok()
});

/// One comparator of a range: an operator, a (partial, possibly wildcard) version, and optional pre-release
/// and build parts.
static COMPARATOR: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(?:=|>=|<=|>|<|~>|~|\^)?[vV]?(?:\d+|[xX*])(?:\.(?:\d+|[xX*])){0,2}(-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$",
    )
    .ok()
});

/// Parses a tag as a version; `1.2` counts as `1.2.0` and `v1` as `1.0.0`, as in Flux v1.
pub fn parse_tag_version(tag: &str) -> Option<Version> {
    let caps = TAG_VERSION.as_ref()?.captures(tag)?;
    let part = |i: usize| caps.get(i).map_or("0", |m| m.as_str());
    let canonical = format!(
        "{}.{}.{}{}{}",
        part(1),
        part(2),
        part(3),
        caps.get(4).map_or("", |m| m.as_str()),
        caps.get(5).map_or("", |m| m.as_str()),
    );
    Version::parse(canonical).ok()
}

/// A semver range as OR-ed alternatives of AND-ed comparators.
///
/// node-semver parses loosely and silently drops comparators it does not understand (`>=1.0 <2.y` becomes
/// `>=1.0.0`), so every comparator is checked here first and handed to it on its own.
#[derive(Debug, Clone)]
struct SemverRange {
    alternatives: Vec<Vec<Range>>,
    /// Pre-release versions are candidates only when the range names a pre-release itself.
    prerelease: bool,
}

impl SemverRange {
    fn parse(range: &str) -> Result<SemverRange, PolicyError> {
        let err = |reason: String| PolicyError::Semver {
            range: range.to_owned(),
            reason,
        };
        let comparator = COMPARATOR
            .as_ref()
            .ok_or_else(|| err("internal error: comparator syntax did not compile".to_owned()))?;
        let mut alternatives = Vec::new();
        let mut prerelease = false;
        for alternative in range.split("||") {
            let words = comparators(alternative).map_err(&err)?;
            if words.is_empty() {
                return Err(err("an alternative between '||' is empty".to_owned()));
            }
            let mut all = Vec::new();
            for word in words {
                let parts: Vec<&str> = word.split(" - ").collect();
                for part in &parts {
                    if part.starts_with("!=") {
                        return Err(err(format!(
                            "'{part}': != is not supported; write it as two ranges, e.g. '<1.2.3 || >1.2.3'"
                        )));
                    }
                    let caps = comparator.captures(part).ok_or_else(|| {
                        err(format!(
                            "'{part}' is not a version comparator (expected e.g. 1.2.3, ~1.4, ^1.2, >=1.0, 1.x)"
                        ))
                    })?;
                    prerelease |= caps.get(1).is_some();
                }
                if parts.len() == 2
                    && parts
                        .iter()
                        .any(|p| p.starts_with(['<', '>', '=', '~', '^']))
                {
                    return Err(err(format!(
                        "'{word}': both ends of a hyphen range must be plain versions"
                    )));
                }
                let parsed = Range::parse(&word).map_err(|e| err(format!("'{word}': {e}")))?;
                all.push(parsed);
            }
            alternatives.push(all);
        }
        Ok(SemverRange {
            alternatives,
            prerelease,
        })
    }

    fn allows(&self, version: &Version) -> bool {
        if version.is_prerelease() {
            if !self.prerelease {
                return false;
            }
            // node-semver admits a pre-release only next to a pre-release of the same x.y.z; Flux v1 admits
            // any pre-release within the bounds once the range names one, so test the bounds alone.
            let exact = match Range::parse(version.to_string()) {
                Ok(r) => r,
                Err(_) => return false,
            };
            return self
                .alternatives
                .iter()
                .any(|all| all.iter().all(|r| r.intersect(&exact).is_some()));
        }
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|r| r.satisfies(version)))
    }
}

/// Splits one `||` alternative into comparators: `,` and spaces separate them (Masterminds and npm), an
/// operator may stand apart from its version (`>= 1.0`), and `a - b` is one hyphen range.
fn comparators(alternative: &str) -> Result<Vec<String>, String> {
    let words: Vec<&str> = alternative
        .split([',', ' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if word == "-" {
            let (Some(low), Some(high)) = (out.pop(), words.get(i + 1)) else {
                return Err(
                    "a hyphen range needs a version on both sides, e.g. '1.0 - 2.0'".to_owned(),
                );
            };
            out.push(format!("{low} - {high}"));
            i += 2;
            continue;
        }
        if matches!(
            word,
            "=" | ">=" | "<=" | ">" | "<" | "~" | "~>" | "^" | "!="
        ) {
            let Some(version) = words.get(i + 1) else {
                return Err(format!("operator '{word}' has no version after it"));
            };
            out.push(format!("{word}{version}"));
            i += 2;
            continue;
        }
        out.push(word.to_owned());
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
