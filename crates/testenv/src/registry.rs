//! A real container registry on loopback for tests: Debian's `docker-registry` (the CNCF distribution
//! registry, 2.8) with temporary filesystem storage, optionally behind htpasswd basic auth, fronted by a small
//! loopback proxy that counts the requests a client makes per kind and can inject failures (429 with
//! `Retry-After`). The proxy can also act as a bearer-token service (Docker Hub's auth flow) and paginate tag
//! lists with `Link` headers, which registry 2.8 does not do itself (distribution 3 and the big registries do).
//!
//! Images are pushed without Docker, through the v2 API, by [`Pusher`]: config blobs with a chosen `created`
//! time and labels, a tiny layer, Docker v2 or OCI manifests, and multi-arch indexes. Pushes go to the registry
//! directly, so they are not counted.
//!
//! ```ignore
//! let registry = TestRegistry::start();
//! registry.pusher().push("team/app", "1.0", &TestImage::new("2024-01-01T00:00:00Z")).await;
//! // point the client at registry.host (plain HTTP: list it as an insecure host)
//! assert_eq!(registry.counts().blob, 1);
//! ```

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use crate::run;

/// Docker v2 schema 2 image manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The `service` the proxy's token service names in its challenges.
pub const TOKEN_SERVICE: &str = "tether-test-registry";

/// How clients authenticate to the test registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous access.
    #[default]
    None,
    /// The registry's own htpasswd basic auth (bcrypt, made with `htpasswd -B`).
    Htpasswd {
        /// The one user.
        username: String,
        /// Its password.
        password: String,
    },
    /// Docker's bearer-token flow, served by the proxy: a 401 challenge naming the proxy's `/token` realm,
    /// which hands out tokens anonymously, or only for these credentials.
    Token {
        /// Basic credentials the token service requires, if any.
        credentials: Option<(String, String)>,
    },
}

/// How to start a [`TestRegistry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Authentication.
    pub auth: Auth,
    /// Serve tag lists in pages of at most this many tags, sorted, with `Link: <…>; rel="next"` headers.
    pub page_size: Option<usize>,
}

/// What a request to the registry is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `GET /v2/`: the API version check.
    Base,
    /// `GET /v2/<name>/tags/list`.
    TagsList,
    /// `GET /v2/<name>/manifests/<reference>`.
    ManifestGet,
    /// `HEAD /v2/<name>/manifests/<reference>`.
    ManifestHead,
    /// `GET` or `HEAD /v2/<name>/blobs/<digest>`.
    Blob,
    /// `GET /token` on the proxy's token service.
    Token,
    /// Anything else (uploads, deletes, unknown paths).
    Other,
}

/// Requests seen by the proxy, per kind. Injected failures count under their kind and in `injected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `GET /v2/`.
    pub base: u32,
    /// Tag list pages.
    pub tags_list: u32,
    /// Manifest GETs.
    pub manifest_get: u32,
    /// Manifest HEADs.
    pub manifest_head: u32,
    /// Blob GETs and HEADs.
    pub blob: u32,
    /// Token requests.
    pub token: u32,
    /// Everything else.
    pub other: u32,
    /// Requests answered by an injected failure.
    pub injected: u32,
}

impl Counts {
    /// Manifest GETs and HEADs.
    pub fn manifests(&self) -> u32 {
        self.manifest_get + self.manifest_head
    }

    /// Requests for image metadata: manifests (GET and HEAD) and blobs.
    pub fn metadata(&self) -> u32 {
        self.manifests() + self.blob
    }

    /// All requests.
    pub fn total(&self) -> u32 {
        self.base
            + self.tags_list
            + self.manifest_get
            + self.manifest_head
            + self.blob
            + self.token
            + self.other
    }

    fn add(&mut self, kind: RequestKind) {
        let field = match kind {
            RequestKind::Base => &mut self.base,
            RequestKind::TagsList => &mut self.tags_list,
            RequestKind::ManifestGet => &mut self.manifest_get,
            RequestKind::ManifestHead => &mut self.manifest_head,
            RequestKind::Blob => &mut self.blob,
            RequestKind::Token => &mut self.token,
            RequestKind::Other => &mut self.other,
        };
        *field += 1;
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The kind.
    pub kind: RequestKind,
    /// The status the client got.
    pub status: u16,
    /// Whether the answer was an injected failure.
    pub injected: bool,
}

/// A failure the proxy answers with instead of forwarding, for the next `times` requests of a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Which requests; `None` for any.
    pub kind: Option<RequestKind>,
    /// How many requests it answers.
    pub times: u32,
    /// The status, e.g. 429.
    pub status: u16,
    /// The `Retry-After` header value, if any (seconds or an HTTP-date).
    pub retry_after: Option<String>,
    /// The JSON body, if not the registry error the status implies: a hostile registry's answer.
    pub body: Option<String>,
}

impl Fault {
    /// `429 Too Many Requests` with `Retry-After: retry_after` for the next `times` requests of `kind`, with
    /// the body Docker Hub sends.
    pub fn too_many_requests(kind: RequestKind, times: u32, retry_after: &str) -> Fault {
        Fault {
            kind: Some(kind),
            times,
            status: 429,
            retry_after: Some(retry_after.to_owned()),
            body: None,
        }
    }

    /// `status` with `body` (JSON) for the next request of `kind`: what a hostile or broken registry says.
    pub fn answer(kind: RequestKind, status: u16, body: &str) -> Fault {
        Fault {
            kind: Some(kind),
            times: 1,
            status,
            retry_after: None,
            body: Some(body.to_owned()),
        }
    }
}

/// A running registry and its counting proxy; both stop on drop.
#[derive(Debug)]
pub struct TestRegistry {
    /// `127.0.0.1:port` of the proxy: what clients under test talk to (plain HTTP).
    pub host: String,
    /// `127.0.0.1:port` of the registry itself; the pusher talks to it directly.
    pub registry_host: String,
    /// How clients authenticate.
    pub auth: Auth,
    proxy: Option<Proxy>,
    child: Child,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// An anonymous registry without pagination.
    pub fn start() -> Self {
        Self::start_with(RegistryOptions::default())
    }

    /// A registry with these options. Needs Debian's `docker-registry` (and `apache2-utils` for htpasswd),
    /// installed by `scripts/setup.sh`.
    pub fn start_with(options: RegistryOptions) -> Self {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "/usr/bin/docker-registry is missing: run scripts/setup.sh (installs docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("tether-registry-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let auth_section = match &options.auth {
            Auth::Htpasswd { username, password } => {
                crate::secret(password.as_str());
                let line = run(Command::new("htpasswd").args(["-nbB", username, password]));
                std::fs::write(d.join("htpasswd"), line.trim()).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: tether-test\n    path: {}\n",
                    d.join("htpasswd").display()
                )
            }
            Auth::None | Auth::Token { .. } => String::new(),
        };
        let port = free_port();
        std::fs::write(
            d.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  \
                 delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: tether-test-secret\n{auth_section}",
                data = d.join("data").display(),
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(d.join("registry.log")).expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = TestRegistry {
            host: String::new(),
            registry_host: format!("127.0.0.1:{port}"),
            auth: options.auth.clone(),
            proxy: None,
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}:\n{}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let proxy = Proxy::start(
            format!("http://{}", registry.registry_host),
            options.page_size,
            match &options.auth {
                Auth::Token { credentials } => Some(credentials.clone()),
                _ => None,
            },
        );
        registry.host = proxy.host.clone();
        registry.proxy = Some(proxy);
        registry
    }

    /// `host/path`: an image repository on this registry as a client names it.
    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }

    /// A pusher that writes to the registry directly (not counted), with the registry's credentials.
    pub fn pusher(&self) -> Pusher {
        Pusher {
            base: format!("http://{}", self.registry_host),
            client: reqwest::Client::new(),
            credentials: match &self.auth {
                Auth::Htpasswd { username, password } => Some((username.clone(), password.clone())),
                _ => None,
            },
        }
    }

    /// The requests counted since the start or the last [`TestRegistry::reset_counts`].
    pub fn counts(&self) -> Counts {
        *self.state().counts.lock().unwrap()
    }

    /// Every request since the start or the last reset, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().log.lock().unwrap().clone()
    }

    /// Starts counting from zero.
    pub fn reset_counts(&self) {
        *self.state().counts.lock().unwrap() = Counts::default();
        self.state().log.lock().unwrap().clear();
    }

    /// Answers upcoming requests with a failure instead of forwarding them (faults are used in order).
    pub fn inject(&self, fault: Fault) {
        self.state().faults.lock().unwrap().push(fault);
    }

    /// Drops the injected failures not used yet.
    pub fn clear_faults(&self) {
        self.state().faults.lock().unwrap().clear();
    }

    /// How many injected failures are still waiting to be used.
    pub fn pending_faults(&self) -> u32 {
        self.state()
            .faults
            .lock()
            .unwrap()
            .iter()
            .map(|f| f.times)
            .sum()
    }

    /// The registry's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn state(&self) -> &ProxyState {
        &self.proxy.as_ref().expect("proxy running").state
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        drop(self.proxy.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shared between the proxy's connections and the test.
#[derive(Debug)]
struct ProxyState {
    upstream: String,
    own_url: String,
    client: reqwest::Client,
    page_size: Option<usize>,
    /// `Some` in token mode: the credentials the token service requires, if any.
    token_auth: Option<Option<(String, String)>>,
    tokens: Mutex<HashSet<String>>,
    token_counter: AtomicU64,
    counts: Mutex<Counts>,
    log: Mutex<Vec<RequestRecord>>,
    faults: Mutex<Vec<Fault>>,
}

/// The loopback proxy: a hyper server on its own thread and runtime, so it works under any test runtime
/// (or none) and stops when dropped.
#[derive(Debug)]
struct Proxy {
    host: String,
    state: Arc<ProxyState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(
        upstream: String,
        page_size: Option<usize>,
        token_auth: Option<Option<(String, String)>>,
    ) -> Proxy {
        if let Some(Some((_, password))) = &token_auth {
            crate::secret(password.as_str());
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let state = Arc::new(ProxyState {
            upstream,
            own_url: format!("http://{host}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
            page_size,
            token_auth,
            tokens: Mutex::new(HashSet::new()),
            token_counter: AtomicU64::new(0),
            counts: Mutex::new(Counts::default()),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("registry-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(serve(listener, thread_state, rx));
            })
            .expect("proxy thread");
        Proxy {
            host,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn classify(method: &Method, path: &str) -> RequestKind {
    if path == "/token" {
        return RequestKind::Token;
    }
    if path == "/v2/" || path == "/v2" {
        return RequestKind::Base;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return RequestKind::Other;
    };
    let read = *method == Method::GET || *method == Method::HEAD;
    if rest.ends_with("/tags/list") && *method == Method::GET {
        RequestKind::TagsList
    } else if rest.contains("/manifests/") && *method == Method::GET {
        RequestKind::ManifestGet
    } else if rest.contains("/manifests/") && *method == Method::HEAD {
        RequestKind::ManifestHead
    } else if rest.contains("/blobs/") && !rest.contains("/blobs/uploads") && read {
        RequestKind::Blob
    } else {
        RequestKind::Other
    }
}

/// The repository name in a `/v2/<name>/…` path.
fn repo_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/tags/", "/manifests/", "/blobs/"]
        .iter()
        .filter_map(|marker| rest.find(marker))
        .min()
        .map(|i| &rest[..i])
}

type Reply = Response<Full<Bytes>>;

async fn handle(state: &ProxyState, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.as_str().to_owned());
    let kind = classify(&method, &path);
    state.counts.lock().unwrap().add(kind);

    let fault = {
        let mut faults = state.faults.lock().unwrap();
        let found = faults
            .iter_mut()
            .find(|f| f.times > 0 && f.kind.is_none_or(|k| k == kind));
        let fault = found.map(|f| {
            f.times -= 1;
            f.clone()
        });
        faults.retain(|f| f.times > 0);
        fault
    };
    let (reply, injected) = match fault {
        Some(fault) => (injected_reply(&fault), true),
        None => (
            respond(state, req, kind, &path, &path_and_query).await,
            false,
        ),
    };
    if injected {
        state.counts.lock().unwrap().injected += 1;
    }
    state.log.lock().unwrap().push(RequestRecord {
        method: method.to_string(),
        path: path_and_query,
        kind,
        status: reply.status().as_u16(),
        injected,
    });
    reply
}

fn injected_reply(fault: &Fault) -> Reply {
    let body = if let Some(body) = &fault.body {
        body.as_str()
    } else if fault.status == 429 {
        r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit (injected by the test proxy)"}]}"#
    } else {
        r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#
    };
    let mut reply = Response::new(Full::new(Bytes::from(body.to_owned())));
    *reply.status_mut() =
        StatusCode::from_u16(fault.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(retry_after) = &fault.retry_after {
        if let Ok(v) = HeaderValue::from_str(retry_after) {
            reply.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    reply
}

fn plain(status: StatusCode, body: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.to_owned())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

async fn respond(
    state: &ProxyState,
    req: Request<Incoming>,
    kind: RequestKind,
    path: &str,
    path_and_query: &str,
) -> Reply {
    if let Some(required) = &state.token_auth {
        if kind == RequestKind::Token {
            return token_reply(state, &req, required.as_ref());
        }
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let valid = bearer.is_some_and(|t| state.tokens.lock().unwrap().contains(&t));
        if !valid {
            let scope = repo_name(path)
                .map(|name| format!(",scope=\"repository:{name}:pull\""))
                .unwrap_or_default();
            let mut reply = plain(
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
            let challenge = format!(
                "Bearer realm=\"{}/token\",service=\"{TOKEN_SERVICE}\"{scope}",
                state.own_url
            );
            reply.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge).expect("challenge header"),
            );
            return reply;
        }
    }
    if kind == RequestKind::TagsList {
        if let Some(page_size) = state.page_size {
            return paged_tags(state, &req, path, page_size).await;
        }
    }
    forward(state, req, path_and_query).await
}

fn token_reply(
    state: &ProxyState,
    req: &Request<Incoming>,
    required: Option<&(String, String)>,
) -> Reply {
    if let Some((user, pass)) = required {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return plain(
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#,
            );
        }
    }
    let query = req.uri().query().unwrap_or_default();
    if !query.contains(&format!("service={TOKEN_SERVICE}")) {
        return plain(
            StatusCode::BAD_REQUEST,
            r#"{"errors":[{"code":"UNSUPPORTED","message":"wrong or missing service"}]}"#,
        );
    }
    let token = format!(
        "test-token-{}",
        state.token_counter.fetch_add(1, Ordering::Relaxed)
    );
    crate::secret(token.as_str());
    state.tokens.lock().unwrap().insert(token.clone());
    plain(
        StatusCode::OK,
        &format!(r#"{{"token":"{token}","expires_in":300}}"#),
    )
}

/// The full tag list from the registry, sorted and cut into pages as the distribution spec describes.
async fn paged_tags(
    state: &ProxyState,
    req: &Request<Incoming>,
    path: &str,
    page_size: usize,
) -> Reply {
    let mut upstream = state.client.get(format!("{}{path}", state.upstream));
    if let Some(auth) = req.headers().get(AUTHORIZATION) {
        upstream = upstream.header(AUTHORIZATION, auth.clone());
    }
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("{{\"error\":\"{e}\"}}")),
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        let mut reply = Response::new(Full::new(body));
        *reply.status_mut() = status;
        *reply.headers_mut() = headers;
        return reply;
    }
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let mut tags: Vec<String> = body["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let query: BTreeMap<&str, &str> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let n = query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(page_size, |n| n.min(page_size))
        .max(1);
    if let Some(last) = query.get("last") {
        tags.retain(|t| t.as_str() > *last);
    }
    let more = tags.len() > n;
    tags.truncate(n);
    let mut reply = plain(
        StatusCode::OK,
        &serde_json::json!({"name": name, "tags": tags}).to_string(),
    );
    if more {
        if let Some(last) = tags.last() {
            let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
            reply
                .headers_mut()
                .insert(LINK, HeaderValue::from_str(&link).expect("link header"));
        }
    }
    reply
}

async fn forward(state: &ProxyState, req: Request<Incoming>, path_and_query: &str) -> Reply {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("{{\"error\":\"{e}\"}}")),
    };
    let mut upstream = state
        .client
        .request(parts.method, format!("{}{path_and_query}", state.upstream));
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name.as_str()) && name != hyper::header::HOST {
            upstream = upstream.header(name, value);
        }
    }
    let resp = match upstream.body(body).send().await {
        Ok(r) => r,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("{{\"error\":\"{e}\"}}")),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    for (name, value) in &headers {
        if !is_hop_by_hop(name.as_str()) {
            reply.headers_mut().append(name, value.clone());
        }
    }
    reply
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Docker v2 or OCI media types for a pushed image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Docker v2 schema 2 manifests and manifest lists.
    #[default]
    Docker,
    /// OCI manifests and indexes.
    Oci,
}

impl Format {
    fn manifest(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_MANIFEST,
            Format::Oci => OCI_MANIFEST,
        }
    }

    fn index(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_MANIFEST_LIST,
            Format::Oci => OCI_INDEX,
        }
    }

    fn config(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.container.image.v1+json",
            Format::Oci => "application/vnd.oci.image.config.v1+json",
        }
    }

    fn layer(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Format::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }
}

/// An image to push: its config's build time and labels, platform and format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    /// The config's `created` (RFC 3339), or none.
    pub created: Option<String>,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// The OS.
    pub os: String,
    /// The architecture.
    pub architecture: String,
    /// The variant.
    pub variant: Option<String>,
    /// Docker or OCI media types.
    pub format: Format,
}

impl TestImage {
    /// A linux/amd64 Docker v2 image built at `created` (RFC 3339).
    pub fn new(created: &str) -> Self {
        TestImage {
            created: Some(created.to_owned()),
            labels: BTreeMap::new(),
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            format: Format::Docker,
        }
    }

    /// The same image without a `created` field.
    pub fn without_created(mut self) -> Self {
        self.created = None;
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the platform.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.os = os.to_owned();
        self.architecture = architecture.to_owned();
        self.variant = variant.map(str::to_owned);
        self
    }

    /// Uses OCI media types.
    pub fn oci(mut self) -> Self {
        self.format = Format::Oci;
        self
    }

    /// The config blob.
    pub fn config_json(&self, layer_digest: &str) -> Vec<u8> {
        let mut config = serde_json::json!({
            "architecture": self.architecture,
            "os": self.os,
            "config": {"Labels": self.labels, "Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "tether testenv"}],
        });
        if let Some(created) = &self.created {
            config["created"] = serde_json::Value::String(created.clone());
        }
        if let Some(variant) = &self.variant {
            config["variant"] = serde_json::Value::String(variant.clone());
        }
        serde_json::to_vec(&config).expect("config json")
    }

    /// A tiny layer that differs per image, so every image has its own digests.
    fn layer(&self) -> Vec<u8> {
        format!(
            "tether test layer {:?} {}/{}/{:?} {:?}",
            self.created, self.os, self.architecture, self.variant, self.labels
        )
        .into_bytes()
    }
}

/// What a push stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest's (or index's) digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its bytes, to tag it again with [`Pusher::retag`].
    pub manifest: Vec<u8>,
    /// The config blob's digest (images only).
    pub config_digest: Option<String>,
    /// The child manifests (indexes only), in order.
    pub children: Vec<Pushed>,
}

/// Pushes images to a [`TestRegistry`] through the v2 API, as `docker push` would, without Docker.
#[derive(Debug, Clone)]
pub struct Pusher {
    base: String,
    client: reqwest::Client,
    credentials: Option<(String, String)>,
}

impl Pusher {
    /// Uploads a blob (monolithic: `POST` then `PUT ?digest=`); returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let start = self
            .auth(
                self.client
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base)),
            )
            .send()
            .await
            .expect("start blob upload");
        assert_eq!(
            start.status(),
            reqwest::StatusCode::ACCEPTED,
            "start blob upload: {}",
            start.text().await.unwrap_or_default()
        );
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_owned();
        let mut url = reqwest::Url::parse(&format!("{}/", self.base))
            .and_then(|base| base.join(&location))
            .expect("upload URL");
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = self
            .auth(self.client.put(url))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("finish blob upload");
        assert_eq!(
            put.status(),
            reqwest::StatusCode::CREATED,
            "finish blob upload: {}",
            put.text().await.unwrap_or_default()
        );
        digest
    }

    /// `PUT`s a manifest under a tag or its digest; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .auth(
                self.client
                    .put(format!("{}/v2/{repo}/manifests/{reference}", self.base)),
            )
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("push manifest");
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::CREATED,
            "push manifest {repo}:{reference}: {}",
            resp.text().await.unwrap_or_default()
        );
        sha256_digest(body)
    }

    /// Pushes an image (layer, config, manifest) and tags it.
    pub async fn push(&self, repo: &str, tag: &str, image: &TestImage) -> Pushed {
        self.push_image(repo, Some(tag), image).await
    }

    /// Pushes the images by digest and a manifest list (Docker) or index (OCI) of them under `tag`. Add
    /// `extra_entries` for entries a real index may have but the client must skip (e.g. attestations).
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        images: &[TestImage],
        format: Format,
        extra_entries: &[serde_json::Value],
    ) -> Pushed {
        let mut children = Vec::new();
        for image in images {
            children.push(self.push_image(repo, None, image).await);
        }
        let mut manifests: Vec<serde_json::Value> = children
            .iter()
            .zip(images)
            .map(|(child, image)| {
                let mut platform =
                    serde_json::json!({"os": image.os, "architecture": image.architecture});
                if let Some(v) = &image.variant {
                    platform["variant"] = serde_json::Value::String(v.clone());
                }
                serde_json::json!({
                    "mediaType": child.media_type,
                    "digest": child.digest,
                    "size": child.manifest.len(),
                    "platform": platform,
                })
            })
            .collect();
        manifests.extend(extra_entries.iter().cloned());
        let media_type = format.index();
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        }))
        .expect("index json");
        let digest = self.push_manifest(repo, tag, media_type, &body).await;
        Pushed {
            digest,
            media_type: media_type.to_owned(),
            manifest: body,
            config_digest: None,
            children,
        }
    }

    /// Points another tag at an already pushed manifest or index.
    pub async fn retag(&self, repo: &str, pushed: &Pushed, tag: &str) -> String {
        self.push_manifest(repo, tag, &pushed.media_type, &pushed.manifest)
            .await
    }

    /// Deletes a manifest by digest (and with it every tag pointing to it).
    pub async fn delete(&self, repo: &str, digest: &str) {
        let resp = self
            .auth(
                self.client
                    .delete(format!("{}/v2/{repo}/manifests/{digest}", self.base)),
            )
            .send()
            .await
            .expect("delete manifest");
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::ACCEPTED,
            "delete {repo}@{digest}: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    async fn push_image(&self, repo: &str, tag: Option<&str>, image: &TestImage) -> Pushed {
        let layer = image.layer();
        let layer_digest = self.push_blob(repo, &layer).await;
        let config = image.config_json(&layer_digest);
        let config_digest = self.push_blob(repo, &config).await;
        let format = image.format;
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": format.manifest(),
            "config": {"mediaType": format.config(), "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": format.layer(), "digest": layer_digest, "size": layer.len()}],
        }))
        .expect("manifest json");
        let digest = sha256_digest(&body);
        self.push_manifest(repo, tag.unwrap_or(&digest), format.manifest(), &body)
            .await;
        Pushed {
            digest,
            media_type: format.manifest().to_owned(),
            manifest: body,
            config_digest: Some(config_digest),
            children: Vec::new(),
        }
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A `kubernetes.io/dockerconfigjson` payload with one entry for `host`.
pub fn dockerconfigjson(host: &str, username: &str, password: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    serde_json::to_vec(&serde_json::json!({"auths": {host: {"auth": auth}}})).expect("json")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
