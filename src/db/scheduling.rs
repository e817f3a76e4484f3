//! The scheduler's statements: plan and create cron runs, start queued runs within
//! `max_active_runs`, enforce `dagrun_timeout`, heartbeat. Each picks only rows that need
//! work (partial indexes), so a tick costs in proportion to state changes.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::tasks::SpecCache;
use super::WORKER_CHANNEL;
use crate::core::planner::{self, PlannedRun};

/// DAGs that need their next run planned (new, changed, or unpaused after a pause).
pub async fn plan_next_runs(
    pool: &PgPool,
    specs: &SpecCache,
    data_intervals: bool,
) -> anyhow::Result<usize> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT dag_id, version_id FROM dags
         WHERE is_active AND next_run_after IS NULL AND schedule IS NOT NULL LIMIT 500",
    )
    .fetch_all(pool)
    .await?;
    let mut planned = 0;
    for (dag_id, version_id) in rows {
        let dag = match specs.get(pool, version_id).await {
            Ok(dag) => dag,
            Err(e) => {
                // One unreadable version must not stall every other DAG: park this one
                // until its file changes (which resets the plan).
                tracing::warn!(dag_id, version_id, error = %format!("{e:#}"), "cannot read the DAG version; not scheduling it");
                store_next(pool, &dag_id, version_id, None).await?;
                continue;
            }
        };
        let last: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT max(logical_date) FROM dag_runs WHERE dag_id = $1 AND run_type = 'scheduled'",
        )
        .bind(&dag_id)
        .fetch_one(pool)
        .await?;
        let now = db_now(pool).await?;
        let next = planner::next_run(&dag.timetable(), last, now, data_intervals);
        store_next(pool, &dag_id, version_id, next).await?;
        planned += 1;
    }
    Ok(planned)
}

/// Stores a DAG's planned next run; `None` means nothing more will be scheduled.
async fn store_next<'e>(
    db: impl sqlx::PgExecutor<'e>,
    dag_id: &str,
    version_id: i64,
    next: Option<PlannedRun>,
) -> sqlx::Result<()> {
    // 'infinity' marks "planned: nothing more to schedule", distinct from NULL "plan me".
    sqlx::query(
        "UPDATE dags SET next_logical_date = $3, next_interval_start = $4, next_interval_end = $5,
                         next_run_after = COALESCE($6, 'infinity')
         WHERE dag_id = $1 AND version_id = $2",
    )
    .bind(dag_id)
    .bind(version_id)
    .bind(next.map(|n| n.logical_date))
    .bind(next.map(|n| n.interval_start))
    .bind(next.map(|n| n.interval_end))
    .bind(next.map(|n| n.run_after))
    .execute(db)
    .await?;
    Ok(())
}

pub async fn db_now<'e>(db: impl sqlx::PgExecutor<'e>) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT now()").fetch_one(db).await
}

/// At most this many scheduled runs are created per pass, so a long catch-up cannot hold up
/// the rest of a scheduler's work; the scheduler comes back at once when it hit the cap.
pub const CREATE_PER_PASS: usize = 100;

/// A DAG whose next scheduled run is due.
#[derive(sqlx::FromRow)]
struct DueDag {
    dag_id: String,
    version_id: i64,
    next_logical_date: DateTime<Utc>,
    next_interval_start: DateTime<Utc>,
    next_interval_end: DateTime<Utc>,
}

/// Creates the scheduled runs that are due, skipping DAGs that already have
/// `max_active_runs` runs queued or running (as Airflow does), at most [`CREATE_PER_PASS`]. The DAG row is locked with SKIP LOCKED so
/// several schedulers share the work, and the unique (dag_id, logical_date) index makes a
/// repeat after a crash a no-op. Returns how many runs were created.
pub async fn create_due_runs(
    pool: &PgPool,
    specs: &SpecCache,
    data_intervals: bool,
) -> anyhow::Result<usize> {
    let mut created = 0;
    while created < CREATE_PER_PASS {
        let mut tx = pool.begin().await?;
        let due: Option<DueDag> = sqlx::query_as(
            "SELECT dag_id, version_id, next_logical_date, next_interval_start, next_interval_end FROM dags
             WHERE is_active AND NOT is_paused AND next_run_after <= now() AND next_logical_date IS NOT NULL
               AND (SELECT count(*) FROM dag_runs r WHERE r.dag_id = dags.dag_id AND r.state IN ('queued', 'running'))
                   < max_active_runs
             ORDER BY next_run_after LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(DueDag {
            dag_id,
            version_id,
            next_logical_date: logical,
            next_interval_start: start,
            next_interval_end: end,
        }) = due
        else {
            break;
        };
        let dag = match specs.get(pool, version_id).await {
            Ok(dag) => dag,
            Err(e) => {
                tracing::warn!(dag_id, version_id, error = %format!("{e:#}"), "cannot read the DAG version; not scheduling it");
                store_next(&mut *tx, &dag_id, version_id, None).await?;
                tx.commit().await?;
                continue;
            }
        };
        let run_id = format!(
            "scheduled__{}",
            logical.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        );
        let inserted = sqlx::query(
            "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                                   run_after, state, version_id)
             VALUES ($1, $2, 'scheduled', $3, $4, $5, now(), 'queued', $6)
             ON CONFLICT (dag_id, logical_date) WHERE run_type = 'scheduled' DO NOTHING",
        )
        .bind(&dag_id)
        .bind(&run_id)
        .bind(logical)
        .bind(start)
        .bind(end)
        .bind(version_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        created += inserted as usize;
        let now = db_now(&mut *tx).await?;
        let next = planner::next_run(&dag.timetable(), Some(logical), now, data_intervals);
        store_next(&mut *tx, &dag_id, version_id, next).await?;
        tx.commit().await?;
    }
    Ok(created)
}

/// Starts queued runs of unpaused DAGs within `max_active_runs`: creates their task
/// instances, queues the tasks with no upstream, and wakes workers. Returns runs started.
pub async fn start_queued_runs(pool: &PgPool, specs: &SpecCache) -> anyhow::Result<usize> {
    let dag_ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT r.dag_id FROM dag_runs r JOIN dags d ON d.dag_id = r.dag_id
         WHERE r.state = 'queued' AND NOT d.is_paused",
    )
    .fetch_all(pool)
    .await?;
    let mut started = 0;
    for dag_id in dag_ids {
        let mut tx = pool.begin().await?;
        let Some(max_active): Option<i32> = sqlx::query_scalar(
            "SELECT max_active_runs FROM dags WHERE dag_id = $1 AND NOT is_paused FOR UPDATE SKIP LOCKED",
        )
        .bind(&dag_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            continue;
        };
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state = 'running'",
        )
        .bind(&dag_id)
        .fetch_one(&mut *tx)
        .await?;
        let free = (max_active as i64 - running).max(0);
        let runs: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, version_id FROM dag_runs WHERE dag_id = $1 AND state = 'queued'
             ORDER BY logical_date, id LIMIT $2",
        )
        .bind(&dag_id)
        .bind(free)
        .fetch_all(&mut *tx)
        .await?;
        for (run_pk, version_id) in runs {
            let dag = match specs.get(pool, version_id).await {
                Ok(dag) => dag,
                Err(e) => {
                    let note = format!("updraft could not read DAG version {version_id}: {e:#}");
                    tracing::warn!(dag_id, run_pk, "{note}; failing the run");
                    sqlx::query(
                        "UPDATE dag_runs SET state = 'failed', start_date = now(), end_date = now(), note = $2
                         WHERE id = $1 AND state = 'queued'",
                    )
                    .bind(run_pk)
                    .bind(&note)
                    .execute(&mut *tx)
                    .await?;
                    continue;
                }
            };
            let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
            let max_tries: Vec<i32> = dag.tasks.iter().map(|t| t.retries as i32).collect();
            let totals: Vec<i32> = dag.tasks.iter().map(|t| t.upstream.len() as i32).collect();
            let (pools, slots): (Vec<&str>, Vec<i32>) = dag
                .tasks
                .iter()
                .map(|t| (t.pool_name(), t.pool_slots as i32))
                .unzip();
            let states: Vec<&str> = dag
                .tasks
                .iter()
                .map(|t| {
                    let ready =
                        t.upstream.is_empty() || t.trigger_rule == crate::dag::TriggerRule::Always;
                    if ready {
                        "queued"
                    } else {
                        "none"
                    }
                })
                .collect();
            sqlx::query(
                "INSERT INTO task_instances (run_pk, dag_id, task_id, max_tries, upstream_total, state, queued_at, pool, pool_slots)
                 SELECT $1, $2, t, m, u, s, CASE WHEN s = 'queued' THEN now() END, p, ps
                 FROM UNNEST($3::text[], $4::int[], $5::int[], $6::text[], $7::text[], $8::int[]) AS x(t, m, u, s, p, ps)",
            )
            .bind(run_pk)
            .bind(&dag_id)
            .bind(&ids)
            .bind(&max_tries)
            .bind(&totals)
            .bind(&states)
            .bind(&pools)
            .bind(&slots)
            .execute(&mut *tx)
            .await?;
            let timeout = dag.dagrun_timeout.map(|d| d.pg_interval_micros());
            sqlx::query(
                "UPDATE dag_runs SET state = CASE WHEN $2 = 0 THEN 'success' ELSE 'running' END,
                    start_date = now(), end_date = CASE WHEN $2 = 0 THEN now() END, unfinished_tasks = $2,
                    timeout_at = now() + $3 * interval '1 microsecond'
                 WHERE id = $1 AND state = 'queued'",
            )
            .bind(run_pk)
            .bind(ids.len() as i32)
            .bind(timeout)
            .execute(&mut *tx)
            .await?;
            started += 1;
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WORKER_CHANNEL)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(started)
}

/// Fails runs past their `dagrun_timeout`: unfinished tasks are skipped, running ones failed
/// (their workers lose the lease and cancel at the next heartbeat). Returns runs timed out.
pub async fn enforce_run_timeouts(pool: &PgPool) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    let runs: Vec<i64> = sqlx::query_scalar(
        "UPDATE dag_runs SET state = 'failed', end_date = now(), unfinished_tasks = 0
         WHERE state = 'running' AND timeout_at < now() RETURNING id",
    )
    .fetch_all(&mut *tx)
    .await?;
    if !runs.is_empty() {
        sqlx::query(
            "UPDATE task_instances SET state = CASE WHEN state = 'running' THEN 'failed' ELSE 'skipped' END,
                end_date = now(), lease_owner = NULL, lease_expires_at = NULL
             WHERE run_pk = ANY($1) AND state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry')",
        )
        .bind(&runs)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(runs.len())
}

/// Whether any scheduler has reported in the last 30 seconds.
pub async fn scheduler_alive(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM scheduler_heartbeats WHERE heartbeat_at > now() - interval '30 seconds')",
    )
    .fetch_one(pool)
    .await
}

pub async fn scheduler_heartbeat(pool: &PgPool, id: Uuid, hostname: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO scheduler_heartbeats (id, hostname) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(id)
    .bind(hostname)
    .execute(pool)
    .await?;
    Ok(())
}
