//! One retry policy for every client of an outside service (Pyth, the Hugging Face Hub,
//! Weights & Biases, the LLM API) and for the queue's own calls while Redis is away:
//! exponential backoff from a base delay, doubling up to a cap, optionally jittered, for a
//! number of attempts; a server's `Retry-After` is honoured up to the cap. The schedule is
//! backon's; this module only says how it is configured and runs an operation under it.
//!
//! What is worth retrying is each client's decision (it returns [`Failure::Transient`] or
//! [`Failure::Permanent`]); this module does no I/O of its own besides sleeping.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// How an operation is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The delay before the first retry; it doubles with each retry.
    pub base: Duration,
    /// The longest delay between two attempts (a server's `Retry-After` too).
    pub max_delay: Duration,
    /// Add a random part (up to the delay itself) to each delay, so that many clients that
    /// failed together do not retry together.
    pub jitter: bool,
    /// Stop once the delays slept add up to this much, whatever the attempts left.
    pub max_total_delay: Option<Duration>,
}

impl Default for RetryPolicy {
    /// 4 attempts, 500 ms doubling to 16 s, no jitter.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(16),
            jitter: false,
            max_total_delay: None,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// Worth another attempt; `after` is the server's `Retry-After`, when it sent one.
    Transient { error: E, after: Option<Duration> },
    /// Not worth another attempt (a 4xx, a malformed answer).
    Permanent(E),
}

impl<E> Failure<E> {
    /// A transient failure without a `Retry-After`.
    pub fn transient(error: E) -> Self {
        Failure::Transient { error, after: None }
    }

    /// The same failure with its error converted.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> Failure<F> {
        match self {
            Failure::Transient { error, after } => Failure::Transient {
                error: f(error),
                after,
            },
            Failure::Permanent(error) => Failure::Permanent(f(error)),
        }
    }

    fn error(&self) -> &E {
        match self {
            Failure::Transient { error, .. } | Failure::Permanent(error) => error,
        }
    }
}

/// The operation's last error, and how many attempts were made.
#[derive(Debug)]
pub struct Exhausted<E> {
    pub error: E,
    pub attempts: u32,
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), without jitter or `Retry-After`.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.max_delay)
    }

    /// The backoff schedule, as backon's builder.
    pub fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.attempts.max(1) as usize - 1)
            .with_total_delay(self.max_total_delay);
        if self.jitter {
            b.with_jitter()
        } else {
            b
        }
    }

    /// Runs `op` (given the 1-based attempt number) until it succeeds, fails permanently, or
    /// the policy gives up; then returns its last error and the attempts made. Each retry is
    /// logged at WARN with `what`, the attempt, the delay and the error.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, Exhausted<E>>
    where
        E: std::fmt::Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Failure<E>>>,
    {
        let attempt = AtomicU32::new(0);
        let max = self.max_delay;
        let result = (|| {
            let n = attempt.fetch_add(1, Ordering::Relaxed) + 1;
            op(n)
        })
        .retry(self.backoff())
        .when(|f: &Failure<E>| matches!(f, Failure::Transient { .. }))
        .adjust(|f: &Failure<E>, planned| match f {
            Failure::Transient {
                after: Some(after), ..
            } => planned.map(|d| d.max(*after).min(max)),
            _ => planned,
        })
        .notify(|f: &Failure<E>, delay| {
            tracing::warn!(
                what,
                attempt = attempt.load(Ordering::Relaxed),
                delay_ms = delay.as_millis() as u64,
                error = %f.error(),
                "failed; retrying"
            );
        })
        .await;
        result.map_err(|f| Exhausted {
            error: match f {
                Failure::Transient { error, .. } | Failure::Permanent(error) => error,
            },
            attempts: attempt.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_until_the_attempts_are_spent() {
        let calls = std::cell::Cell::new(0);
        let r: Result<(), _> = quick(3)
            .run("test", |_| {
                calls.set(calls.get() + 1);
                async { Err(Failure::transient("down")) }
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!((e.error, e.attempts, calls.get()), ("down", 3, 3));
    }

    #[tokio::test]
    async fn stops_at_a_permanent_failure_and_returns_a_success() {
        let r: Result<(), _> = quick(5)
            .run("test", |n| async move {
                if n < 2 {
                    Err(Failure::transient("flaky"))
                } else {
                    Err(Failure::Permanent("bad request"))
                }
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!((e.error, e.attempts), ("bad request", 2));
        let ok = quick(5)
            .run("test", |n| async move {
                if n < 3 {
                    Err(Failure::transient("flaky"))
                } else {
                    Ok::<_, Failure<&str>>(n)
                }
            })
            .await;
        assert_eq!(ok.unwrap(), 3);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RetryPolicy::default();
        let d: Vec<u64> = (1..=7).map(|k| p.delay(k).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 8000, 16000, 16000]);
    }

    #[tokio::test]
    async fn a_retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 2,
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(120),
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let _ = p
            .run("test", |_| async {
                Err::<(), _>(Failure::Transient {
                    error: "429",
                    after: Some(Duration::from_secs(60)),
                })
            })
            .await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(110) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
