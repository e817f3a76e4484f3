//! Trigger rules: which of Airflow's rules a task has, and what its upstreams' outcomes so
//! far mean for it. The finishing transaction calls [`decide`] with counters, not upstream
//! rows, which keeps a finish O(downstreams) even for a 1000-way fan-in.

use serde::{Deserialize, Serialize};

/// Airflow's trigger rules (`airflow.utils.trigger_rule.TriggerRule`, 3.x).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    AllDoneMinOneSuccess,
    AllSkipped,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

impl TriggerRule {
    pub const ALL: [(&'static str, TriggerRule); 12] = [
        ("all_success", TriggerRule::AllSuccess),
        ("all_failed", TriggerRule::AllFailed),
        ("all_done", TriggerRule::AllDone),
        (
            "all_done_min_one_success",
            TriggerRule::AllDoneMinOneSuccess,
        ),
        ("all_skipped", TriggerRule::AllSkipped),
        ("one_success", TriggerRule::OneSuccess),
        ("one_failed", TriggerRule::OneFailed),
        ("one_done", TriggerRule::OneDone),
        ("none_failed", TriggerRule::NoneFailed),
        (
            "none_failed_min_one_success",
            TriggerRule::NoneFailedMinOneSuccess,
        ),
        ("none_skipped", TriggerRule::NoneSkipped),
        ("always", TriggerRule::Always),
    ];

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, r)| *r)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown trigger_rule `{s}`; use one of: {}",
                    names.join(", ")
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("all_success")
    }
}

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

    #[test]
    fn trigger_rules_round_trip() {
        for (name, rule) in TriggerRule::ALL {
            assert_eq!(TriggerRule::parse(name).unwrap(), rule);
            assert_eq!(rule.as_str(), name);
            assert_eq!(serde_json::to_value(rule).unwrap(), serde_json::json!(name));
        }
        assert!(TriggerRule::parse("all_sucess")
            .unwrap_err()
            .contains("all_success"));
    }
}
