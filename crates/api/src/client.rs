//! The API's client: one bearer token, one deadline per request, typed answers and errors that say what
//! the server said.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ErrorBody;

/// A call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent did not accept the token (401).
    #[error("the agent refused the credentials: {0}")]
    Unauthorized(String),
    /// The caller may not do this (403).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// Any other error answer.
    #[error("the agent answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The agent's message.
        message: String,
    },
    /// No answer (connection refused, timeout) or an unreadable one.
    #[error("cannot reach the agent at {url}: {source}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
    /// The base URL is not usable.
    #[error("--url {0}: give an http:// or https:// URL without credentials, e.g. http://127.0.0.1:3030 (the token goes in --token or $TETHER_TOKEN)")]
    Url(String),
}

/// A client of one agent.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the agent at `base` (e.g. `http://127.0.0.1:3030`) sending `token`; each request gives up
    /// after `timeout`.
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/');
        let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
        let authority = base.split_once("://").map_or(base, |(_, rest)| rest);
        let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
        // `user:password@` would go into every error that names the URL.
        if let Some((_, host)) = authority.rsplit_once('@') {
            let scheme = base.split_once("://").map_or("", |(s, _)| s);
            return Err(ClientError::Url(format!("{scheme}://***@{host}")));
        }
        if !scheme_ok {
            return Err(ClientError::Url(base.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.to_owned(),
                source,
            })?;
        Ok(Client {
            http,
            base: base.to_owned(),
            token: token.to_owned(),
        })
    }

    /// `GET path?query`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.http.get(&url).query(query);
        self.send(url, req).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = self.http.post(&url).json(body);
        self.send(url, req).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: String,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(transport);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| text.trim().chars().take(500).collect());
        Err(match status.as_u16() {
            401 => ClientError::Unauthorized(message),
            403 => ClientError::Forbidden(message),
            status => ClientError::Status { status, message },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one request with `answer` and hands back what it was sent.
    async fn answer_once(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (url, task)
    }

    #[test]
    fn a_url_carrying_credentials_is_refused_without_showing_them() {
        let err = Client::new(
            "http://bob:s3cret@127.0.0.1:3030/",
            "t",
            Duration::from_secs(1),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            !err.contains("s3cret") && err.contains("http://***@127.0.0.1:3030"),
            "{err}"
        );
        assert!(Client::new("ftp://h", "t", Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn sends_the_token_and_reads_the_reason_of_a_refusal() {
        let body = r#"{"error":"alice may not update workloads in namespace b"}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (url, seen) = answer_once(answer).await;
        let c = Client::new(&url, "s3cret", Duration::from_secs(5)).unwrap();
        let got = c.get::<serde_json::Value>("/api/v1/workloads", &[]).await;
        assert!(
            matches!(&got, Err(ClientError::Forbidden(m)) if m.contains("namespace b")),
            "{got:?}"
        );
        let request = seen.await.unwrap();
        assert!(
            request.contains("authorization: Bearer s3cret"),
            "{request}"
        );
    }

    #[test]
    fn a_url_without_a_scheme_is_refused_with_an_example() {
        let e = Client::new("127.0.0.1:3030", "t", Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("http://127.0.0.1:3030"), "{e}");
    }

    #[test]
    fn a_client_shown_for_debugging_never_shows_its_token() {
        let c = Client::new(
            "http://127.0.0.1:3030",
            "s3cret-token",
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("127.0.0.1"),
            "{shown}"
        );
    }
}
