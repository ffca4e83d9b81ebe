//! Which failed calls are tried again, and when.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::code;

type Predicate = dyn Fn(&Error) -> bool + Send + Sync;

/// When a failed call is tried again, on another node if there is one.
///
/// The default retries twice, at once and then after 10 ms, when the call
/// failed before a handler could have run it: the node could not be
/// reached or reset the connection, or answered 502, 503 or 504. A 408 is
/// retried while the call's deadline leaves time. A handler's own error
/// (500, any other 4xx) is not retried. One deadline covers every attempt.
///
/// ```
/// use std::time::Duration;
/// use micro::client::{Backoff, RetryPolicy};
///
/// let policy = RetryPolicy::new(4)
///     .backoff(Backoff::exponential(Duration::from_millis(5), Duration::from_millis(200)))
///     .retry_if(|err| err.code() == 503 || err.code() == 429);
/// assert!(policy.should_retry(&micro::Error::new("", 429, "slow down")));
/// assert!(!RetryPolicy::never().should_retry(&micro::Error::unavailable("down")));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts after the first. Default: 2.
    pub retries: u32,
    /// The pause before each retry. Default: none before the first retry,
    /// then 10 ms doubling up to 1 s.
    pub backoff: Backoff,
    predicate: Option<Arc<Predicate>>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("custom_predicate", &self.predicate.is_some())
            .finish()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(2)
    }
}

impl RetryPolicy {
    /// The default policy with `retries` attempts after the first.
    pub fn new(retries: u32) -> Self {
        Self {
            retries,
            backoff: Backoff::default(),
            predicate: None,
        }
    }

    /// Never retry.
    pub fn never() -> Self {
        Self::new(0)
    }

    /// Sets the pause before each retry.
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Retries the errors `predicate` accepts, instead of the default set.
    /// The deadline still bounds every attempt.
    #[must_use]
    pub fn retry_if(mut self, predicate: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Whether `err` is worth another attempt under this policy (never,
    /// for a policy without retries).
    pub fn should_retry(&self, err: &Error) -> bool {
        if self.retries == 0 {
            return false;
        }
        match &self.predicate {
            Some(p) => p(err),
            None => err.code() == code::TIMEOUT || err.is_node_failure(),
        }
    }
}

/// The pause before a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same pause before every retry.
    Fixed(Duration),
    /// No pause before the first retry, then `base` doubling per retry up
    /// to `max`.
    Exponential {
        /// The pause before the second retry.
        base: Duration,
        /// The longest pause.
        max: Duration,
    },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
    }
}

impl Backoff {
    /// No pause, then `base` doubling up to `max`.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Backoff::Exponential { base, max }
    }

    /// The pause before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Exponential { base, max } => match retry {
                0 | 1 => Duration::ZERO,
                n => base.saturating_mul(1u32 << (n - 2).min(20)).min(max),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retries_only_failures_before_the_handler() {
        let p = RetryPolicy::default();
        for code in [408, 502, 503, 504] {
            assert!(p.should_retry(&Error::new("", code, "")), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 413, 415, 500] {
            assert!(!p.should_retry(&Error::new("", code, "")), "{code}");
        }
    }

    #[test]
    fn exponential_backoff() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50));
        let delays: Vec<_> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 50, 50]);
        assert_eq!(
            Backoff::Fixed(Duration::from_millis(3))
                .delay(9)
                .as_millis(),
            3
        );
    }
}
