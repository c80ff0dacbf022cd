//! `tether dashboard`: a status page on 127.0.0.1 that reads the agent's API with the user's own token.
//!
//! The browser gets only the embedded page and the answers of three read calls (`/api/v1/sync`,
//! `/api/v1/workloads`, `/api/v1/images`); the token is added here and never reaches it, so the agent's
//! TokenReview and SubjectAccessReview decide what the page shows, as they do for `tether list-workloads`.
//! Every other path is refused, as is any request not addressed to this page's own host and port (a web
//! page elsewhere cannot read it through DNS rebinding).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use tether_api::{paths, ClientError};

use crate::out::outln;
use crate::remote::{failed, Connect};

/// The page.
const INDEX_HTML: &str = include_str!("index.html");
/// Its script: fetch, render with `textContent`, repeat.
const APP_JS: &str = include_str!("app.js");
/// Its style sheet.
const STYLE_CSS: &str = include_str!("style.css");

/// What the browser may load: nothing from elsewhere, no inline script or style, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Flags of `tether dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// How to reach the agent.
    #[command(flatten)]
    connect: Connect,
    /// Port on 127.0.0.1 to serve the page on (0: any free port).
    #[arg(long, default_value_t = 3040)]
    port: u16,
}

/// The server's state: the agent's client (with the user's token) and the port the page is served on.
struct Dash {
    client: tether_api::Client,
    port: u16,
}

/// Runs `tether dashboard` until Ctrl-C or SIGTERM.
pub fn run(rt: &tokio::runtime::Runtime, args: DashboardArgs) -> ExitCode {
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

/// The longest a read of the page waits for the agent (the image list asks every registry in turn).
const READ_LIMIT: Duration = Duration::from_secs(60);

async fn serve(args: DashboardArgs) -> anyhow::Result<()> {
    // --timeout is sized for a sync or release; a page refresh should not wait that long.
    let mut connect = args.connect.clone();
    connect.timeout = connect.timeout.min(READ_LIMIT);
    // Kept until the server ends: it may hold the port-forward to the agent.
    let session = connect.session().await?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on 127.0.0.1:{}: {e}; give another --port (0 picks a free one)",
                args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let dash = Arc::new(Dash {
        client: session.client.clone(),
        port,
    });
    // A first read, so a wrong URL or token shows here too and not only on the page.
    if let Err(e) = dash.client.get::<serde_json::Value>(paths::SYNC, &[]).await {
        eprintln!("tether: dashboard: {e} (the page shows this until it is fixed)");
    }
    outln!("dashboard: http://127.0.0.1:{port}/");
    // Until Ctrl-C; a page's open requests are cut then, which a local page can take.
    tokio::select! {
        () = tether_daemon::http::serve(listener, router(dash), tether_daemon::http::Limits::ADMIN, "dashboard") => {}
        () = tether_daemon::shutdown_signal() => {}
    }
    drop(session);
    Ok(())
}

/// The page's routes, behind the host check and the security headers.
fn router(dash: Arc<Dash>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .fallback(api)
        .layer(middleware::from_fn_with_state(dash.clone(), guard))
        .with_state(dash)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Refuses requests for another host, and adds the headers that keep the page to itself.
async fn guard(State(dash): State<Arc<Dash>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let mut resp = if host.is_some_and(|h| host_allowed(h, dash.port)) {
        next.run(req).await
    } else {
        error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this status page answers only at http://127.0.0.1:{}/",
                dash.port
            ),
        )
    };
    secure(resp.headers_mut());
    resp
}

/// The headers every answer carries.
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Whether `host` (a Host header) names this page: 127.0.0.1 or localhost at its port.
fn host_allowed(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>().ok() == Some(port) && matches!(name, "127.0.0.1" | "localhost")
}

/// The agent's path a page path reads, when it is one the page may read.
fn allowed(path: &str) -> Option<&'static str> {
    [paths::SYNC, paths::WORKLOADS, paths::IMAGES]
        .into_iter()
        .find(|p| *p == path)
}

/// The query parameters passed on for `api_path`: only those the call takes, in the order given.
fn forwarded(api_path: &str, given: Vec<(String, String)>) -> Vec<(&'static str, String)> {
    let known: &[&'static str] = match api_path {
        paths::WORKLOADS => &["namespace", "container"],
        paths::IMAGES => &["namespace", "workload", "limit"],
        _ => &[],
    };
    given
        .into_iter()
        .filter_map(|(k, v)| known.iter().find(|n| **n == k).map(|n| (*n, v)))
        .collect()
}

/// The status the page gets for a failed call: the agent's own, or 502 when it did not answer.
fn status_of(e: &ClientError) -> StatusCode {
    let code = match e {
        ClientError::Unauthorized(_) => 401,
        ClientError::Forbidden(_) => 403,
        ClientError::Status { status, .. } => *status,
        ClientError::Transport { .. } | ClientError::Url(_) => 502,
    };
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Whether a browser says this request comes from the page itself (or sent no such header: curl). Another
/// site's page can make the browser send a `no-cors` GET here: it cannot read the answer, but the read would
/// run with the user's token (a registry scan, say).
fn same_origin(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| matches!(site, "same-origin" | "none"))
}

/// Every path but the assets: one of the three reads, passed to the agent with the user's token, or 404.
async fn api(
    State(dash): State<Arc<Dash>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !same_origin(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "the status page answers reads from its own page only".to_owned(),
        );
    }
    let Some(path) = allowed(uri.path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "not found: the status page serves /, /app.js, /style.css and reads /api/v1/sync, \
             /api/v1/workloads and /api/v1/images"
                .to_owned(),
        );
    };
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the status page only reads; use the tether commands to change anything".to_owned(),
        );
    }
    let given = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    match dash
        .client
        .get::<serde_json::Value>(path, &forwarded(path, given))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(status_of(&e), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_reads_are_passed_to_the_agent() {
        assert_eq!(allowed("/api/v1/sync"), Some(paths::SYNC));
        assert_eq!(allowed("/api/v1/workloads"), Some(paths::WORKLOADS));
        assert_eq!(allowed("/api/v1/images"), Some(paths::IMAGES));
        for other in [
            "/api/v1/release",
            "/api/v1/policy",
            "/api/v1/identity",
            "/api/v1/sync/",
            "/api/v1/sync/../release",
            "/api/v1//sync",
            "/hooks/git",
            "/API/V1/SYNC",
            "",
        ] {
            assert_eq!(allowed(other), None, "{other}");
        }
    }

    #[test]
    fn only_the_parameters_a_call_takes_are_passed_on() {
        let given = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let q = given(&[("limit", "3"), ("token", "x"), ("namespace", "a")]);
        assert_eq!(
            forwarded(paths::IMAGES, q.clone()),
            vec![("limit", "3".to_owned()), ("namespace", "a".to_owned())]
        );
        assert_eq!(
            forwarded(paths::WORKLOADS, q.clone()),
            vec![("namespace", "a".to_owned())]
        );
        assert!(forwarded(paths::SYNC, q).is_empty());
    }

    #[test]
    fn only_requests_for_this_page_are_answered() {
        assert!(host_allowed("127.0.0.1:3040", 3040));
        assert!(host_allowed("localhost:3040", 3040));
        assert!(!host_allowed("127.0.0.1:3041", 3040));
        assert!(!host_allowed("evil.example:3040", 3040));
        assert!(!host_allowed("127.0.0.1", 3040));
        assert!(!host_allowed("127.0.0.1.evil.example:3040", 3040));
    }

    #[test]
    fn the_page_gets_the_agents_status_or_502() {
        assert_eq!(
            status_of(&ClientError::Forbidden("no".into())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_of(&ClientError::Unauthorized("no".into())),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_of(&ClientError::Status {
                status: 409,
                message: "scanning is off".into()
            }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(&ClientError::Url("x".into())),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for needle in ["/app.js", "/style.css"] {
            assert!(INDEX_HTML.contains(needle), "{needle}");
        }
        for asset in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!asset.contains("http://") && !asset.contains("https://"));
        }
        // Data is only ever set as text.
        assert!(!APP_JS.contains("innerHTML") && !APP_JS.contains("outerHTML"));
        assert!(!APP_JS.contains("insertAdjacentHTML") && !APP_JS.contains("document.write"));
    }

    #[test]
    fn reads_from_another_sites_page_are_refused() {
        let with = |site: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(site) = site {
                h.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
            }
            same_origin(&h)
        };
        assert!(with(None) && with(Some("same-origin")) && with(Some("none")));
        assert!(!with(Some("cross-site")) && !with(Some("same-site")));
    }
}
