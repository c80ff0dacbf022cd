//! The registry client's errors. Each names the registry host, and those a person can fix say how, in terms
//! of registries and Secrets; which of tether's settings to change is the binary's to say.

use std::time::Duration;

use crate::credentials::CredentialsError;
use crate::reference::ReferenceError;

/// Why talking to a registry failed. A failed scan is an error as a whole: the client never returns a
/// partial tag list or a candidate set with tags silently missing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference that cannot be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Credentials that cannot be parsed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The registry (or its token service) refused the credentials, or wants some and none were given.
    #[error("registry {host}: access to {repository} denied (HTTP {status}{detail}): {hint}")]
    Unauthorized {
        /// The registry host, as in image references (`docker.io`, `127.0.0.1:5000`).
        host: String,
        /// The repository, canonical (`host/path`).
        repository: String,
        /// 401 or 403.
        status: u16,
        /// The registry's own words, `: …`, or empty.
        detail: String,
        /// What to fix, naming the Secret or file the credentials came from.
        hint: String,
        /// No credentials were sent: the registry wants some and none were found for it.
        anonymous: bool,
    },
    /// The registry kept answering 429 (or 503 with `Retry-After`), or asked to wait longer than the client
    /// is willing to; the host stays backed off until then.
    #[error("registry {host}: rate limited (HTTP 429) after {attempts} attempt(s){}", retry_after_text(.retry_after))]
    RateLimited {
        /// The API host that throttled.
        host: String,
        /// How many requests were sent for this call (0: the host was already backed off).
        attempts: u32,
        /// How long the registry asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The repository does not exist (HTTP 404 on its tag list).
    #[error("registry {host}: repository {repository} not found")]
    RepositoryNotFound {
        /// The registry host.
        host: String,
        /// The repository, canonical.
        repository: String,
    },
    /// An HTTP status the client cannot work with.
    #[error("registry {host}: {method} {url}: HTTP {status}{detail}")]
    Http {
        /// The registry host.
        host: String,
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's error code and message, `: …`, or empty.
        detail: String,
    },
    /// The request did not complete: connection refused, TLS, timeout.
    #[error("registry {host}: {url}: {reason}{}", hint_text(.hint, .host))]
    Transport {
        /// The registry host.
        host: String,
        /// The request URL.
        url: String,
        /// The whole cause chain as one line (reqwest's own message is only its outermost layer).
        reason: String,
        /// What the failure suggests.
        hint: Option<TransportHint>,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered something that is not what the API promises.
    #[error("registry {host}: {url}: invalid response: {reason}")]
    InvalidResponse {
        /// The registry host.
        host: String,
        /// The request URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cache directory cannot be used.
    #[error("registry cache directory {path}: {reason}")]
    Cache {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP client cannot be built (e.g. no TLS root certificates).
    #[error("cannot set up the registry HTTP client: {0}")]
    Client(String),
}

/// What a transport failure suggests about the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportHint {
    /// HTTPS failed in a way a plain-HTTP server causes: the host may need to be spoken to over HTTP.
    MaybePlainHttp,
    /// The registry did not answer in time.
    Timeout,
}

fn hint_text(hint: &Option<TransportHint>, host: &str) -> String {
    match hint {
        Some(TransportHint::MaybePlainHttp) => {
            format!("; if {host} serves plain HTTP, tether must be told to speak HTTP to it")
        }
        Some(TransportHint::Timeout) => "; the registry did not answer in time".to_owned(),
        None => String::new(),
    }
}

impl Error {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Reference(_) => "reference",
            Error::Credentials(_) => "credentials",
            Error::Unauthorized { .. } => "unauthorized",
            Error::RateLimited { .. } => "rate_limited",
            Error::RepositoryNotFound { .. } => "not_found",
            Error::Http { .. } => "http",
            Error::Transport { .. } => "transport",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::Cache { .. } => "cache",
            Error::Client(_) => "client",
        }
    }
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (it asked to wait {}s)", d.as_secs()),
        None => String::new(),
    }
}
