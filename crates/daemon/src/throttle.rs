//! Adaptive concurrency toward the Kubernetes API server. When API Priority and Fairness refuses requests
//! (429), fewer are sent at once: the limit drops to half of what was in flight, once per round of requests
//! (those sent before the cut cannot cut again), and grows back by one per round of answers that were not
//! refused; each minute without any refusal doubles it (counted when the next request goes out), so an
//! agent that met a burst of load once does not keep a low limit through hours of calm until its next big
//! sync. kube's retry policy sends each refused request again after the server's `Retry-After`; without the
//! limit, every round of retries met the same refusal (60 Secrets against a level of 3 seats took 86 s).
//!
//! Watches (long-lived) and Lease requests (leader election must renew on time) are never held back.
//!
//! One gate serves the clients that write ([`Gate::shared`]: the sync's and image automation's): the server's
//! capacity for this agent does not grow with the number of clients it builds. The watch cache's client is
//! not gated. The limit and the refusals are exported on `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tracing::{debug, info};

/// Requests in flight toward the API server before it refuses any: above what a sync sends at once (writes
/// `--apply-concurrency`, LISTs 8) plus image automation's few, so only the server's 429s ever lower it.
pub const MAX_IN_FLIGHT: usize = 256;

/// How long without a refusal before the limit doubles: long enough that a server still under load
/// refuses again first (APF queues wait at most tens of seconds), short enough that 1 grows back to 256
/// within ten minutes of calm.
const CALM: Duration = Duration::from_secs(60);

/// How many requests may be in flight at once; shared by every clone of the client.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    freed: Notify,
    max: f64,
    /// The whole-number limit, as `/metrics` shows it.
    limit_now: Gauge,
    /// Answers that were 429.
    refused: Counter,
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    /// Requests admitted so far; each request's number decides whether its 429 starts a new round.
    admitted: u64,
    /// Requests admitted before this number were in flight at the last cut.
    round: u64,
    /// When a cut was last logged at info level.
    told: Option<Instant>,
    /// Since when no request was refused (or the limit last doubled); `None` while at the maximum.
    calm_since: Option<Instant>,
}

/// A request's place at the gate, given back when it drops.
struct Permit {
    gate: Arc<Gate>,
    number: u64,
}

/// What the server's answer says about its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Refused,
    Served,
}

impl Gate {
    /// The process's gate, at [`MAX_IN_FLIGHT`].
    pub fn shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<Gate>> = OnceLock::new();
        SHARED.get_or_init(|| Gate::new(MAX_IN_FLIGHT)).clone()
    }

    /// A gate that starts (and at most stays) at `max` requests in flight.
    pub fn new(max: usize) -> Arc<Self> {
        let limit_now = Gauge::default();
        limit_now.set(max.max(1) as i64);
        let max = max.max(1) as f64;
        Arc::new(Gate {
            limit_now,
            refused: Counter::default(),
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                admitted: 0,
                round: 0,
                told: None,
                calm_since: None,
            }),
            freed: Notify::new(),
            max,
        })
    }

    /// The current limit (a gauge) and the count of refused answers (a counter), to register on `/metrics`.
    pub fn metrics(&self) -> (Gauge, Counter) {
        (self.limit_now.clone(), self.refused.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.state().limit as usize
    }

    async fn admit(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut s = self.state();
                self.recover(&mut s, Instant::now());
                if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                    s.in_flight += 1;
                    let number = s.admitted;
                    s.admitted += 1;
                    return Permit {
                        gate: self.clone(),
                        number,
                    };
                }
            }
            freed.await;
        }
    }

    /// Doubles the limit once per [`CALM`] that passed without a refusal, up to the maximum.
    fn recover(&self, s: &mut State, now: Instant) {
        let Some(since) = s.calm_since else {
            return;
        };
        let periods = now.saturating_duration_since(since).as_secs() / CALM.as_secs();
        if periods == 0 {
            return;
        }
        // Doubling 9 times covers 1 to 256; more would only overflow the exponent.
        s.limit = (s.limit * f64::from(1u32 << periods.min(9))).min(self.max);
        s.calm_since = (s.limit < self.max).then(|| since + CALM * periods as u32);
        self.freed.notify_waiters();
        self.limit_now.set(s.limit.floor() as i64);
        debug!(
            component = "k8s",
            limit = s.limit as usize,
            "no 429 for a while: sending more at once"
        );
    }

    fn answered(&self, number: u64, answer: Answer) {
        let mut s = self.state();
        match answer {
            Answer::Served => {
                let grown = (s.limit + 1.0 / s.limit).min(self.max);
                if grown.floor() > s.limit.floor() {
                    self.freed.notify_one();
                }
                s.limit = grown;
            }
            Answer::Refused => {
                self.refused.inc();
                s.calm_since = Some(Instant::now());
                if number >= s.round {
                    // Half of what was really in flight: a nominal limit far above it would take several
                    // rounds (each a Retry-After long) to bite.
                    s.limit = (s.limit.min(s.in_flight as f64) / 2.0).max(1.0);
                    s.round = s.admitted;
                    let limit = s.limit as usize;
                    let quiet = s.told.is_none_or(|t| t.elapsed() > Duration::from_secs(30));
                    if quiet {
                        s.told = Some(Instant::now());
                        info!(component = "k8s", limit,
                            "the API server is refusing requests (429, priority and fairness): sending fewer at once");
                    } else {
                        debug!(component = "k8s", limit, "429 again: sending fewer at once");
                    }
                }
            }
        }
        self.limit_now.set(s.limit.floor() as i64);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.gate.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.gate.freed.notify_one();
    }
}

/// Requests that are never held back: watches stay open for minutes, and a Lease renewal that waits
/// behind refused writes could let the Lease expire.
fn exempt<B>(req: &Request<B>) -> bool {
    let query = req.uri().query().unwrap_or("");
    query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1")
        || req.uri().path().contains("/leases/")
        || req.uri().path().ends_with("/leases")
}

/// The layer: put it inside the retry layer, so that every attempt passes the gate.
#[derive(Clone)]
pub struct GateLayer(pub Arc<Gate>);

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gated<S>;
    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// A service whose requests pass the [`Gate`].
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S, B> tower::Service<Request<Body>> for Gated<S>
where
    S: tower::Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if exempt(&req) {
            return Box::pin(self.inner.call(req));
        }
        // The service that was polled ready is the one called; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let permit = gate.admit().await;
            let res = inner.call(req).await;
            if let Ok(r) = &res {
                let answer = if r.status() == StatusCode::TOO_MANY_REQUESTS {
                    Answer::Refused
                } else {
                    Answer::Served
                };
                gate.answered(permit.number, answer);
            }
            drop(permit);
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refusals_halve_what_was_in_flight_once_per_round_and_answers_grow_it_back() {
        let gate = Gate::new(64);
        let round: Vec<Permit> = admit_n(&gate, 20).await;
        // Twenty in flight, all refused: one cut to ten, not twenty cuts to one.
        for p in &round {
            gate.answered(p.number, Answer::Refused);
        }
        assert_eq!(gate.limit(), 10);
        drop(round);
        // The next round is refused too: its first refusal cuts again.
        let next: Vec<Permit> = admit_n(&gate, 10).await;
        gate.answered(next[0].number, Answer::Refused);
        gate.answered(next[1].number, Answer::Refused);
        assert_eq!(gate.limit(), 5);
        drop(next);
        // Served answers add about one per round of `limit` answers.
        for _ in 0..6 {
            let p = gate.admit().await;
            gate.answered(p.number, Answer::Served);
        }
        assert_eq!(gate.limit(), 6);
        // Never below one.
        for _ in 0..10 {
            let p = gate.admit().await;
            gate.answered(p.number, Answer::Refused);
        }
        assert_eq!(gate.limit(), 1);
    }

    #[tokio::test]
    async fn a_minute_without_refusals_doubles_the_limit_up_to_the_maximum() {
        let gate = Gate::new(256);
        let (limit, _) = gate.metrics();
        let round: Vec<Permit> = admit_n(&gate, 2).await;
        gate.answered(round[0].number, Answer::Refused);
        drop(round);
        assert_eq!(gate.limit(), 1);
        let refused_at = gate
            .state()
            .calm_since
            .expect("calm counted from the refusal");
        let recover = |after: Duration| {
            let mut s = gate.state();
            gate.recover(&mut s, refused_at + after);
            s.limit as usize
        };
        assert_eq!(recover(Duration::from_secs(59)), 1);
        assert_eq!(recover(CALM), 2);
        // Counted from the last doubling, not from every admission.
        assert_eq!(recover(CALM + Duration::from_secs(30)), 2);
        assert_eq!(recover(CALM * 3), 8);
        assert_eq!(limit.get(), 8);
        // An idle hour: at the maximum, and no more counting.
        assert_eq!(recover(CALM * 60), 256);
        assert!(gate.state().calm_since.is_none());
        // A refusal starts the minute again.
        let p = gate.admit().await;
        gate.answered(p.number, Answer::Refused);
        let s = gate.state();
        assert!(s.calm_since.is_some() && s.limit < 256.0);
    }

    #[tokio::test]
    async fn the_metrics_show_the_whole_limit_and_every_refusal() {
        let gate = Gate::new(64);
        let (limit, refused) = gate.metrics();
        assert_eq!((limit.get(), refused.get()), (64, 0));
        let round: Vec<Permit> = admit_n(&gate, 20).await;
        for p in &round {
            gate.answered(p.number, Answer::Refused);
        }
        // One cut for the round, but twenty refusals counted.
        assert_eq!((limit.get(), refused.get()), (10, 20));
        drop(round);
        // About one more per round of ten served answers; the gauge shows whole requests only.
        let mut answers = 0;
        while limit.get() == 10 && answers < 20 {
            let p = gate.admit().await;
            gate.answered(p.number, Answer::Served);
            answers += 1;
        }
        assert_eq!(limit.get(), 11);
        assert!(
            (10..=11).contains(&answers),
            "{answers} answers to grow by one"
        );
    }

    #[tokio::test]
    async fn a_request_over_the_limit_waits_until_one_in_flight_is_answered() {
        let gate = Gate::new(2);
        let a = gate.admit().await;
        let _b = gate.admit().await;
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.number }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a third request went past a limit of two"
        );
        drop(a);
        let number = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("admitted once one was answered")
            .expect("task");
        assert_eq!(number, 2);
    }

    #[test]
    fn watches_and_leases_are_never_held_back() {
        let req = |uri: &str| Request::builder().uri(uri).body(()).unwrap();
        assert!(exempt(&req(
            "/api/v1/configmaps?labelSelector=a&watch=true&timeoutSeconds=290"
        )));
        assert!(exempt(&req(
            "/apis/coordination.k8s.io/v1/namespaces/t/leases/sync-leader"
        )));
        assert!(!exempt(&req(
            "/api/v1/namespaces/a/configmaps/c?dryRun=All"
        )));
        assert!(!exempt(&req(
            "/api/v1/configmaps?labelSelector=watch%3Dtrue"
        )));
    }

    /// Admits `n` requests.
    async fn admit_n(gate: &Arc<Gate>, n: usize) -> Vec<Permit> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(gate.admit().await);
        }
        out
    }
}
