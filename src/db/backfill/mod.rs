//! Backfills (Airflow 3): a logical-date range of a DAG run as runs of type `backfill`, at
//! most `max_active_runs` at a time, oldest first (or newest first with `run_backwards`).
//! Creating one stores a row per date with its plan ([`crate::core::backfill::plan_date`]);
//! the scheduler's [`advance`] starts the next dates as earlier runs finish and completes the
//! backfill when none is left. Pause stops new runs starting; cancel also fails the runs not
//! started yet.
//!
//! Lock order: a `backfills` row comes before any `dag_runs` row (advancing holds its
//! backfill's row while it creates and clears runs; cancel the same).

mod advance;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub use advance::advance;

use crate::core::backfill::{plan_date, DatePlan};
use crate::core::planner::{runs_between, PlannedRun};
use crate::core::{ReprocessBehavior, RunState};
use crate::db::tasks::SpecCache;

/// A backfill's range holds at most this many runs.
pub const MAX_RUNS: usize = 10_000;

/// What a new backfill asks for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub dag_id: String,
    pub from_date: DateTime<Utc>,
    pub to_date: DateTime<Utc>,
    pub run_backwards: bool,
    pub dag_run_conf: serde_json::Value,
    pub reprocess_behavior: ReprocessBehavior,
    pub max_active_runs: i32,
    pub user: Option<String>,
}

/// Why a backfill cannot be created; each is the caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("DAG `{0}` not found")]
    DagNotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("DAG `{0}` already has a backfill running; cancel it or wait for it to finish")]
    AlreadyRunning(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One date of a backfill with its plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDate {
    pub run: PlannedRun,
    pub plan: DatePlan,
}

/// A stored backfill, with its progress.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct BackfillRow {
    pub id: i64,
    pub dag_id: String,
    pub from_date: DateTime<Utc>,
    pub to_date: DateTime<Utc>,
    pub dag_run_conf: serde_json::Value,
    pub reprocess_behavior: ReprocessBehavior,
    pub max_active_runs: i32,
    pub run_backwards: bool,
    pub is_paused: bool,
    pub triggering_user_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Dates that get a run, and how many of those runs have ended.
    pub total_runs: i64,
    pub finished_runs: i64,
    pub failed_runs: i64,
    pub skipped_dates: i64,
}

const COLUMNS: &str = "b.id, b.dag_id, b.from_date, b.to_date, b.dag_run_conf, b.reprocess_behavior,
    b.max_active_runs, b.run_backwards, b.is_paused, b.triggering_user_name, b.created_at, b.updated_at,
    b.completed_at,
    (SELECT count(*) FROM backfill_runs x WHERE x.backfill_id = b.id AND x.state IN ('pending', 'started')) AS total_runs,
    (SELECT count(*) FROM backfill_runs x JOIN dag_runs r ON r.id = x.run_pk
      WHERE x.backfill_id = b.id AND x.state = 'started' AND r.state IN ('success', 'failed')) AS finished_runs,
    (SELECT count(*) FROM backfill_runs x JOIN dag_runs r ON r.id = x.run_pk
      WHERE x.backfill_id = b.id AND x.state = 'started' AND r.state = 'failed') AS failed_runs,
    (SELECT count(*) FROM backfill_runs x WHERE x.backfill_id = b.id AND x.state = 'skipped') AS skipped_dates";

/// The dates of a backfill and what happens to each, in the order they run.
pub async fn plan(
    pool: &PgPool,
    req: &BackfillRequest,
    data_intervals: bool,
) -> Result<Vec<PlannedDate>, BackfillError> {
    if req.from_date > req.to_date {
        return Err(BackfillError::Invalid(
            "from_date must be before to_date".into(),
        ));
    }
    if req.max_active_runs < 1 {
        return Err(BackfillError::Invalid(
            "max_active_runs must be at least 1".into(),
        ));
    }
    if !req.dag_run_conf.is_object() {
        return Err(BackfillError::Invalid(
            "dag_run_conf must be a JSON object".into(),
        ));
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version_id FROM dags WHERE dag_id = $1 AND is_active")
            .bind(&req.dag_id)
            .fetch_optional(pool)
            .await?;
    let version = version.ok_or_else(|| BackfillError::DagNotFound(req.dag_id.clone()))?;
    let dag = SpecCache::default().get(pool, version).await?;
    let runs = runs_between(
        &dag.timetable(),
        req.from_date,
        req.to_date,
        data_intervals,
        MAX_RUNS,
    )
    .map_err(BackfillError::Invalid)?;
    let dates: Vec<DateTime<Utc>> = runs.iter().map(|r| r.logical_date).collect();
    let existing: Vec<(DateTime<Utc>, i64, RunState)> = sqlx::query_as(
        "SELECT DISTINCT ON (logical_date) logical_date, id, state FROM dag_runs
         WHERE dag_id = $1 AND logical_date = ANY($2) ORDER BY logical_date, id DESC",
    )
    .bind(&req.dag_id)
    .bind(&dates)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<PlannedDate> = runs
        .into_iter()
        .map(|run| {
            let found = existing
                .iter()
                .find(|(d, _, _)| *d == run.logical_date)
                .map(|(_, id, s)| (*id, *s));
            PlannedDate {
                run,
                plan: plan_date(found, req.reprocess_behavior),
            }
        })
        .collect();
    if req.run_backwards {
        out.reverse();
    }
    Ok(out)
}

/// Creates a backfill (one active per DAG, as Airflow) and wakes the schedulers.
pub async fn create(
    pool: &PgPool,
    req: &BackfillRequest,
    data_intervals: bool,
) -> Result<BackfillRow, BackfillError> {
    let dates = plan(pool, req, data_intervals).await?;
    if !dates.iter().any(|d| d.plan.runs()) {
        return Err(BackfillError::Invalid(
            "no run to create in this range: every date has a run already (see reprocess_behavior) or the schedule has no tick in it".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    // One creation per DAG at a time, so the check below holds.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('updraft backfill ' || $1))")
        .bind(&req.dag_id)
        .execute(&mut *tx)
        .await?;
    let active: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM backfills WHERE dag_id = $1 AND completed_at IS NULL)",
    )
    .bind(&req.dag_id)
    .fetch_one(&mut *tx)
    .await?;
    if active {
        return Err(BackfillError::AlreadyRunning(req.dag_id.clone()));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO backfills (dag_id, from_date, to_date, dag_run_conf, reprocess_behavior,
                                max_active_runs, run_backwards, triggering_user_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(&req.dag_id)
    .bind(req.from_date)
    .bind(req.to_date)
    .bind(&req.dag_run_conf)
    .bind(req.reprocess_behavior)
    .bind(req.max_active_runs)
    .bind(req.run_backwards)
    .bind(&req.user)
    .fetch_one(&mut *tx)
    .await?;
    let ordinals: Vec<i32> = (0..dates.len() as i32).collect();
    let logical: Vec<DateTime<Utc>> = dates.iter().map(|d| d.run.logical_date).collect();
    let starts: Vec<DateTime<Utc>> = dates.iter().map(|d| d.run.interval_start).collect();
    let ends: Vec<DateTime<Utc>> = dates.iter().map(|d| d.run.interval_end).collect();
    let run_pks: Vec<Option<i64>> = dates
        .iter()
        .map(|d| match d.plan {
            DatePlan::Reprocess(pk) => Some(pk),
            _ => None,
        })
        .collect();
    let states: Vec<&str> = dates
        .iter()
        .map(|d| if d.plan.runs() { "pending" } else { "skipped" })
        .collect();
    let reasons: Vec<Option<&str>> = dates
        .iter()
        .map(|d| match d.plan {
            DatePlan::Skip(why) => Some(why),
            _ => None,
        })
        .collect();
    sqlx::query(
        "INSERT INTO backfill_runs (backfill_id, sort_ordinal, logical_date, interval_start, interval_end,
                                    run_pk, state, exception_reason)
         SELECT $1, o, d, s, e, pk, st, why
         FROM UNNEST($2::int[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::bigint[],
                     $7::text[], $8::text[]) AS x(o, d, s, e, pk, st, why)",
    )
    .bind(id)
    .bind(&ordinals)
    .bind(&logical)
    .bind(&starts)
    .bind(&ends)
    .bind(&run_pks)
    .bind(&states)
    .bind(&reasons)
    .execute(&mut *tx)
    .await?;
    crate::db::notify(&mut *tx, crate::db::SCHEDULER_CHANNEL).await?;
    tx.commit().await?;
    Ok(get(pool, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("backfill {id} vanished"))?)
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<BackfillRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backfills b WHERE b.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Backfills, newest first (of one DAG, or all), one page, and how many there are.
pub async fn list(
    pool: &PgPool,
    dag_id: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<BackfillRow>, i64)> {
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM backfills WHERE ($1::text IS NULL OR dag_id = $1)",
    )
    .bind(dag_id)
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backfills b WHERE ($1::text IS NULL OR b.dag_id = $1)
         ORDER BY b.id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(dag_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok((rows, total))
}

/// How a backfill is steered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    Pause,
    Unpause,
    /// No more runs start; the runs not started yet are dropped, queued ones fail.
    Cancel,
}

/// Pauses, unpauses or cancels a backfill still going. `None`: no such backfill; `Some(false)`:
/// it has completed already.
pub async fn steer(pool: &PgPool, id: i64, how: Steer) -> sqlx::Result<Option<bool>> {
    let mut tx = pool.begin().await?;
    let found: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT completed_at FROM backfills WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(completed) = found else {
        return Ok(None);
    };
    if completed.is_some() {
        return Ok(Some(false));
    }
    match how {
        Steer::Pause | Steer::Unpause => {
            sqlx::query("UPDATE backfills SET is_paused = $2, updated_at = now() WHERE id = $1")
                .bind(id)
                .bind(how == Steer::Pause)
                .execute(&mut *tx)
                .await?;
        }
        Steer::Cancel => {
            sqlx::query(
                "UPDATE backfill_runs SET state = 'cancelled' WHERE backfill_id = $1 AND state = 'pending'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE dag_runs SET state = 'failed', end_date = now(),
                        note = coalesce(note, 'The backfill was cancelled before this run started.')
                 WHERE id IN (SELECT id FROM dag_runs WHERE backfill_id = $1 AND state = 'queued'
                              ORDER BY id FOR UPDATE)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE backfills SET completed_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    if how != Steer::Pause {
        crate::db::notify_scheduler(pool).await?;
    }
    Ok(Some(true))
}
