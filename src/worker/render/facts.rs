//! What a template context is built from: plain facts about the DAG, the task, the run and
//! the try. The worker fills them from its database rows (`in_worker`); the corpus test
//! fills them from the Airflow fixture, so both render through the same objects.

use chrono::{DateTime, Utc};

/// The DAG, as templates see it (`dag`).
#[derive(Debug, Clone, Default)]
pub struct DagFacts {
    pub dag_id: String,
    pub description: Option<String>,
    /// `", "`-joined task owners, as Airflow's `dag.owner`.
    pub owner: String,
    pub tags: Vec<String>,
    pub catchup: bool,
    pub max_active_runs: i64,
    pub max_active_tasks: i64,
    pub dagrun_timeout: Option<f64>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub doc_md: Option<String>,
    pub schedule: Option<String>,
    pub task_ids: Vec<String>,
    /// The DAG's params (defaults), in file order.
    pub params: Vec<(String, serde_json::Value)>,
}

/// The task (`task`).
#[derive(Debug, Clone, Default)]
pub struct TaskFacts {
    pub task_id: String,
    /// The operator's class path (`airflow.providers.standard.operators.bash.BashOperator`).
    pub class_path: String,
    pub owner: String,
    pub retries: i64,
    pub retry_delay: f64,
    pub retry_exponential_backoff: f64,
    pub max_retry_delay: Option<f64>,
    pub execution_timeout: Option<f64>,
    pub queue: String,
    pub pool: String,
    pub priority_weight: i64,
    pub trigger_rule: String,
    pub depends_on_past: bool,
    pub doc_md: Option<String>,
    /// The task's params (the DAG's, and the task's own in Airflow), in order.
    pub params: Vec<(String, serde_json::Value)>,
    pub upstream: Vec<String>,
    pub downstream: Vec<String>,
}

/// The run (`dag_run`).
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub run_id: String,
    /// Airflow's value: `scheduled`, `manual`, `backfill`.
    pub run_type: String,
    /// Airflow's value: `queued`, `running`, ...
    pub state: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub conf: serde_json::Map<String, serde_json::Value>,
    pub clear_number: i64,
}

/// The try (`ti`).
#[derive(Debug, Clone, Default)]
pub struct TiFacts {
    pub try_number: i64,
    pub max_tries: i64,
    pub map_index: i64,
    pub hostname: String,
    pub start_date: Option<DateTime<Utc>>,
}

/// The DAG's previous successful run (`prev_*_success`).
#[derive(Debug, Clone, Default)]
pub struct PrevSuccess {
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// Everything a context is built from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub dag: DagFacts,
    pub task: TaskFacts,
    pub run: RunFacts,
    pub ti: TiFacts,
    /// `params` after the run's conf was applied (DAG params first, then conf-only keys).
    pub params: Vec<(String, serde_json::Value)>,
    pub prev_success: Option<PrevSuccess>,
}

impl Facts {
    /// Airflow's `params`: the DAG's, with `dag_run.conf` overriding and adding keys.
    pub fn resolve_params(
        dag_params: &[(String, serde_json::Value)],
        conf: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<(String, serde_json::Value)> {
        let mut out: Vec<(String, serde_json::Value)> = dag_params.to_vec();
        for (k, v) in conf {
            match out.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
        out
    }
}
