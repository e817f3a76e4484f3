//! Retry policies: how long to wait before a task's next try, and a policy for updraft's own
//! retries of database and network calls.

use super::duration::Duration;

/// Airflow caps every retry delay at 24 hours.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs_const(86_400);

/// A task's retry settings, as the DAG file gives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try (`retries`); a task has `retries + 1` tries in all.
    pub retries: u32,
    pub retry_delay: Duration,
    pub exponential_backoff: bool,
    /// `max_retry_delay`; never more than [`MAX_RETRY_DELAY`].
    pub max_retry_delay: Option<Duration>,
}

impl RetryPolicy {
    /// Whether try `try_number` (1-based) may be followed by another.
    pub fn has_retry_after(&self, try_number: u32) -> bool {
        try_number <= self.retries
    }

    /// The wait before the next try after try `try_number` (1-based) failed: `retry_delay`,
    /// or with exponential backoff `retry_delay * 2^(try_number-1)`, capped by
    /// `max_retry_delay` and at 24 hours.
    pub fn delay_after(&self, try_number: u32) -> Duration {
        let base = self.retry_delay.std();
        let delay = if self.exponential_backoff {
            let factor = 2u32.saturating_pow(try_number.saturating_sub(1).min(30));
            base.checked_mul(factor).unwrap_or(MAX_RETRY_DELAY.std())
        } else {
            base
        };
        let cap = self
            .max_retry_delay
            .unwrap_or(MAX_RETRY_DELAY)
            .min(MAX_RETRY_DELAY);
        Duration::from(delay.min(cap.std()))
    }

    /// The delay before the next try, or `None` when try `try_number` was the last.
    pub fn next_delay(&self, try_number: u32) -> Option<Duration> {
        self.has_retry_after(try_number)
            .then(|| self.delay_after(try_number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay: u64, exp: bool, max: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            retry_delay: Duration::from_secs(delay),
            exponential_backoff: exp,
            max_retry_delay: max.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff() {
        assert_eq!(
            policy(10, false, None).delay_after(3),
            Duration::from_secs(10)
        );
        let t = policy(10, true, Some(60));
        assert_eq!(t.delay_after(1), Duration::from_secs(10));
        assert_eq!(t.delay_after(2), Duration::from_secs(20));
        assert_eq!(t.delay_after(3), Duration::from_secs(40));
        assert_eq!(
            t.delay_after(4),
            Duration::from_secs(60),
            "capped by max_retry_delay"
        );
        assert_eq!(
            policy(10, true, None).delay_after(40),
            Duration::from_secs(86_400),
            "capped at 24h"
        );
    }

    #[test]
    fn tries_left() {
        let p = policy(1, false, None);
        assert_eq!(p.next_delay(5), Some(Duration::from_secs(1)));
        assert_eq!(p.next_delay(6), None, "5 retries: 6 tries in all");
    }
}
