//! The scheduler's statements: plan and create cron runs, start queued runs within
//! `max_active_runs`, enforce `dagrun_timeout`, heartbeat. Each picks only rows that need
//! work (partial indexes), so a tick costs in proportion to state changes.
//!
//! One DAG's bad data never stops the others: each DAG's (and each run's) work is its own
//! transaction, and a failure is recorded on that DAG (`dags.scheduler_error`, shown in the
//! UI) and logged when it first happens or changes, not every pass. Lock order as in
//! [`super::tasks`]: `dags` rows, then `dag_runs` rows by id, then task instances.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::tasks::SpecCache;
use super::WORKER_CHANNEL;
use crate::core::planner::{self, PlannedRun};
use crate::core::{Schedule, TaskState, TriggerRule};
use crate::dag::Dag;

/// Records that a scheduler step failed for one DAG, logging it only when the message is
/// new for that DAG.
async fn record_dag_error(pool: &PgPool, dag_id: &str, step: &str, error: &anyhow::Error) {
    let message = format!("{step}: {error:#}");
    let changed = sqlx::query(
        "UPDATE dags SET scheduler_error = $2, scheduler_error_at = now()
         WHERE dag_id = $1 AND scheduler_error IS DISTINCT FROM $2",
    )
    .bind(dag_id)
    .bind(&message)
    .execute(pool)
    .await;
    match changed {
        Ok(r) if r.rows_affected() == 0 => {} // already recorded and logged
        Ok(_) => {
            tracing::warn!(dag_id, error = %message, "scheduling this DAG failed; other DAGs go on")
        }
        Err(e) => {
            tracing::warn!(dag_id, error = %message, record_error = %e, "scheduling this DAG failed")
        }
    }
}

/// Clears a DAG's recorded scheduler error once its step works again.
async fn clear_dag_error(pool: &PgPool, dag_id: &str) -> sqlx::Result<()> {
    let cleared = sqlx::query(
        "UPDATE dags SET scheduler_error = NULL, scheduler_error_at = NULL
         WHERE dag_id = $1 AND scheduler_error IS NOT NULL",
    )
    .bind(dag_id)
    .execute(pool)
    .await?;
    if cleared.rows_affected() > 0 {
        tracing::info!(dag_id, "scheduling this DAG works again");
    }
    Ok(())
}

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
        match plan_one(pool, specs, &dag_id, version_id, data_intervals).await {
            Ok(()) => {
                clear_dag_error(pool, &dag_id).await?;
                planned += 1;
            }
            Err(e) => {
                record_dag_error(pool, &dag_id, "planning the next run", &e).await;
                // Parked until its file changes (which resets the plan), so it is not
                // retried every pass.
                store_next(pool, &dag_id, version_id, None).await?;
            }
        }
    }
    Ok(planned)
}

async fn plan_one(
    pool: &PgPool,
    specs: &SpecCache,
    dag_id: &str,
    version_id: i64,
    data_intervals: bool,
) -> anyhow::Result<()> {
    let dag = specs.get(pool, version_id).await?;
    let last: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(logical_date) FROM dag_runs WHERE dag_id = $1 AND run_type = 'scheduled'",
    )
    .bind(dag_id)
    .fetch_one(pool)
    .await?;
    let now = db_now(pool).await?;
    let next = planner::next_run(&dag.timetable(), last, now, data_intervals);
    store_next(pool, dag_id, version_id, next).await?;
    Ok(())
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
/// `max_active_runs` runs queued or running (as Airflow does), at most [`CREATE_PER_PASS`].
/// The DAG row is locked with SKIP LOCKED so several schedulers share the work, and the
/// unique (dag_id, logical_date) index makes a repeat after a crash a no-op. A DAG whose run
/// cannot be created is passed over for the rest of the pass. Returns runs created.
pub async fn create_due_runs(
    pool: &PgPool,
    specs: &SpecCache,
    data_intervals: bool,
) -> anyhow::Result<usize> {
    let mut created = 0;
    let mut failed: Vec<String> = Vec::new();
    while created < CREATE_PER_PASS {
        let mut tx = pool.begin().await?;
        let due: Option<DueDag> = sqlx::query_as(
            "SELECT dag_id, version_id, next_logical_date, next_interval_start, next_interval_end FROM dags
             WHERE is_active AND NOT is_paused AND next_run_after <= now() AND next_logical_date IS NOT NULL
               AND NOT (dag_id = ANY($1))
               AND (SELECT count(*) FROM dag_runs r WHERE r.dag_id = dags.dag_id AND r.state IN ('queued', 'running')
                    AND r.run_type <> 'backfill')
                   < max_active_runs
             ORDER BY next_run_after LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(&failed)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(due) = due else {
            break;
        };
        let dag_id = due.dag_id.clone();
        match create_one(&mut tx, specs, pool, &due, data_intervals).await {
            Ok(n) => {
                tx.commit().await?;
                created += n;
            }
            Err(e) => {
                drop(tx); // rolled back
                record_dag_error(pool, &dag_id, "creating a scheduled run", &e).await;
                failed.push(dag_id);
            }
        }
    }
    Ok(created)
}

async fn create_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    specs: &SpecCache,
    pool: &PgPool,
    due: &DueDag,
    data_intervals: bool,
) -> anyhow::Result<usize> {
    let dag = specs.get(pool, due.version_id).await?;
    let continuous = dag.schedule == Schedule::Continuous;
    let (mut logical, mut start, mut end) = (
        due.next_logical_date,
        due.next_interval_start,
        due.next_interval_end,
    );
    if continuous {
        // Planned when the previous run was created; it starts now that that one has ended.
        logical = planner::continuous_logical_date(logical, db_now(&mut **tx).await?);
        (start, end) = (logical, logical);
    }
    // Continuous runs may follow each other within a second: their ids keep the microseconds.
    let precision = if continuous {
        chrono::SecondsFormat::Micros
    } else {
        chrono::SecondsFormat::Secs
    };
    let run_id = format!("scheduled__{}", logical.to_rfc3339_opts(precision, false));
    let inserted = sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                               run_after, state, version_id)
         VALUES ($1, $2, 'scheduled', $3, $4, $5, now(), 'queued', $6)
         ON CONFLICT (dag_id, logical_date) WHERE run_type = 'scheduled' DO NOTHING",
    )
    .bind(&due.dag_id)
    .bind(&run_id)
    .bind(logical)
    .bind(start)
    .bind(end)
    .bind(due.version_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let now = db_now(&mut **tx).await?;
    let next = planner::next_run(&dag.timetable(), Some(logical), now, data_intervals);
    store_next(&mut **tx, &due.dag_id, due.version_id, next).await?;
    Ok(inserted as usize)
}

/// Starts queued runs of unpaused DAGs within `max_active_runs`: creates their task
/// instances, queues the tasks with no upstream, and wakes workers. Each DAG is its own
/// transaction; a run that cannot start is failed with the reason as its note (recorded on
/// the DAG too), and the other runs and DAGs go on. Returns runs started.
pub async fn start_queued_runs(pool: &PgPool, specs: &SpecCache) -> anyhow::Result<usize> {
    let dag_ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT r.dag_id FROM dag_runs r JOIN dags d ON d.dag_id = r.dag_id
         WHERE r.state = 'queued' AND NOT d.is_paused",
    )
    .fetch_all(pool)
    .await?;
    let mut started = 0;
    for dag_id in dag_ids {
        match start_for_dag(pool, specs, &dag_id).await {
            Ok(n) => started += n,
            Err(StartError::Run { run_pk, error }) => {
                record_dag_error(pool, &dag_id, "starting a run", &error).await;
                fail_unstartable(pool, run_pk, &format!("{error:#}")).await?;
            }
            Err(StartError::Dag(error)) => {
                record_dag_error(pool, &dag_id, "starting runs", &error).await
            }
        }
    }
    Ok(started)
}

enum StartError {
    /// This run cannot start (its version cannot be read, its data is out of range).
    Run {
        run_pk: i64,
        error: anyhow::Error,
    },
    Dag(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for StartError {
    fn from(e: E) -> Self {
        StartError::Dag(e.into())
    }
}

async fn start_for_dag(
    pool: &PgPool,
    specs: &SpecCache,
    dag_id: &str,
) -> Result<usize, StartError> {
    let mut tx = pool.begin().await?;
    let Some(max_active): Option<i32> = sqlx::query_scalar(
        "SELECT max_active_runs FROM dags WHERE dag_id = $1 AND NOT is_paused FOR UPDATE SKIP LOCKED",
    )
    .bind(dag_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(0);
    };
    // Backfill runs count against their backfill's max_active_runs (which only creates that
    // many), not the DAG's, as in Airflow 3.
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state = 'running' AND run_type <> 'backfill'",
    )
    .bind(dag_id)
    .fetch_one(&mut *tx)
    .await?;
    let free = (i64::from(max_active) - running).max(0);
    let runs: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, version_id FROM dag_runs WHERE id IN (
            (SELECT id FROM dag_runs WHERE dag_id = $1 AND state = 'queued' AND run_type <> 'backfill'
             ORDER BY logical_date, id LIMIT $2)
            UNION ALL
            (SELECT id FROM dag_runs WHERE dag_id = $1 AND state = 'queued' AND run_type = 'backfill'))
         ORDER BY id FOR UPDATE",
    )
    .bind(dag_id)
    .bind(free)
    .fetch_all(&mut *tx)
    .await?;
    let mut started = 0;
    for (run_pk, version_id) in runs {
        let dag = specs
            .get(pool, version_id)
            .await
            .map_err(|e| StartError::Run {
                run_pk,
                error: e.context(format!("could not read DAG version {version_id}")),
            })?;
        start_run(&mut tx, run_pk, dag_id, &dag)
            .await
            .map_err(|e| StartError::Run {
                run_pk,
                error: e.into(),
            })?;
        started += 1;
    }
    if started > 0 {
        super::notify(&mut *tx, WORKER_CHANNEL).await?;
    }
    tx.commit().await?;
    Ok(started)
}

/// Creates a run's task instances (the ready ones queued) and marks it running.
async fn start_run(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    run_pk: i64,
    dag_id: &str,
    dag: &Dag,
) -> sqlx::Result<()> {
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    let max_tries: Vec<i32> = dag
        .tasks
        .iter()
        .map(|t| i32::try_from(t.retries).unwrap_or(i32::MAX))
        .collect();
    let totals: Vec<i32> = dag.tasks.iter().map(|t| t.upstream.len() as i32).collect();
    let (pools, slots): (Vec<&str>, Vec<i32>) = dag
        .tasks
        .iter()
        .map(|t| {
            (
                t.pool_name(),
                i32::try_from(t.pool_slots).unwrap_or(i32::MAX),
            )
        })
        .unzip();
    let states: Vec<TaskState> = dag
        .tasks
        .iter()
        .map(|t| {
            if t.upstream.is_empty() || t.trigger_rule == TriggerRule::Always {
                TaskState::Queued
            } else {
                TaskState::None
            }
        })
        .collect();
    let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let subprocess: Vec<bool> = dag
        .tasks
        .iter()
        .map(|t| t.operator.runs_processes())
        .collect();
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, task_id, max_tries, upstream_total, state, queued_at,
                                     not_before, pool, pool_slots, subprocess)
         SELECT $1, $2, t, m, u, s, CASE WHEN s = 'queued' THEN now() END,
                CASE WHEN s = 'queued' THEN now() ELSE '-infinity' END, p, ps, sp
         FROM UNNEST($3::text[], $4::int[], $5::int[], $6::text[], $7::text[], $8::int[], $9::bool[])
              AS x(t, m, u, s, p, ps, sp)",
    )
    .bind(run_pk)
    .bind(dag_id)
    .bind(&ids)
    .bind(&max_tries)
    .bind(&totals)
    .bind(&states)
    .bind(&pools)
    .bind(&slots)
    .bind(&subprocess)
    .execute(&mut **tx)
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Fails a queued run that cannot start, with the reason as its note.
async fn fail_unstartable(pool: &PgPool, run_pk: i64, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE dag_runs SET state = 'failed', start_date = now(), end_date = now(),
                note = 'updraft could not start this run: ' || $2
         WHERE id = $1 AND state = 'queued'",
    )
    .bind(run_pk)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends runs past their `dagrun_timeout` as Airflow does: the run fails, and every task
/// instance not yet finished is skipped, running ones included (their workers see the try
/// taken away at the next heartbeat and stop it). Runs are locked in id order, then their
/// task instances. Returns runs timed out.
pub async fn enforce_run_timeouts(pool: &PgPool) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    let runs: Vec<i64> = sqlx::query_scalar(
        "UPDATE dag_runs SET state = 'failed', end_date = now(), unfinished_tasks = 0,
                note = coalesce(note, 'The run exceeded its dagrun_timeout.')
         WHERE id IN (SELECT id FROM dag_runs WHERE state = 'running' AND timeout_at < now()
                      ORDER BY id FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .fetch_all(&mut *tx)
    .await?;
    if !runs.is_empty() {
        sqlx::query(
            "UPDATE task_instances SET state = 'skipped', end_date = now()
             WHERE run_pk = ANY($1) AND state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry')",
        )
        .bind(&runs)
        .execute(&mut *tx)
        .await?;
        super::notify(&mut *tx, super::SCHEDULER_CHANNEL).await?;
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
