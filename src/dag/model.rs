//! Domain types a validated DAG is made of. Everything here is already checked: a `Dag` can
//! only come out of [`crate::dag::validate`], so the scheduler and workers never re-validate.
//! A `Dag` is serialized as JSON into `dag_versions.spec`; workers load it from there, so a
//! run always executes the version it was started with.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::retry::FailedTry;
use crate::core::{Duration, RetryPolicy, Schedule, Timetable, TriggerRule};
use crate::operators::OperatorName;

fn check_key(kind: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{kind} must not be empty"));
    }
    if s.len() > 250 {
        return Err(format!("{kind} `{s}` is longer than 250 characters"));
    }
    // Airflow's KEY_REGEX: ^[\w.-]+$ (ASCII letters, digits, underscore, dot, dash).
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{kind} `{s}` contains `{c}`; use only letters, digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// A DAG's id, as Airflow allows it: letters, digits, `_`, `.`, `-`, at most 250 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DagId(String);

/// A task's id within its DAG, with the same rules as [`DagId`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

macro_rules! key_newtype {
    ($t:ident, $kind:literal) => {
        impl $t {
            pub fn parse(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                check_key($kind, &s)?;
                Ok($t(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $t::parse(s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
key_newtype!(DagId, "dag_id");
key_newtype!(TaskId, "task id");

/// A value inside a task's `with:`. Literal unless a marker said otherwise; markers are
/// resolved when the task runs (`crate::operators::context`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Arg {
    /// A literal scalar, or a whole `$const` subtree, or the content a `$f` loaded.
    Value(serde_json::Value),
    List(Vec<Arg>),
    /// A mapping; order as written.
    Map(Vec<(String, Arg)>),
    /// `$t` / `$template`: a Jinja template rendered with the Airflow context.
    Template(String),
    /// `$x` / `$xcom`: an upstream task's XCom value (key defaults to `return_value`).
    XCom {
        task: TaskId,
        key: String,
    },
}

impl Arg {
    pub fn empty_map() -> Arg {
        Arg::Map(Vec::new())
    }

    /// True when no marker appears anywhere below, so the value is known at parse time.
    pub fn is_literal(&self) -> bool {
        match self {
            Arg::Value(_) => true,
            Arg::List(items) => items.iter().all(Arg::is_literal),
            Arg::Map(entries) => entries.iter().all(|(_, a)| a.is_literal()),
            Arg::Template(_) | Arg::XCom { .. } => false,
        }
    }

    /// The JSON value of a literal tree (markers become `null`; check `is_literal` first).
    pub fn to_literal_json(&self) -> serde_json::Value {
        match self {
            Arg::Value(v) => v.clone(),
            Arg::List(items) => items.iter().map(Arg::to_literal_json).collect(),
            Arg::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, a)| (k.clone(), a.to_literal_json()))
                    .collect(),
            ),
            Arg::Template(_) | Arg::XCom { .. } => serde_json::Value::Null,
        }
    }

    /// Every upstream task an `$xcom` marker below refers to.
    pub fn xcom_tasks(&self, out: &mut Vec<TaskId>) {
        match self {
            Arg::XCom { task, .. } => out.push(task.clone()),
            Arg::List(items) => items.iter().for_each(|a| a.xcom_tasks(out)),
            Arg::Map(entries) => entries.iter().for_each(|(_, a)| a.xcom_tasks(out)),
            Arg::Value(_) | Arg::Template(_) => {}
        }
    }

    /// The top-level keys of a mapping (what `with:` names).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Arg::Map(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Checks a task's `with:` against its operator at parse time (see
/// [`crate::operators::check_with`]): `(field, message)` pairs, empty when all is well.
pub fn check_with(op: OperatorName, args: &Arg) -> Vec<(String, String)> {
    let keys = args.keys();
    let literal = args.is_literal().then(|| args.to_literal_json());
    let with = crate::operators::WithArgs {
        keys: &keys,
        literal: literal.as_ref(),
    };
    crate::operators::check_with(op, with)
}

/// A validated task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: TaskId,
    pub operator: OperatorName,
    /// The `uses:` string as the file wrote it.
    pub uses: String,
    /// The `with:` mapping (always an `Arg::Map`).
    pub args: Arg,
    /// Direct upstream tasks: `needs` plus every `$xcom` source, sorted, no duplicates.
    pub upstream: Vec<TaskId>,
    /// Direct downstream tasks, sorted (filled in by the graph step).
    pub downstream: Vec<TaskId>,
    pub retries: u32,
    pub retry_delay: Duration,
    /// The backoff multiplier (Airflow 3): 0 is off, 2.0 doubles the delay each try.
    pub retry_exponential_backoff: f64,
    pub max_retry_delay: Option<Duration>,
    pub execution_timeout: Option<Duration>,
    pub trigger_rule: TriggerRule,
    pub owner: String,
    pub doc_md: Option<String>,
    /// The pool the task's tries take slots from; `None` is `default_pool`.
    pub pool: Option<String>,
    /// How many of the pool's slots one try takes (at least 1).
    #[serde(default = "one_slot")]
    pub pool_slots: u32,
    pub queue: Option<String>,
}

fn one_slot() -> u32 {
    1
}

impl Task {
    /// Airflow's default retry delay (`[core] default_task_retry_delay`): 300 s.
    /// The pool this task's tries take slots from.
    pub fn pool_name(&self) -> &str {
        self.pool.as_deref().unwrap_or("default_pool")
    }

    pub fn default_retry_delay() -> Duration {
        Duration::from_secs(300)
    }

    /// When a failed try of this task runs again.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            retry_delay: self.retry_delay,
            exponential_backoff: self.retry_exponential_backoff,
            max_retry_delay: self.max_retry_delay,
        }
    }

    /// The wait before retrying after `failed`, if `max_tries` (retries when the run started)
    /// leaves another try.
    pub fn retry_after(&self, failed: &FailedTry<'_>, max_tries: i32) -> Option<Duration> {
        (i64::from(failed.try_number) <= i64::from(max_tries))
            .then(|| self.retry_policy().delay_after(failed))
    }

    /// A task with Airflow's defaults for everything but its id and operator (`uses` is
    /// updraft's own name for it; no arguments, no upstream).
    pub fn new(task_id: TaskId, operator: OperatorName) -> Task {
        Task {
            task_id,
            operator,
            uses: format!("updraft.{}", operator.as_str()),
            args: Arg::empty_map(),
            upstream: Vec::new(),
            downstream: Vec::new(),
            retries: 0,
            retry_delay: Task::default_retry_delay(),
            retry_exponential_backoff: 0.0,
            max_retry_delay: None,
            execution_timeout: None,
            trigger_rule: TriggerRule::AllSuccess,
            owner: "airflow".into(),
            doc_md: None,
            pool: None,
            pool_slots: 1,
            queue: None,
        }
    }
}

/// A validated DAG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dag {
    pub dag_id: DagId,
    pub description: Option<String>,
    pub schedule: Schedule,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub tags: Vec<String>,
    /// `params`: name → default value (Airflow's `Param` objects are reduced to their default).
    pub params: serde_json::Map<String, serde_json::Value>,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    pub dagrun_timeout: Option<Duration>,
    pub is_paused_upon_creation: Option<bool>,
    pub doc_md: Option<String>,
    /// Tasks in a topological order (upstreams before downstreams, ties by id).
    pub tasks: Vec<Task>,
}

impl Dag {
    /// A DAG with the YAML format's defaults for everything but its id and tasks (manual
    /// schedule, no dates, no catchup, 16 active runs and tasks).
    pub fn new(dag_id: DagId, tasks: Vec<Task>) -> Dag {
        Dag {
            dag_id,
            description: None,
            schedule: Schedule::Manual,
            start_date: None,
            end_date: None,
            catchup: false,
            tags: Vec::new(),
            params: serde_json::Map::new(),
            max_active_runs: 16,
            max_active_tasks: 16,
            dagrun_timeout: None,
            is_paused_upon_creation: None,
            doc_md: None,
            tasks,
        }
    }

    /// What the planner needs to say when this DAG runs next.
    pub fn timetable(&self) -> Timetable<'_> {
        Timetable {
            schedule: &self.schedule,
            start_date: self.start_date,
            end_date: self.end_date,
            catchup: self.catchup,
        }
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_id.as_str() == id)
    }

    /// Owners of the DAG as Airflow shows them: the distinct task owners, comma-separated.
    pub fn owners(&self) -> String {
        let mut owners: Vec<&str> = self.tasks.iter().map(|t| t.owner.as_str()).collect();
        owners.sort_unstable();
        owners.dedup();
        owners.join(", ")
    }

    /// Tasks with no downstream: their states decide the run's outcome.
    pub fn leaves(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| t.downstream.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_airflow_key_rules() {
        assert!(DagId::parse("user_automation").is_ok());
        assert!(DagId::parse("a.b-c_1").is_ok());
        assert!(DagId::parse("").unwrap_err().contains("empty"));
        assert!(DagId::parse("has space").unwrap_err().contains("` `"));
        assert!(TaskId::parse("x".repeat(251)).unwrap_err().contains("250"));
    }

    #[test]
    fn arg_literal_and_xcom_sources() {
        let a = Arg::Map(vec![
            ("x".into(), Arg::Value(1.into())),
            (
                "y".into(),
                Arg::List(vec![Arg::XCom {
                    task: TaskId::parse("up").unwrap(),
                    key: "return_value".into(),
                }]),
            ),
        ]);
        assert!(!a.is_literal());
        let mut v = Vec::new();
        a.xcom_tasks(&mut v);
        assert_eq!(v, vec![TaskId::parse("up").unwrap()]);
        assert_eq!(a.keys(), vec!["x", "y"]);
        let lit = Arg::Map(vec![("x".into(), Arg::Value(1.into()))]);
        assert_eq!(lit.to_literal_json(), serde_json::json!({"x": 1}));
    }
}
