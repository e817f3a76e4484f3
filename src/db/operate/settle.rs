//! The pure half of clear and mark: given a run's task states and what an operator changes,
//! decide every task's new state, its upstream counters and the run's state, as the
//! finishing transaction would have if the tasks had ended that way. No I/O: the caller
//! reads the rows under their locks and writes back what this answers.

use std::collections::HashMap;

use crate::core::trigger::{decide, Decision, UpstreamCounts};
use crate::core::{RunState, TaskState, TriggerRule};
use crate::dag::Dag;

/// What an operator does to one task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Run it again: back to `none` (or `queued` once its upstreams allow), a new try.
    Clear,
    /// Set its state (`success`, `failed` or `skipped`).
    Set(TaskState),
}

/// Why a row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Cleared by the operator: a new try with its retries afresh.
    Cleared,
    /// Set by the operator.
    Marked,
    /// Decided by its trigger rule after the change.
    Decided,
    /// Only its upstream counters moved.
    Counted,
}

impl Why {
    /// The name the write statement reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Cleared => "cleared",
            Why::Marked => "marked",
            Why::Decided => "decided",
            Why::Counted => "counted",
        }
    }
}

/// A task instance as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub id: i64,
    pub task_id: String,
    pub state: TaskState,
    pub counts: [i32; 4],
}

/// One row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub id: i64,
    pub task_id: String,
    pub state: TaskState,
    /// `up_success, up_failed, up_skipped, up_upstream_failed`.
    pub counts: [i32; 4],
    pub why: Why,
}

/// The outcome for the whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub writes: Vec<Write>,
    pub unfinished: i32,
    pub run_state: RunState,
}

/// Applies `changes` to the run's tasks, then decides every task still in `none` by its
/// trigger rule, in topological order (so one pass settles cascades), recounts every
/// task's upstream outcomes and says what the run is now: running while anything is
/// unfinished, else failed if a leaf failed or is upstream_failed, else success.
pub fn settle(dag: &Dag, current: &[Current], changes: &HashMap<String, Change>) -> Settled {
    let mut state: HashMap<&str, TaskState> = current
        .iter()
        .map(|c| (c.task_id.as_str(), c.state))
        .collect();
    for (task_id, change) in changes {
        if let Some(s) = state.get_mut(task_id.as_str()) {
            *s = match change {
                Change::Clear => TaskState::None,
                Change::Set(to) => *to,
            };
        }
    }
    let counts_of = |state: &HashMap<&str, TaskState>, task: &crate::dag::Task| {
        let mut c = [0i32; 4];
        for up in &task.upstream {
            match state.get(up.as_str()) {
                Some(TaskState::Success) => c[0] += 1,
                Some(TaskState::Failed) => c[1] += 1,
                Some(TaskState::Skipped) => c[2] += 1,
                Some(TaskState::UpstreamFailed) => c[3] += 1,
                _ => {}
            }
        }
        c
    };
    let mut decided: Vec<&str> = Vec::new();
    for task in &dag.tasks {
        let id = task.task_id.as_str();
        if state.get(id) != Some(&TaskState::None) {
            continue;
        }
        let c = counts_of(&state, task);
        let counts = UpstreamCounts {
            total: task.upstream.len() as u32,
            success: c[0] as u32,
            failed: c[1] as u32,
            skipped: c[2] as u32,
            upstream_failed: c[3] as u32,
        };
        let next = if task.trigger_rule == TriggerRule::Always {
            TaskState::Queued
        } else {
            match decide(task.trigger_rule, counts) {
                Decision::Wait => continue,
                Decision::Run => TaskState::Queued,
                Decision::Skip => TaskState::Skipped,
                Decision::UpstreamFailed => TaskState::UpstreamFailed,
            }
        };
        state.insert(id, next);
        decided.push(id);
    }
    let mut writes = Vec::new();
    for cur in current {
        let id = cur.task_id.as_str();
        let new_state = state.get(id).copied().unwrap_or(cur.state);
        let counts = dag.task(id).map_or(cur.counts, |t| counts_of(&state, t));
        let why = match changes.get(id) {
            Some(Change::Clear) => Why::Cleared,
            Some(Change::Set(_)) => Why::Marked,
            None if decided.contains(&id) => Why::Decided,
            None if counts != cur.counts => Why::Counted,
            None => continue,
        };
        writes.push(Write {
            id: cur.id,
            task_id: cur.task_id.clone(),
            state: new_state,
            counts,
            why,
        });
    }
    let unfinished = state.values().filter(|s| s.is_unfinished()).count() as i32;
    let run_state = if unfinished > 0 {
        RunState::Running
    } else if dag.leaves().any(|t| {
        matches!(
            state.get(t.task_id.as_str()),
            Some(TaskState::Failed | TaskState::UpstreamFailed)
        )
    }) {
        RunState::Failed
    } else {
        RunState::Success
    };
    Settled {
        writes,
        unfinished,
        run_state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{DagId, OperatorName, Task, TaskId};

    fn dag(tasks: &[(&str, &[&str])]) -> Dag {
        let tasks = tasks
            .iter()
            .map(|(id, up)| Task {
                upstream: up.iter().map(|u| TaskId::parse(*u).unwrap()).collect(),
                ..Task::new(TaskId::parse(*id).unwrap(), OperatorName::Empty)
            })
            .collect();
        Dag::new(
            DagId::parse("d").unwrap(),
            crate::dag::graph::build(tasks).unwrap(),
        )
    }

    fn current(states: &[(&str, TaskState)]) -> Vec<Current> {
        states
            .iter()
            .enumerate()
            .map(|(i, (t, s))| Current {
                id: i as i64,
                task_id: t.to_string(),
                state: *s,
                counts: [0; 4],
            })
            .collect()
    }

    fn state_of(s: &Settled, task: &str) -> Option<TaskState> {
        s.writes.iter().find(|w| w.task_id == task).map(|w| w.state)
    }

    #[test]
    fn clearing_a_failed_task_with_its_downstream_queues_it_and_waits_the_rest() {
        // a, b → c (fan-in) → d
        let d = dag(&[("a", &[]), ("b", &[]), ("c", &["a", "b"]), ("d", &["c"])]);
        use TaskState::*;
        let cur = current(&[
            ("a", Success),
            ("b", Failed),
            ("c", UpstreamFailed),
            ("d", UpstreamFailed),
        ]);
        let changes = [
            ("b", Change::Clear),
            ("c", Change::Clear),
            ("d", Change::Clear),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_string(), c))
        .collect();
        let s = settle(&d, &cur, &changes);
        assert_eq!(state_of(&s, "b"), Some(Queued));
        assert_eq!(state_of(&s, "c"), Some(None));
        assert_eq!(state_of(&s, "d"), Some(None));
        assert_eq!(state_of(&s, "a"), Option::None, "a is untouched");
        let c = s.writes.iter().find(|w| w.task_id == "c").unwrap();
        assert_eq!(
            c.counts,
            [1, 0, 0, 0],
            "a's success is counted, b's failure is gone"
        );
        assert_eq!((s.unfinished, s.run_state), (3, RunState::Running));
    }

    #[test]
    fn marking_failed_cascades_upstream_failed_and_ends_the_run() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["b"])]);
        use TaskState::*;
        let cur = current(&[("a", Running), ("b", None), ("c", None)]);
        let changes = [("a".to_string(), Change::Set(Failed))].into();
        let s = settle(&d, &cur, &changes);
        assert_eq!(state_of(&s, "a"), Some(Failed));
        assert_eq!(state_of(&s, "b"), Some(UpstreamFailed));
        assert_eq!(state_of(&s, "c"), Some(UpstreamFailed));
        assert_eq!((s.unfinished, s.run_state), (0, RunState::Failed));
    }

    #[test]
    fn marking_success_queues_the_downstream() {
        let d = dag(&[("a", &[]), ("b", &["a"])]);
        use TaskState::*;
        let cur = current(&[("a", Failed), ("b", UpstreamFailed)]);
        let changes = [
            ("a".to_string(), Change::Set(Success)),
            ("b".to_string(), Change::Clear),
        ]
        .into();
        let s = settle(&d, &cur, &changes);
        assert_eq!(state_of(&s, "b"), Some(Queued));
        assert_eq!((s.unfinished, s.run_state), (1, RunState::Running));
        let all = [
            ("a".to_string(), Change::Set(Success)),
            ("b".to_string(), Change::Set(Success)),
        ]
        .into();
        assert_eq!(settle(&d, &cur, &all).run_state, RunState::Success);
    }
}
