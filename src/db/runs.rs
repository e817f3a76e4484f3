//! DAG runs: manual triggers (CLI, API, UI) and reads of a run's state.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::core::{RunState, RunType, TaskState};

/// Why a trigger was refused; each variant is something the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("DAG `{0}` not found; is its file in the DAGs folder and free of import errors?")]
    DagNotFound(String),
    #[error("a run with run_id `{0}` already exists for this DAG")]
    DuplicateRunId(String),
    #[error("run ids starting with `scheduled__` are reserved for scheduled runs; choose another dag_run_id")]
    ReservedRunId,
    #[error("invalid dag_run_id: {0}")]
    InvalidRunId(String),
    #[error("conf must be a JSON object, got {0}")]
    ConfNotObject(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What a manual trigger asks for.
#[derive(Debug, Clone, Default)]
pub struct TriggerRequest {
    pub conf: Option<serde_json::Value>,
    /// Airflow 3 lets manual runs have a logical date; default: the trigger time.
    pub logical_date: Option<DateTime<Utc>>,
    /// Default (also for an empty one, as Airflow's `dag_run_id or generate_run_id(...)`):
    /// `manual__<logical date, RFC 3339 with microseconds>`. Checked by
    /// [`crate::core::run_id::check`].
    pub run_id: Option<String>,
    pub note: Option<String>,
}

/// A run row, as the API, UI and CLI read it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub run_after: DateTime<Utc>,
    pub state: RunState,
    pub conf: serde_json::Value,
    pub note: Option<String>,
    pub version_id: i64,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str =
    "id, dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end, run_after,
    state, conf, note, version_id, queued_at, start_date, end_date";

/// Creates a queued manual run pinned to the DAG's current version and wakes the schedulers.
pub async fn trigger(
    pool: &PgPool,
    dag_id: &str,
    req: TriggerRequest,
) -> Result<RunRow, TriggerError> {
    let conf = req.conf.unwrap_or_else(|| serde_json::json!({}));
    if !conf.is_object() {
        return Err(TriggerError::ConfNotObject(json_kind(&conf)));
    }
    let chosen = req.run_id.filter(|id| !id.is_empty());
    if let Some(id) = &chosen {
        crate::core::run_id::check(id).map_err(TriggerError::InvalidRunId)?;
    }
    let logical_date: DateTime<Utc> = match req.logical_date {
        Some(d) => d,
        None => sqlx::query_scalar("SELECT now()").fetch_one(pool).await?,
    };
    if chosen
        .as_deref()
        .is_some_and(|id| id.starts_with("scheduled__"))
    {
        return Err(TriggerError::ReservedRunId);
    }
    let run_id = chosen.unwrap_or_else(|| {
        format!(
            "manual__{}",
            logical_date.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
        )
    });
    let row = sqlx::query_as::<_, RunRow>(&format!(
        "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                               state, conf, note, version_id)
         SELECT dag_id, $2, 'manual', $3, $3, $3, 'queued', $4, $5, version_id FROM dags WHERE dag_id = $1 AND is_active
         ON CONFLICT (dag_id, run_id) DO NOTHING
         RETURNING {RUN_COLUMNS}"
    ))
    .bind(dag_id)
    .bind(&run_id)
    .bind(logical_date)
    .bind(&conf)
    .bind(&req.note)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => {
            super::notify_scheduler(pool).await?;
            Ok(row)
        }
        None => {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM dags WHERE dag_id = $1 AND is_active)",
            )
            .bind(dag_id)
            .fetch_one(pool)
            .await?;
            if exists {
                Err(TriggerError::DuplicateRunId(run_id))
            } else {
                Err(TriggerError::DagNotFound(dag_id.to_string()))
            }
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

pub async fn get(pool: &PgPool, dag_id: &str, run_id: &str) -> sqlx::Result<Option<RunRow>> {
    sqlx::query_as::<_, RunRow>(&format!(
        "SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = $1 AND run_id = $2"
    ))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(pool)
    .await
}

/// A task instance's state, for progress displays and the API.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct TaskStateRow {
    pub id: i64,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
    pub note: Option<String>,
}

/// A recorded try of a task instance (see `task_tries`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TryRow {
    pub ti_id: i64,
    pub try_number: i32,
    pub state: TaskState,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// Every recorded try of a run's task instances, by task instance and try.
pub async fn tries(pool: &PgPool, run_pk: i64) -> sqlx::Result<Vec<TryRow>> {
    sqlx::query_as::<_, TryRow>(
        "SELECT tt.ti_id, tt.try_number, tt.state, tt.start_date, tt.end_date
         FROM task_tries tt JOIN task_instances ti ON ti.id = tt.ti_id
         WHERE ti.run_pk = $1 ORDER BY tt.ti_id, tt.try_number",
    )
    .bind(run_pk)
    .fetch_all(pool)
    .await
}

pub async fn task_states(pool: &PgPool, run_pk: i64) -> sqlx::Result<Vec<TaskStateRow>> {
    sqlx::query_as::<_, TaskStateRow>(
        "SELECT id, task_id, state, try_number, max_tries, start_date, end_date, hostname, note
         FROM task_instances WHERE run_pk = $1 ORDER BY id",
    )
    .bind(run_pk)
    .fetch_all(pool)
    .await
}
