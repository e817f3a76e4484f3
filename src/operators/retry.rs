//! Retries inside one try, the same way in every operator: exponential backoff from the
//! operator's policy (attempts, base, cap), each wait jittered into its upper half, a
//! server's `Retry-After` honoured instead when it gave one, and only errors whose kind is
//! transient retried: a permanent one ends the loop at once.
//!
//! Why [`backon`]: the loop (when to stop, what to wait, whom to tell) is the part that is
//! easy to get subtly wrong by hand, and each operator had its own. The jitter is ours rather
//! than backon's: backon's adds up to the whole delay on top (so the cap would no longer be
//! the longest wait), and without its `std` feature its generator starts from a fixed seed,
//! which would have every worker wait in lockstep.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rand::Rng;

use super::OperatorError;

/// How a step inside a try is retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first: at most `retries + 1` in all.
    pub retries: u32,
    /// The first wait; doubled after each attempt.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

/// The last error, once the policy gave up or the error was permanent.
#[derive(Debug)]
pub struct GaveUp {
    pub error: OperatorError,
    /// How many attempts were made (1 when the first error was permanent).
    pub attempts: u32,
}

/// Runs `attempt` until it succeeds, fails permanently or the policy is spent. Before each
/// wait, `on_retry(error, attempts_so_far, wait)` is called (to log it).
pub async fn retry<T, F, Fut, N>(
    policy: RetryPolicy,
    mut attempt: F,
    mut on_retry: N,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OperatorError>>,
    N: FnMut(&OperatorError, u32, Duration),
{
    let attempts = AtomicU32::new(0);
    let backoff = ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(policy.base.min(policy.cap))
        .with_max_delay(policy.cap)
        .with_max_times(policy.retries as usize);
    let result = (|| {
        attempts.fetch_add(1, Ordering::Relaxed);
        attempt()
    })
    .retry(backoff)
    .when(OperatorError::is_transient)
    .adjust(|e: &OperatorError, next: Option<Duration>| {
        // `None` means the policy is spent: a Retry-After does not extend it.
        next.map(|d| e.retry_after().unwrap_or_else(|| jitter(d)))
    })
    .notify(|e: &OperatorError, wait| on_retry(e, attempts.load(Ordering::Relaxed), wait))
    .await;
    result.map_err(|error| GaveUp {
        error,
        attempts: attempts.load(Ordering::Relaxed),
    })
}

/// A wait somewhere in the upper half of `d`: spread out, never longer than the cap.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::operators::Reason;

    const FAST: RetryPolicy = RetryPolicy {
        retries: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
    };

    /// Fails with `errors` in turn, then succeeds.
    fn script(
        errors: Vec<OperatorError>,
    ) -> impl FnMut() -> std::future::Ready<Result<u32, OperatorError>> {
        let mut left = errors.into_iter();
        let mut calls = 0;
        move || {
            calls += 1;
            std::future::ready(match left.next() {
                Some(e) => Err(e),
                None => Ok(calls),
            })
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let waits = Mutex::new(Vec::new());
        let errors = vec![
            OperatorError::new(Reason::Timeout, "slow"),
            OperatorError::new(Reason::ServerError, "503"),
        ];
        let out = retry(FAST, script(errors), |_, n, d| {
            waits.lock().unwrap().push((n, d))
        })
        .await
        .unwrap();
        assert_eq!(out, 3);
        let waits = waits.into_inner().unwrap();
        assert_eq!(waits.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 2]);
        assert!(waits.iter().all(|w| w.1 <= FAST.cap), "{waits:?}");
    }

    #[tokio::test]
    async fn a_permanent_error_stops_at_once() {
        let errors = vec![
            OperatorError::new(Reason::Timeout, "slow"),
            OperatorError::new(Reason::Rejected, "HTTP 404"),
        ];
        let gave_up = retry(FAST, script(errors), |_, _, _| {}).await.unwrap_err();
        assert_eq!(gave_up.attempts, 2);
        assert_eq!(gave_up.error.reason(), Reason::Rejected);
    }

    #[tokio::test]
    async fn the_policy_bounds_the_attempts() {
        let errors = (0..10)
            .map(|_| OperatorError::new(Reason::Connection, "refused"))
            .collect();
        let gave_up = retry(FAST, script(errors), |_, _, _| {}).await.unwrap_err();
        assert_eq!(gave_up.attempts, FAST.retries + 1);
        let none = RetryPolicy { retries: 0, ..FAST };
        let errors = vec![OperatorError::new(Reason::Connection, "refused")];
        let gave_up = retry(none, script(errors), |_, _, _| {}).await.unwrap_err();
        assert_eq!(gave_up.attempts, 1);
    }

    #[tokio::test]
    async fn retry_after_replaces_the_backoff_and_waits_double_up_to_the_cap() {
        let waits = Mutex::new(Vec::new());
        let errors = vec![
            OperatorError::new(Reason::RateLimited, "429")
                .with_retry_after(Some(Duration::from_millis(7))),
            OperatorError::new(Reason::ServerError, "500"),
            OperatorError::new(Reason::ServerError, "500"),
            OperatorError::new(Reason::ServerError, "500"),
        ];
        let policy = RetryPolicy {
            retries: 5,
            base: Duration::from_millis(2),
            cap: Duration::from_millis(5),
        };
        retry(policy, script(errors), |_, _, d| {
            waits.lock().unwrap().push(d)
        })
        .await
        .unwrap();
        let waits = waits.into_inner().unwrap();
        assert_eq!(waits[0], Duration::from_millis(7), "Retry-After, as given");
        // Then 4 ms and 5 ms (capped) nominal, each jittered into its upper half.
        assert!(waits[1] >= Duration::from_millis(2) && waits[1] <= Duration::from_millis(4));
        assert!(waits[3] >= Duration::from_micros(2500) && waits[3] <= policy.cap);
    }
}
