//! Retries and a circuit breaker around a provider, so that a flaky model costs
//! a few bounded retries and an outage costs nothing: while the breaker is open
//! calls fail at once and analysis falls back to rules; after a cool-off one
//! probe call decides whether to close it again.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{InfoFuture, ModelError, ModelFuture, ModelProvider, ModelReply};
use crate::core::wit::Prompt;
use crate::telemetry::metrics::metrics;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, on connection errors, 429 and 5xx.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a random delay up to the exponential bound, so many clients
    /// retrying at once spread out; a server's Retry-After is honoured, up to
    /// `max_delay`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let bound = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jittered = bound.mul_f64(jitter.clamp(0.0, 1.0));
        match retry_after {
            Some(wanted) => wanted.min(self.max_delay).max(jittered),
            None => jittered,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe is let through.
    pub cool_off: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            cool_off: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// One probe call is in flight; others are refused until it ends.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
        }
    }

    #[cfg(test)]
    fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call go out now? `Err` carries how long until it may.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match self.state {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen => Err(self.policy.cool_off),
            BreakerState::Open => {
                let opened_at = self.opened_at.unwrap_or(now);
                let elapsed = now.saturating_duration_since(opened_at);
                if elapsed >= self.policy.cool_off {
                    self.state = BreakerState::HalfOpen;
                    Ok(())
                } else {
                    Err(self.policy.cool_off - elapsed)
                }
            }
        }
    }

    pub fn record_success(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.opened_at = None;
    }

    pub fn record_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.state == BreakerState::HalfOpen
            || self.consecutive_failures >= self.policy.failure_threshold
        {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

pub struct Resilient {
    inner: Box<dyn ModelProvider>,
    retry: RetryPolicy,
    breaker: Mutex<Breaker>,
    endpoint: String,
}

impl Resilient {
    pub fn new(
        inner: Box<dyn ModelProvider>,
        retry: RetryPolicy,
        breaker: BreakerPolicy,
    ) -> Resilient {
        let endpoint = inner.describe();
        Resilient {
            inner,
            retry,
            breaker: Mutex::new(Breaker::new(breaker)),
            endpoint,
        }
    }

    async fn call(&self, prompt: &Prompt) -> Result<ModelReply, ModelError> {
        {
            let mut breaker = self.breaker.lock().expect("breaker lock");
            if let Err(wait) = breaker.admit(Instant::now()) {
                return Err(ModelError::CircuitOpen {
                    endpoint: self.endpoint.clone(),
                    failures: breaker.consecutive_failures(),
                    retry_in_seconds: wait.as_secs().max(1),
                });
            }
        }
        let mut attempt = 0;
        let outcome = loop {
            match self.inner.complete(prompt).await {
                Err(error) if error.is_transient() && attempt < self.retry.max_retries => {
                    let retry_after = match &error {
                        ModelError::Http { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let delay = self.retry.delay(attempt, retry_after, jitter());
                    tracing::debug!(%error, ?delay, attempt, "retrying the model");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                outcome => break outcome,
            }
        };
        let mut breaker = self.breaker.lock().expect("breaker lock");
        match &outcome {
            Ok(_) => breaker.record_success(),
            Err(error) if error.counts_against_endpoint() => breaker.record_failure(Instant::now()),
            Err(_) => {}
        }
        let (provider, model) = self.inner.labels();
        metrics().model_circuit(provider, model, breaker.state == BreakerState::Open);
        outcome
    }
}

/// A number in [0, 1) that differs between calls; jitter needs spread, not
/// cryptographic randomness.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

impl ModelProvider for Resilient {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn labels(&self) -> (&'static str, &str) {
        self.inner.labels()
    }

    fn inspect(&self) -> InfoFuture<'_> {
        self.inner.inspect()
    }

    fn complete<'a>(&'a self, prompt: &'a Prompt) -> ModelFuture<'a> {
        Box::pin(self.call(prompt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_honour_retry_after() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0, None, 1.0), Duration::from_millis(250));
        assert_eq!(policy.delay(1, None, 1.0), Duration::from_millis(500));
        assert_eq!(policy.delay(10, None, 1.0), Duration::from_secs(5));
        assert_eq!(policy.delay(40, None, 1.0), Duration::from_secs(5));
        assert_eq!(policy.delay(1, None, 0.5), Duration::from_millis(250));
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(2)), 0.1),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(600)), 0.1),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let value = jitter();
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }

    #[test]
    fn the_breaker_opens_probes_and_closes() {
        let policy = BreakerPolicy {
            failure_threshold: 3,
            cool_off: Duration::from_secs(30),
        };
        let mut breaker = Breaker::new(policy);
        let start = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.admit(start), Ok(()));
            breaker.record_failure(start);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record_failure(start);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.admit(start + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        // After the cool-off one probe goes through; a second caller waits.
        assert_eq!(breaker.admit(start + Duration::from_secs(30)), Ok(()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit(start + Duration::from_secs(31)).is_err());
        // A failed probe reopens at once, without waiting for the threshold.
        breaker.record_failure(start + Duration::from_secs(31));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit(start + Duration::from_secs(40)).is_err());
        assert_eq!(breaker.admit(start + Duration::from_secs(61)), Ok(()));
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.consecutive_failures(), 0);
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut breaker = Breaker::new(BreakerPolicy {
            failure_threshold: 2,
            cool_off: Duration::from_secs(1),
        });
        let now = Instant::now();
        breaker.record_failure(now);
        breaker.record_success();
        breaker.record_failure(now);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
