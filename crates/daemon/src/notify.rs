//! Notifications to people (`--notify-url`): a failed sync (once per distinct failure, not per retry), its
//! recovery, a pushed automation commit, objects garbage-collected, a read-only deploy key. Slack-compatible
//! incoming-webhook JSON, or a generic JSON document signed with `X-Tether-Signature: sha256=<HMAC>`.
//! Sending never blocks or fails a sync: events go into a bounded queue (dropped and counted when it is
//! full) that one task delivers with retries and backoff.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tether_api::{short, ObjectError};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How many events wait for delivery before new ones are dropped.
const QUEUE: usize = 100;
/// Objects named in one message, at most.
const LISTED: usize = 20;

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"text": …}` for Slack-compatible incoming webhooks (Mattermost, Rocket.Chat, Teams connectors).
    Slack,
    /// tether's own JSON document, with every field.
    Generic,
}

/// Where notifications go.
#[derive(Clone)]
pub struct Settings {
    /// Receivers.
    pub urls: Vec<String>,
    /// Format.
    pub format: Format,
    /// The HMAC key of `X-Tether-Signature` (generic format).
    pub secret: Option<crate::config::Secret>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Incoming-webhook URLs carry their secret in the path: receivers as the logs name them.
        let urls: Vec<String> = self.urls.iter().map(|u| receiver_label(u)).collect();
        f.debug_struct("Settings")
            .field("urls", &urls)
            .field("format", &self.format)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Something a person should hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A sync failed (sent once per distinct failure).
    SyncFailed {
        /// The commit it tried.
        revision: Option<String>,
        /// Why, with advice.
        error: String,
        /// The objects it names, with file:line.
        objects: Vec<ObjectError>,
    },
    /// The first successful sync after failures.
    SyncRecovered {
        /// The commit applied.
        revision: String,
    },
    /// Image automation pushed a commit.
    AutomationPushed {
        /// The commit.
        commit: String,
        /// `(workload, container, from, to)`.
        images: Vec<(String, String, String, String)>,
    },
    /// Garbage collection deleted objects.
    Collected {
        /// The commit the sync applied.
        revision: String,
        /// The deleted objects.
        objects: Vec<String>,
    },
    /// The deploy key cannot push.
    ReadOnlyKey {
        /// What git said, with advice.
        error: String,
    },
}

impl Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::SyncFailed { .. } => "sync_failed",
            Event::SyncRecovered { .. } => "sync_recovered",
            Event::AutomationPushed { .. } => "automation_pushed",
            Event::Collected { .. } => "garbage_collected",
            Event::ReadOnlyKey { .. } => "read_only_key",
        }
    }

    /// One line and a few for people.
    fn text(&self, sync_name: &str) -> String {
        let list = |items: Vec<String>| -> String {
            let more = items.len().saturating_sub(LISTED);
            let mut s: String = items
                .into_iter()
                .take(LISTED)
                .map(|i| format!("\n• {i}"))
                .collect();
            if more > 0 {
                s.push_str(&format!("\n… and {more} more"));
            }
            s
        };
        match self {
            Event::SyncFailed {
                revision,
                error,
                objects,
            } => format!(
                "tether {sync_name}: sync of {} failed: {error}{}",
                revision.as_deref().map_or("-", short),
                list(
                    objects
                        .iter()
                        .map(|o| format!(
                            "{} ({}): {}",
                            o.object.as_deref().unwrap_or("?"),
                            o.at,
                            o.message
                        ))
                        .collect()
                )
            ),
            Event::SyncRecovered { revision } => {
                format!("tether {sync_name}: recovered, {} applied", short(revision))
            }
            Event::AutomationPushed { commit, images } => format!(
                "tether {sync_name}: automation pushed {}{}",
                short(commit),
                list(
                    images
                        .iter()
                        .map(|(w, c, from, to)| format!("{w} {c}: {from} → {to}"))
                        .collect()
                )
            ),
            Event::Collected { revision, objects } => format!(
                "tether {sync_name}: {} deleted {} object(s) no longer in Git{}",
                short(revision),
                objects.len(),
                list(objects.clone())
            ),
            Event::ReadOnlyKey { error } => {
                format!("tether {sync_name}: the deploy key cannot push: {error}")
            }
        }
    }

    fn fields(&self) -> Value {
        match self {
            Event::SyncFailed {
                revision,
                error,
                objects,
            } => json!({"revision": revision, "error": error, "objects": objects}),
            Event::SyncRecovered { revision } => json!({ "revision": revision }),
            Event::AutomationPushed { commit, images } => json!({
                "commit": commit,
                "images": images.iter().map(|(w, c, f, t)| json!({"workload": w, "container": c, "from": f, "to": t})).collect::<Vec<_>>(),
            }),
            Event::Collected { revision, objects } => {
                json!({"revision": revision, "objects": objects})
            }
            Event::ReadOnlyKey { error } => json!({ "error": error }),
        }
    }
}

/// The body sent for `event` in `format`.
pub fn body(format: Format, event: &Event, sync_name: &str, source: &str) -> Value {
    match format {
        // Plain text: a file name, commit or server message holding `<!channel>` or `<https://x|fix>` must
        // not ping a channel or disguise a link, nor `*`/`_` restyle it.
        Format::Slack => json!({ "text": slack_escape(&event.text(sync_name)), "mrkdwn": false }),
        Format::Generic => {
            let mut v = json!({
                "event": event.kind(),
                "syncName": sync_name,
                "source": source,
                "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                "text": event.text(sync_name),
            });
            if let (Value::Object(m), Value::Object(f)) = (&mut v, event.fields()) {
                m.extend(f);
            }
            v
        }
    }
}

/// `text` with the three characters Slack's message syntax gives meaning escaped, as Slack documents.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A receiver as logs may name it: scheme and host only. Incoming-webhook URLs (Slack, Teams, Discord)
/// carry their secret in the path.
pub fn receiver_label(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or(host);
    if scheme.is_empty() {
        format!("{host}/…")
    } else {
        format!("{scheme}://{host}/…")
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Remembers the last failure so a failure that repeats is sent once, and its end as "recovered".
#[derive(Debug, Default)]
pub struct Dedup {
    failing: Option<String>,
}

impl Dedup {
    /// Whether a failure with this `key` (reason and message) is news.
    pub fn failed(&mut self, key: String) -> bool {
        let news = self.failing.as_ref() != Some(&key);
        self.failing = Some(key);
        news
    }

    /// Whether a success ends a run of failures.
    pub fn succeeded(&mut self) -> bool {
        self.failing.take().is_some()
    }
}

/// The sending end; cheap to clone. Without receivers it drops everything at once.
#[derive(Clone)]
pub struct Notifier {
    queues: Vec<mpsc::Sender<Event>>,
    metrics: Option<Arc<crate::admin::AdminState>>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn off() -> Self {
        Notifier {
            queues: Vec::new(),
            metrics: None,
        }
    }

    /// Starts the delivery task.
    pub fn start(
        settings: Settings,
        sync_name: String,
        source: String,
        admin: Arc<crate::admin::AdminState>,
    ) -> anyhow::Result<Self> {
        if settings.urls.is_empty() {
            return Ok(Self::off());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let secret = settings.secret.clone();
        // One queue and one delivery task per receiver: a receiver that hangs delays only its own messages.
        let mut queues = Vec::new();
        for url in settings.urls {
            let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
            queues.push(tx);
            let (http, secret, metrics) = (http.clone(), secret.clone(), admin.clone());
            let (sync_name, source, format) = (sync_name.clone(), source.clone(), settings.format);
            tokio::spawn(async move {
                let receiver = receiver_label(&url);
                while let Some(event) = rx.recv().await {
                    let payload = body(format, &event, &sync_name, &source);
                    let bytes = serde_json::to_vec(&payload).unwrap_or_default();
                    let send = || async {
                        let mut req = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(bytes.clone());
                        if let Some(sig) = secret.as_ref().and_then(|s| signature(&s.0, &bytes)) {
                            req = req.header("X-Tether-Signature", sig);
                        }
                        req.send().await?.error_for_status().map(|_| ())
                    };
                    let result = send
                        .retry(
                            ExponentialBuilder::default()
                                .with_min_delay(Duration::from_secs(1))
                                .with_max_times(3),
                        )
                        .await;
                    match result {
                        Ok(()) => {
                            metrics.metrics.notification("sent");
                            info!(component = "notify", event = event.kind(), receiver = %receiver, "notification sent");
                        }
                        Err(e) => {
                            metrics.metrics.notification("failed");
                            warn!(component = "notify", event = event.kind(), receiver = %receiver,
                                error = %e.without_url(), "notification not delivered after retries");
                        }
                    }
                }
            });
        }
        Ok(Notifier {
            queues,
            metrics: Some(admin),
        })
    }

    /// Queues `event` for every receiver; never waits. A full queue drops it (counted in
    /// `tether_notifications_total`).
    pub fn send(&self, event: Event) {
        for tx in &self.queues {
            if tx.try_send(event.clone()).is_ok() {
                continue;
            }
            if let Some(m) = &self.metrics {
                m.metrics.notification("dropped");
            }
            warn!(
                component = "notify",
                "notification queue full: a notification was dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_are_logged_without_the_secret_in_their_path() {
        assert_eq!(
            receiver_label("https://hooks.slack.com/services/T0/B0/s3cr3t"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            receiver_label("http://u:p@127.0.0.1:9/x?token=t"),
            "http://127.0.0.1:9/…"
        );
        // Nor when the settings are shown for debugging.
        let settings = Settings {
            urls: vec!["https://hooks.slack.com/services/T0/B0/s3cr3t".into()],
            format: Format::Slack,
            secret: None,
        };
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        // Without a scheme (a mistake the flag refuses, naming the receiver this way).
        assert_eq!(
            receiver_label("hooks.slack.com/services/T0/B0/s3cr3t"),
            "hooks.slack.com/…"
        );
    }

    #[test]
    fn a_failure_that_repeats_is_news_once_and_its_end_is_a_recovery() {
        let mut d = Dedup::default();
        assert!(!d.succeeded());
        assert!(d.failed("rejected: x".into()));
        assert!(!d.failed("rejected: x".into()));
        assert!(d.failed("rejected: y".into()));
        assert!(d.succeeded());
        assert!(!d.succeeded());
    }

    #[test]
    fn messages_name_the_object_and_file_and_are_signed() {
        let e = Event::SyncFailed {
            revision: Some("0123456789abcdef".into()),
            error: "the API server rejected 1 object(s)".into(),
            objects: vec![ObjectError {
                object: Some("demo:deployment/web".into()),
                at: "apps/web.yaml:3".into(),
                message: "spec.replicas: Invalid value".into(),
            }],
        };
        let slack = body(Format::Slack, &e, "tether", "ssh://git@h/r");
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("0123456789ab") && text.contains("demo:deployment/web (apps/web.yaml:3)"),
            "{text}"
        );
        let generic = body(Format::Generic, &e, "tether", "ssh://git@h/r");
        assert_eq!(generic["event"], "sync_failed");
        assert_eq!(slack["mrkdwn"], false);
        assert_eq!(generic["objects"][0]["at"], "apps/web.yaml:3");
        // The key of RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn text_from_a_repository_cannot_ping_a_slack_channel_or_disguise_a_link() {
        let e = Event::SyncFailed {
            revision: None,
            error: "1 problem(s) in the manifests".into(),
            objects: vec![ObjectError {
                object: None,
                at: "x<!channel>.yaml:1".into(),
                message: "see <https://evil.example|the fix> & more".into(),
            }],
        };
        let slack = body(Format::Slack, &e, "tether", "ssh://git@h/r");
        let text = slack["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            text.contains("x&lt;!channel&gt;.yaml:1")
                && text.contains("&lt;https://evil.example|the fix&gt; &amp; more"),
            "{text}"
        );
        // The generic format is JSON for programs: as written.
        let generic = body(Format::Generic, &e, "tether", "ssh://git@h/r");
        assert_eq!(generic["objects"][0]["at"], "x<!channel>.yaml:1");
    }
}
