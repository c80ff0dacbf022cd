//! Structured logs on stderr (kube_client's own error lines are off: tether reports every failed request
//! itself, with the object and file it concerns): logfmt by default, JSON on request. Every tether event carries `component=`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Installs the global subscriber. The level comes from `RUST_LOG` (default `info`; client libraries `warn`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,kube_client=off,kube=warn,hyper=warn,rustls=warn,tower=warn")
    });
    let layer = match format {
        LogFormat::Fmt => tracing_logfmt::builder()
            .with_target(false)
            .with_span_path(false)
            .layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A second init (tests) is harmless; keep the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}
