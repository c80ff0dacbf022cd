//! Per-host request pacing: a token bucket (`--registry-rps`, `--registry-burst`) that a 429 blocks for the
//! `Retry-After` time and slows down, so one busy registry never sees a burst of retries and other registries
//! are not held up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::time::Instant;

/// The slowest a throttled host is ever paced (requests per second), as Flux v1.
pub const MIN_RPS: f64 = 0.1;

/// How long after the last 429 a host's rate starts to recover.
pub const RECOVERY_COOLDOWN: Duration = Duration::from_secs(60);

/// Rate limit settings per registry host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub rps: f64,
    /// How many requests may go at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimit {
    /// Flux v1's code defaults: 50 requests per second, bursts of 10.
    fn default() -> Self {
        RateLimit {
            rps: 50.0,
            burst: 10,
        }
    }
}

/// The host is blocked (after a 429) or paced for longer than the caller will wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// How long until a request could go.
    pub wait: Duration,
}

#[derive(Debug)]
struct Bucket {
    /// The current rate: the configured one, or less after 429s.
    rate: f64,
    /// Tokens at `last`; negative when requests have reserved future tokens.
    tokens: f64,
    /// When `tokens` was computed; in the future while the host is blocked, so nothing refills during a block.
    last: Instant,
    /// The end of the current block after a 429.
    blocked_until: Option<Instant>,
    throttled_at: Option<Instant>,
}

/// Token buckets for every host the client talks to.
#[derive(Debug)]
pub struct HostLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl HostLimiter {
    /// Buckets with these settings; `rps` is raised to [`MIN_RPS`] and `burst` to 1 if lower.
    pub fn new(limit: RateLimit) -> Self {
        HostLimiter {
            limit: RateLimit {
                rps: if limit.rps.is_finite() {
                    limit.rps.max(MIN_RPS)
                } else {
                    RateLimit::default().rps
                },
                burst: limit.burst.max(1),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `host`'s turn. When the turn is further away than `max_wait` (a long `Retry-After`), returns
    /// [`Blocked`] at once without taking a turn, so callers fail fast instead of hanging.
    pub async fn acquire(&self, host: &str, max_wait: Duration) -> Result<(), Blocked> {
        loop {
            let ready = {
                let mut buckets = self.lock();
                let now = Instant::now();
                let bucket = self.bucket(&mut buckets, host, now);
                bucket.tokens -= 1.0;
                let deficit = if bucket.tokens < 0.0 {
                    Duration::from_secs_f64(-bucket.tokens / bucket.rate)
                } else {
                    Duration::ZERO
                };
                let ready = bucket.last.max(now) + deficit;
                let wait = ready.saturating_duration_since(now);
                if wait > max_wait {
                    bucket.tokens += 1.0;
                    return Err(Blocked { wait });
                }
                ready
            };
            tokio::time::sleep_until(ready).await;
            // A 429 seen by another request while this one slept voids its turn: take a new one after the block.
            let blocked = self
                .lock()
                .get(host)
                .and_then(|b| b.blocked_until)
                .is_some_and(|until| until > Instant::now());
            if !blocked {
                return Ok(());
            }
        }
    }

    /// Records a 429 (or 503 with `Retry-After`): nothing goes to `host` for `retry_after`, and its rate is
    /// halved (down to [`MIN_RPS`]) so the retries after the block do not trip the limit again.
    pub fn throttled(&self, host: &str, retry_after: Duration) {
        let mut buckets = self.lock();
        let now = Instant::now();
        let bucket = self.bucket(&mut buckets, host, now);
        bucket.rate = (bucket.rate / 2.0).max(MIN_RPS);
        let until = bucket.last.max(now + retry_after);
        // One request may go when the block ends (a probe); the rest are paced at the lowered rate. Turns
        // handed out before the block are voided in `acquire`.
        bucket.tokens = 1.0;
        bucket.last = until;
        bucket.blocked_until = Some(until);
        bucket.throttled_at = Some(now);
    }

    /// Records a successful request: once [`RECOVERY_COOLDOWN`] has passed since the last 429, each success
    /// raises the rate by half again, up to the configured one.
    pub fn succeeded(&self, host: &str) {
        let mut buckets = self.lock();
        let now = Instant::now();
        let configured = self.limit.rps;
        let bucket = self.bucket(&mut buckets, host, now);
        if bucket.rate < configured
            && bucket
                .throttled_at
                .is_none_or(|t| now.saturating_duration_since(t) >= RECOVERY_COOLDOWN)
        {
            bucket.rate = (bucket.rate * 1.5).min(configured);
        }
    }

    /// The current rate for `host` (requests per second).
    pub fn rate(&self, host: &str) -> f64 {
        self.lock().get(host).map_or(self.limit.rps, |b| b.rate)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        // A panic while holding the lock cannot leave a bucket half-updated in a harmful way.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The host's bucket, refilled up to `now`.
    fn bucket<'a>(
        &self,
        buckets: &'a mut HashMap<String, Bucket>,
        host: &str,
        now: Instant,
    ) -> &'a mut Bucket {
        let burst = f64::from(self.limit.burst);
        let bucket = buckets.entry(host.to_owned()).or_insert_with(|| Bucket {
            rate: self.limit.rps,
            tokens: burst,
            last: now,
            blocked_until: None,
            throttled_at: None,
        });
        if now > bucket.last {
            let elapsed = now.duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(burst);
            bucket.last = now;
        }
        bucket
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (IMF-fixdate, RFC 850 or asctime), relative
/// to `now`. A date in the past means no wait; anything else unparsable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = parse_http_date(value)?;
    let now: DateTime<Utc> = now.into();
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc2822(value) {
        return Some(d.with_timezone(&Utc));
    }
    // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT; asctime: Sun Nov  6 08:49:37 1994.
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    for format in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&collapsed, format) {
            return Some(naive.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let limiter = HostLimiter::new(RateLimit { rps: 2.0, burst: 3 });
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("a", Duration::MAX).await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        limiter.acquire("a", Duration::MAX).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        limiter.acquire("a", Duration::MAX).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
        // Another host has its own bucket.
        limiter.acquire("b", Duration::MAX).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_are_spaced_out() {
        let limiter = std::sync::Arc::new(HostLimiter::new(RateLimit {
            rps: 10.0,
            burst: 1,
        }));
        let start = Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    l.acquire("h", Duration::MAX).await.unwrap();
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap().duration_since(start).as_millis());
        }
        times.sort_unstable();
        assert_eq!(times, [0, 100, 200, 300, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_voids_turns_handed_out_before_it() {
        let limiter = std::sync::Arc::new(HostLimiter::new(RateLimit { rps: 1.0, burst: 1 }));
        let start = Instant::now();
        limiter.acquire("h", Duration::MAX).await.unwrap();
        let l = limiter.clone();
        // Gets the turn at 1s, but sleeps through the 429 below.
        let waiter = tokio::spawn(async move {
            l.acquire("h", Duration::MAX).await.unwrap();
            Instant::now()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        limiter.throttled("h", Duration::from_secs(5));
        let went = waiter.await.unwrap().duration_since(start);
        assert_eq!(went, Duration::from_millis(5100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_the_host_halves_the_rate_and_recovers() {
        let limiter = HostLimiter::new(RateLimit { rps: 4.0, burst: 2 });
        let start = Instant::now();
        limiter.acquire("h", Duration::MAX).await.unwrap();
        limiter.throttled("h", Duration::from_secs(3));
        assert_eq!(limiter.rate("h"), 2.0);
        // Longer than the caller will wait: fails at once, takes no turn.
        assert_eq!(
            limiter.acquire("h", Duration::from_secs(1)).await,
            Err(Blocked {
                wait: Duration::from_secs(3)
            })
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Other hosts are not affected.
        limiter.acquire("other", Duration::ZERO).await.unwrap();
        limiter.acquire("h", Duration::MAX).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // No refill happened during the block: the next one waits a full token at the halved rate.
        limiter.acquire("h", Duration::MAX).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
        // No recovery within the cooldown; then ×1.5 per success, capped at the configured rate.
        limiter.succeeded("h");
        assert_eq!(limiter.rate("h"), 2.0);
        tokio::time::advance(RECOVERY_COOLDOWN).await;
        limiter.succeeded("h");
        assert_eq!(limiter.rate("h"), 3.0);
        limiter.succeeded("h");
        assert_eq!(limiter.rate("h"), 4.0);
        // Repeated 429s never go below the floor.
        for _ in 0..10 {
            limiter.throttled("h", Duration::ZERO);
        }
        assert_eq!(limiter.rate("h"), MIN_RPS);
    }
}
