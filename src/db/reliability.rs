//! What the chaos command reads back after a scenario: run states, tries recorded more than
//! once, deadlocks Postgres broke, and the timings hand-off and outcome latency come from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::core::RunState;

/// Runs by state: of one DAG, or (`None`) of all.
pub async fn run_states(
    pool: &PgPool,
    dag_id: Option<&str>,
) -> sqlx::Result<BTreeMap<RunState, i64>> {
    let rows: Vec<(RunState, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM dag_runs WHERE $1::text IS NULL OR dag_id = $1 GROUP BY state",
    )
    .bind(dag_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Whether every run has ended.
pub async fn all_runs_finished(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM dag_runs WHERE state IN ('queued', 'running'))",
    )
    .fetch_one(pool)
    .await
}

/// Tries whose outcome was recorded more than once: more than one "Marking task as …" line
/// for the same try. A fenced finish makes this impossible; the chaos command checks it.
pub async fn tries_recorded_twice(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
            SELECT ti_id, try_number FROM task_logs
            WHERE stream = 'system' AND line LIKE 'Marking task as %'
            GROUP BY ti_id, try_number HAVING count(*) > 1) x",
    )
    .fetch_one(pool)
    .await
}

/// The deadlocks Postgres has broken in database `name` (statistics are reported by each
/// backend when it exits or every second or so, so read this after closing the pools).
pub async fn deadlocks(admin: &PgPool, name: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(deadlocks), 0)::bigint FROM pg_stat_database WHERE datname = $1",
    )
    .bind(name)
    .fetch_one(admin)
    .await
}

/// One finished task instance's identity and times.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TiTimes {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

/// Every task instance with its run id and times.
pub async fn ti_times(pool: &PgPool) -> sqlx::Result<Vec<TiTimes>> {
    sqlx::query_as(
        "SELECT t.dag_id, r.run_id, t.task_id, t.try_number, t.start_date, t.end_date
         FROM task_instances t JOIN dag_runs r ON r.id = t.run_pk",
    )
    .fetch_all(pool)
    .await
}

/// The first start and the last end of any task instance: the span throughput is measured over.
pub async fn task_span(
    pool: &PgPool,
) -> sqlx::Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64)> {
    sqlx::query_as(
        "SELECT min(start_date), max(end_date), count(*) FILTER (WHERE state = 'success')
         FROM task_instances",
    )
    .fetch_one(pool)
    .await
}

/// Deletes every run (their task instances, logs and XComs go with them), so the next
/// measurement starts from an empty queue.
pub async fn forget_runs(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM dag_runs").execute(pool).await?;
    Ok(())
}

/// The process id of the worker holding a running task of `dag_id` (the stream of the
/// failover scenario), if one does.
pub async fn stream_holder(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar(
        "SELECT w.pid FROM task_instances t JOIN workers w ON w.id = t.lease_owner
         WHERE t.dag_id = $1 AND t.state = 'running' LIMIT 1",
    )
    .bind(dag_id)
    .fetch_optional(pool)
    .await
}
