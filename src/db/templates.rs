//! What a try's templates read from the database: the run and try as Airflow's context
//! shows them, the DAG's previous successful run (`prev_*_success`), and XComs for
//! `ti.xcom_pull`, including earlier runs' (`include_prior_dates`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::core::{RunState, RunType};

/// The run and try fields a template context needs that a claim does not carry.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RenderRow {
    pub run_type: RunType,
    pub run_state: RunState,
    pub run_after: DateTime<Utc>,
    pub queued_at: DateTime<Utc>,
    pub run_start_date: Option<DateTime<Utc>>,
    pub run_end_date: Option<DateTime<Utc>>,
    pub ti_start_date: Option<DateTime<Utc>>,
    /// The latest successful run of the DAG with an earlier logical date.
    pub prev_found: bool,
    pub prev_interval_start: Option<DateTime<Utc>>,
    pub prev_interval_end: Option<DateTime<Utc>>,
    pub prev_start_date: Option<DateTime<Utc>>,
    pub prev_end_date: Option<DateTime<Utc>>,
}

/// One round trip for everything [`RenderRow`] holds.
pub async fn render_row(pool: &PgPool, run_pk: i64, ti_id: i64) -> sqlx::Result<Option<RenderRow>> {
    sqlx::query_as::<_, RenderRow>(
        "SELECT r.run_type, r.state AS run_state, r.run_after, r.queued_at,
                r.start_date AS run_start_date, r.end_date AS run_end_date,
                ti.start_date AS ti_start_date,
                p.id IS NOT NULL AS prev_found,
                p.data_interval_start AS prev_interval_start, p.data_interval_end AS prev_interval_end,
                p.start_date AS prev_start_date, p.end_date AS prev_end_date
         FROM dag_runs r
         JOIN task_instances ti ON ti.id = $2 AND ti.run_pk = r.id
         LEFT JOIN LATERAL (
             SELECT id, data_interval_start, data_interval_end, start_date, end_date
             FROM dag_runs q
             WHERE q.dag_id = r.dag_id AND q.state = 'success' AND q.logical_date < r.logical_date
             ORDER BY q.logical_date DESC LIMIT 1
         ) p ON true
         WHERE r.id = $1",
    )
    .bind(run_pk)
    .bind(ti_id)
    .fetch_optional(pool)
    .await
}

/// XComs with `key` of `task_ids` in the run `run_id` of `dag_id` or, with
/// `up_to_logical_date`, in every run of the DAG up to that logical date; newest run first.
pub async fn xcoms(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_ids: &[String],
    key: &str,
    up_to_logical_date: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<(String, serde_json::Value)>> {
    sqlx::query_as(
        "SELECT x.task_id, x.value FROM xcom x JOIN dag_runs r ON r.id = x.run_pk
         WHERE r.dag_id = $1 AND x.key = $2 AND x.task_id = ANY($3)
           AND (CASE WHEN $4::timestamptz IS NULL THEN r.run_id = $5 ELSE r.logical_date <= $4 END)
         ORDER BY r.logical_date DESC, x.created_at DESC
         LIMIT 1000",
    )
    .bind(dag_id)
    .bind(key)
    .bind(task_ids)
    .bind(up_to_logical_date)
    .bind(run_id)
    .fetch_all(pool)
    .await
}
