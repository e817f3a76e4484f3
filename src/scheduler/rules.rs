//! Trigger rules and retry backoff: pure functions the finishing transaction and the
//! reaper call. Counting upstream outcomes (instead of reading every upstream row) keeps a
//! finish O(downstreams) even for a 1000-way fan-in.

use crate::dag::{Duration, Task, TriggerRule};

/// How a task's direct upstreams have ended so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub total: u32,
    pub success: u32,
    pub failed: u32,
    pub skipped: u32,
    pub upstream_failed: u32,
}

impl UpstreamCounts {
    pub fn done(&self) -> u32 {
        self.success + self.failed + self.skipped + self.upstream_failed
    }

    fn all_done(&self) -> bool {
        self.done() >= self.total
    }

    fn failures(&self) -> u32 {
        self.failed + self.upstream_failed
    }
}

/// What the upstream counts mean for a task still in state `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not decided yet: more upstreams must finish.
    Wait,
    /// Queue it.
    Run,
    Skip,
    UpstreamFailed,
}

/// Airflow's trigger-rule semantics (`TriggerRuleDep`), deciding as early as the outcome is
/// certain, as Airflow's scheduler does.
pub fn decide(rule: TriggerRule, c: UpstreamCounts) -> Decision {
    use Decision::*;
    if c.total == 0 {
        return Run;
    }
    let all_done = c.all_done();
    match rule {
        TriggerRule::Always => Run,
        TriggerRule::AllSuccess => {
            if c.failures() > 0 {
                UpstreamFailed
            } else if c.skipped > 0 {
                Skip
            } else if c.success == c.total {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllFailed => {
            if c.success > 0 || c.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDoneMinOneSuccess => match (all_done, c.success > 0) {
            (false, _) => Wait,
            (true, true) => Run,
            (true, false) if c.failures() > 0 => UpstreamFailed,
            (true, false) => Skip,
        },
        TriggerRule::AllSkipped => {
            if c.success > 0 || c.failures() > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::OneSuccess => {
            if c.success > 0 {
                Run
            } else if !all_done {
                Wait
            } else if c.skipped == c.total {
                Skip
            } else {
                UpstreamFailed
            }
        }
        TriggerRule::OneFailed => {
            if c.failures() > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::OneDone => {
            if c.success > 0 || c.failed > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailed => {
            if c.failures() > 0 {
                UpstreamFailed
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if c.failures() > 0 {
                UpstreamFailed
            } else if !all_done {
                Wait
            } else if c.success > 0 {
                Run
            } else {
                Skip
            }
        }
        TriggerRule::NoneSkipped => {
            if c.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
    }
}

/// Airflow caps every retry delay at 24 hours.
const MAX_RETRY_DELAY: Duration = Duration::from_secs_const(86_400);

/// The wait before the next try after try `try_number` (1-based) failed: `retry_delay`, or with
/// `retry_exponential_backoff` `retry_delay * 2^(try_number-1)`, capped by `max_retry_delay`.
pub fn retry_delay(task: &Task, try_number: u32) -> Duration {
    let base = task.retry_delay.std();
    let delay = if task.retry_exponential_backoff {
        let factor = 2u32.saturating_pow(try_number.saturating_sub(1).min(30));
        base.checked_mul(factor).unwrap_or(MAX_RETRY_DELAY.std())
    } else {
        base
    };
    let cap = task
        .max_retry_delay
        .unwrap_or(MAX_RETRY_DELAY)
        .min(MAX_RETRY_DELAY);
    Duration::from(delay.min(cap.std()))
}

#[cfg(test)]
mod tests {
    use super::Decision::*;
    use super::*;

    fn c(
        total: u32,
        success: u32,
        failed: u32,
        skipped: u32,
        upstream_failed: u32,
    ) -> UpstreamCounts {
        UpstreamCounts {
            total,
            success,
            failed,
            skipped,
            upstream_failed,
        }
    }

    #[test]
    fn all_success() {
        let r = TriggerRule::AllSuccess;
        assert_eq!(decide(r, c(2, 1, 0, 0, 0)), Wait);
        assert_eq!(decide(r, c(2, 2, 0, 0, 0)), Run);
        assert_eq!(
            decide(r, c(3, 0, 1, 0, 0)),
            UpstreamFailed,
            "decides early on a failure"
        );
        assert_eq!(decide(r, c(3, 1, 0, 0, 1)), UpstreamFailed);
        assert_eq!(decide(r, c(2, 1, 0, 1, 0)), Skip);
        assert_eq!(decide(r, c(0, 0, 0, 0, 0)), Run, "roots run");
    }

    #[test]
    fn failure_rules() {
        assert_eq!(decide(TriggerRule::AllFailed, c(2, 0, 1, 0, 1)), Run);
        assert_eq!(decide(TriggerRule::AllFailed, c(2, 1, 0, 0, 0)), Skip);
        assert_eq!(decide(TriggerRule::OneFailed, c(3, 0, 1, 0, 0)), Run);
        assert_eq!(decide(TriggerRule::OneFailed, c(2, 2, 0, 0, 0)), Skip);
        assert_eq!(decide(TriggerRule::NoneFailed, c(2, 1, 0, 1, 0)), Run);
        assert_eq!(
            decide(TriggerRule::NoneFailed, c(3, 1, 1, 0, 0)),
            UpstreamFailed
        );
        assert_eq!(
            decide(TriggerRule::NoneFailedMinOneSuccess, c(2, 0, 0, 2, 0)),
            Skip
        );
        assert_eq!(
            decide(TriggerRule::NoneFailedMinOneSuccess, c(2, 1, 0, 1, 0)),
            Run
        );
    }

    #[test]
    fn done_and_one_rules() {
        assert_eq!(decide(TriggerRule::AllDone, c(3, 1, 1, 0, 0)), Wait);
        assert_eq!(decide(TriggerRule::AllDone, c(3, 1, 1, 1, 0)), Run);
        assert_eq!(
            decide(TriggerRule::AllDoneMinOneSuccess, c(2, 0, 1, 1, 0)),
            UpstreamFailed
        );
        assert_eq!(
            decide(TriggerRule::AllDoneMinOneSuccess, c(2, 1, 1, 0, 0)),
            Run
        );
        assert_eq!(decide(TriggerRule::OneSuccess, c(3, 1, 0, 0, 0)), Run);
        assert_eq!(
            decide(TriggerRule::OneSuccess, c(2, 0, 1, 1, 0)),
            UpstreamFailed
        );
        assert_eq!(decide(TriggerRule::OneSuccess, c(2, 0, 0, 2, 0)), Skip);
        assert_eq!(decide(TriggerRule::OneDone, c(3, 0, 1, 0, 0)), Run);
        assert_eq!(decide(TriggerRule::OneDone, c(2, 0, 0, 1, 1)), Skip);
        assert_eq!(decide(TriggerRule::AllSkipped, c(2, 0, 0, 2, 0)), Run);
        assert_eq!(decide(TriggerRule::AllSkipped, c(2, 1, 0, 0, 0)), Skip);
        assert_eq!(decide(TriggerRule::NoneSkipped, c(2, 0, 0, 1, 0)), Skip);
        assert_eq!(decide(TriggerRule::NoneSkipped, c(2, 1, 1, 0, 0)), Run);
        assert_eq!(decide(TriggerRule::Always, c(5, 0, 0, 0, 0)), Run);
    }

    fn task(delay: u64, exp: bool, max: Option<u64>) -> Task {
        Task {
            retries: 5,
            retry_delay: Duration::from_secs(delay),
            retry_exponential_backoff: exp,
            max_retry_delay: max.map(Duration::from_secs),
            ..Task::new(
                crate::dag::TaskId::parse("t").unwrap(),
                crate::dag::OperatorName::Empty,
            )
        }
    }

    #[test]
    fn backoff() {
        assert_eq!(
            retry_delay(&task(10, false, None), 3),
            Duration::from_secs(10)
        );
        let t = task(10, true, Some(60));
        assert_eq!(retry_delay(&t, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(&t, 2), Duration::from_secs(20));
        assert_eq!(retry_delay(&t, 3), Duration::from_secs(40));
        assert_eq!(
            retry_delay(&t, 4),
            Duration::from_secs(60),
            "capped by max_retry_delay"
        );
        assert_eq!(
            retry_delay(&task(10, true, None), 40),
            Duration::from_secs(86_400),
            "capped at 24h"
        );
    }
}
