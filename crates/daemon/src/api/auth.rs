//! Who is calling, and may they: the bearer token is checked with a TokenReview and each call with a
//! SubjectAccessReview on a virtual resource of group `tether.dev`, so the cluster's own RBAC decides (a team
//! with a Role in `demo` may lock its workloads and nothing else). Answers are cached for a few seconds so a
//! page refreshing itself does not cost two API requests per call.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use tether_api::{Resource, Verb};

/// How long an answer of the API server is reused.
const CACHE_FOR: Duration = Duration::from_secs(10);
/// Entries kept before the caches are emptied (a bound, not a tuning knob).
const CACHE_MAX: usize = 10_000;
/// Reviews in flight at once: a flood of made-up tokens must not take the API server's capacity (or the
/// agent's share of it, which its syncs use) with one TokenReview each.
const REVIEWS_AT_ONCE: usize = 16;
/// How long a call waits for a free review before it is told to retry.
const REVIEW_WAIT: Duration = Duration::from_secs(5);
/// Longer is no token any cluster issues (service-account and OIDC tokens are a few KB): refused unasked.
const MAX_TOKEN_BYTES: usize = 16 << 10;

/// An authenticated caller, as the TokenReview named them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The user name (`system:serviceaccount:ns:name` for a ServiceAccount).
    pub name: String,
    /// The uid.
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes, passed on to the SubjectAccessReview.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// A refusal: the status to answer and a one-line reason.
#[derive(Debug, Clone)]
pub struct Denied {
    /// 401, 403 or 503.
    pub status: StatusCode,
    /// Why, naming the verb, resource and namespace.
    pub message: String,
}

impl Denied {
    fn new(status: StatusCode, message: String) -> Self {
        Denied { status, message }
    }
}

/// What a decision is cached under: everything the review is asked about, the caller's uid and extra
/// included (two tokens of one user may carry different scopes there).
type Access = (
    String,
    Option<String>,
    Vec<String>,
    BTreeMap<String, Vec<String>>,
    &'static str,
    &'static str,
    String,
    String,
);

/// Answers of the API server, each reused for [`CACHE_FOR`]; at most [`CACHE_MAX`] kept.
struct Recent<K, V>(Mutex<HashMap<K, (V, Instant)>>);

impl<K: std::hash::Hash + Eq, V: Clone> Recent<K, V> {
    fn new() -> Self {
        Recent(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: &K) -> Option<V> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > CACHE_MAX {
            // Expired answers first: emptying it all would let a flood of made-up tokens evict every
            // caller's answer.
            map.retain(|_, (_, at)| at.elapsed() < CACHE_FOR);
            if map.len() > CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, (value, Instant::now()));
    }
}

/// Checks tokens and permissions against the cluster.
pub struct Auth {
    client: kube::Client,
    /// A token's hash → who it is.
    users: Recent<[u8; 32], User>,
    /// Tokens found not valid, apart: a flood of made-up ones fills only this cache, never evicting
    /// the answers of real callers.
    refused: Recent<[u8; 32], ()>,
    /// When a failed TokenReview was last logged at warn level (a flood while the API server is down
    /// would otherwise write one line per call).
    told: Mutex<Option<Instant>>,
    decisions: Recent<Access, (bool, String)>,
    reviews: tokio::sync::Semaphore,
}

impl Auth {
    /// Checks with `client`, whose identity needs `create` on tokenreviews and subjectaccessreviews.
    pub fn new(client: kube::Client) -> Self {
        Auth {
            client,
            users: Recent::new(),
            refused: Recent::new(),
            told: Mutex::new(None),
            decisions: Recent::new(),
            reviews: tokio::sync::Semaphore::new(REVIEWS_AT_ONCE),
        }
    }

    /// A place among the reviews in flight, or 503 when none frees up in time.
    async fn review_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Denied> {
        match tokio::time::timeout(REVIEW_WAIT, self.reviews.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Denied::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many calls are being checked at once; retry in a few seconds".to_owned(),
            )),
        }
    }

    /// The caller of a request with this `Authorization` header.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<User, Denied> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Denied::new(
                    StatusCode::UNAUTHORIZED,
                    "no bearer token: send `Authorization: Bearer <token>` (the CLI uses --token, \
                     $TETHER_TOKEN or the current kubeconfig context's token)"
                        .to_owned(),
                )
            })?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(user) = self.users.get(&key) {
            return Ok(user);
        }
        if self.refused.get(&key).is_some() {
            return Err(invalid());
        }
        let _slot = self.review_slot().await?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                // The caller is not known yet: what the API server said stays in the agent's log.
                let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
                if told.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                    *told = Some(Instant::now());
                    tracing::warn!(component = "api", error = %e, "cannot check a token with a TokenReview");
                } else {
                    tracing::debug!(component = "api", error = %e, "cannot check a token with a TokenReview");
                }
                Denied::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check the token with a TokenReview (the agent's log says why); the agent \
                     needs create on tokenreviews.authentication.k8s.io"
                        .to_owned(),
                )
            })?;
        let user = answer
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .and_then(|u| {
                Some(User {
                    name: u.username?,
                    uid: u.uid,
                    groups: u.groups.unwrap_or_default(),
                    extra: u.extra.unwrap_or_default(),
                })
            });
        match user {
            Some(user) => {
                self.users.put(key, user.clone());
                Ok(user)
            }
            None => {
                self.refused.put(key, ());
                Err(invalid())
            }
        }
    }

    /// Whether `user` may `verb` the `resource` named `name` in `namespace`; a refusal says so in one line.
    pub async fn authorize(
        &self,
        user: &User,
        verb: Verb,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<(), Denied> {
        let key: Access = (
            user.name.clone(),
            user.uid.clone(),
            user.groups.clone(),
            user.extra.clone(),
            verb.as_str(),
            resource.as_str(),
            namespace.to_owned(),
            name.to_owned(),
        );
        let (allowed, reason) = match self.decisions.get(&key) {
            Some(d) => d,
            None => {
                let d = self.review(user, verb, resource, namespace, name).await?;
                self.decisions.put(key, d.clone());
                d
            }
        };
        if allowed {
            return Ok(());
        }
        let named = if name.is_empty() {
            String::new()
        } else {
            format!(" {name}")
        };
        let what = format!(
            "{} {}.{}{named}",
            verb.as_str(),
            resource.as_str(),
            tether_api::GROUP
        );
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        };
        Err(Denied::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} may not {what} in namespace {namespace}{reason}; a Role there granting \
                 `{}` on `{}` in apiGroup `{}` allows it",
                user.name,
                verb.as_str(),
                resource.as_str(),
                tether_api::GROUP
            ),
        ))
    }

    async fn review(
        &self,
        user: &User,
        verb: Verb,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Result<(bool, String), Denied> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(tether_api::GROUP.to_owned()),
                    resource: Some(resource.as_str().to_owned()),
                    verb: Some(verb.as_str().to_owned()),
                    namespace: Some(namespace.to_owned()),
                    name: (!name.is_empty()).then(|| name.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let _slot = self.review_slot().await?;
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                unavailable(
                    "permissions with a SubjectAccessReview",
                    &e,
                    "subjectaccessreviews.authorization.k8s.io",
                )
            })?;
        Ok(answer.status.map_or((false, String::new()), |s| {
            (s.allowed, s.reason.unwrap_or_default())
        }))
    }
}

/// 503: the review itself could not be made (the agent's own rights, or the API server).
fn unavailable(what: &str, e: &kube::Error, resource: &str) -> Denied {
    Denied::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot check {what}: {e}; the agent needs create on {resource}"),
    )
}

fn invalid() -> Denied {
    Denied::new(
        StatusCode::UNAUTHORIZED,
        "the token is not valid for this cluster (expired, revoked or for another audience)"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks against an API server that is not there: any review made fails with 503.
    fn nowhere() -> Auth {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Auth::new(kube::Client::try_from(config).unwrap())
    }

    #[tokio::test]
    async fn a_token_longer_than_any_cluster_issues_is_refused_unasked() {
        let auth = nowhere();
        let huge = format!("Bearer {}", "x".repeat(MAX_TOKEN_BYTES + 1));
        let denied = auth.authenticate(Some(&huge)).await.unwrap_err();
        assert_eq!(
            denied.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            denied.message
        );
        // A token of ordinary length is asked about (and the absent server makes that a 503).
        let denied = auth.authenticate(Some("Bearer abc")).await.unwrap_err();
        assert_eq!(denied.status, StatusCode::SERVICE_UNAVAILABLE);
        // An unauthenticated caller learns nothing of the agent's connection or identity.
        assert!(
            !denied.message.contains("127.0.0.1") && denied.message.contains("agent's log"),
            "{}",
            denied.message
        );
    }
}
