//! The scheduler's backfill step: for each backfill still going and not paused, start the
//! next dates while fewer than `max_active_runs` of its runs are queued or running, and mark
//! it completed when nothing is left. A backfill's row is locked (`SKIP LOCKED`, so several
//! schedulers share the work) before any run it creates or clears.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::core::ReprocessBehavior;
use crate::db::operate::{self, ClearRequest, RunFilter, Tasks};

#[derive(sqlx::FromRow)]
struct Pending {
    sort_ordinal: i32,
    logical_date: DateTime<Utc>,
    interval_start: DateTime<Utc>,
    interval_end: DateTime<Utc>,
    run_pk: Option<i64>,
}

/// One pass over the backfills still going. Returns the runs started (created or cleared).
pub async fn advance(pool: &PgPool) -> anyhow::Result<usize> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM backfills WHERE completed_at IS NULL AND NOT is_paused ORDER BY id LIMIT 100",
    )
    .fetch_all(pool)
    .await?;
    let mut started = 0;
    for id in ids {
        started += advance_one(pool, id).await?;
    }
    Ok(started)
}

async fn advance_one(pool: &PgPool, id: i64) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let b: Option<(String, i32, serde_json::Value, ReprocessBehavior)> = sqlx::query_as(
        "SELECT dag_id, max_active_runs, dag_run_conf, reprocess_behavior FROM backfills
         WHERE id = $1 AND completed_at IS NULL AND NOT is_paused FOR UPDATE SKIP LOCKED",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((dag_id, max_active, conf, behavior)) = b else {
        return Ok(0);
    };
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM backfill_runs x JOIN dag_runs r ON r.id = x.run_pk
         WHERE x.backfill_id = $1 AND x.state = 'started' AND r.state IN ('queued', 'running')",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let room = (i64::from(max_active) - active).max(0);
    let next: Vec<Pending> = sqlx::query_as(
        "SELECT sort_ordinal, logical_date, interval_start, interval_end, run_pk FROM backfill_runs
         WHERE backfill_id = $1 AND state = 'pending' ORDER BY sort_ordinal LIMIT $2",
    )
    .bind(id)
    .bind(room)
    .fetch_all(&mut *tx)
    .await?;
    if next.is_empty() {
        if active == 0 {
            sqlx::query(
                "UPDATE backfills SET completed_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tracing::info!(backfill = id, dag_id, "backfill completed");
        }
        tx.commit().await?;
        return Ok(0);
    }
    let mut started = 0;
    for p in &next {
        let run_pk = match p.run_pk {
            Some(pk) => {
                // An existing run, run again (its own transaction, after this backfill's
                // row and before the run's: the lock order).
                let run_id: Option<String> =
                    sqlx::query_scalar("SELECT run_id FROM dag_runs WHERE id = $1")
                        .bind(pk)
                        .fetch_optional(pool)
                        .await?;
                if let Some(run_id) = run_id {
                    let req = ClearRequest {
                        dag_id: dag_id.clone(),
                        runs: RunFilter {
                            run_id: Some(run_id),
                            ..Default::default()
                        },
                        tasks: Tasks::All,
                        include_upstream: false,
                        include_downstream: false,
                        only_failed: behavior == ReprocessBehavior::Failed,
                        only_running: false,
                        dry_run: false,
                    };
                    operate::clear(pool, &req).await?;
                    sqlx::query("UPDATE dag_runs SET backfill_id = $2 WHERE id = $1")
                        .bind(pk)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(pk)
            }
            None => create_run(&mut tx, id, &dag_id, &conf, p).await?,
        };
        sqlx::query(
            "UPDATE backfill_runs SET state = 'started', run_pk = $3,
                    exception_reason = CASE WHEN $3::bigint IS NULL THEN 'already exists' END
             WHERE backfill_id = $1 AND sort_ordinal = $2",
        )
        .bind(id)
        .bind(p.sort_ordinal)
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
        started += usize::from(run_pk.is_some());
    }
    sqlx::query("UPDATE backfills SET updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(started)
}

/// A queued run of type `backfill` for one date (the scheduler starts it). `None` if a run
/// with its id appeared since the backfill was planned.
async fn create_run(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    backfill_id: i64,
    dag_id: &str,
    conf: &serde_json::Value,
    p: &Pending,
) -> sqlx::Result<Option<i64>> {
    let run_id = format!(
        "backfill__{}",
        p.logical_date
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    );
    sqlx::query_scalar(
        "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                               state, conf, version_id, backfill_id)
         SELECT dag_id, $2, 'backfill', $3, $4, $5, 'queued', $6, version_id, $7 FROM dags WHERE dag_id = $1
         ON CONFLICT (dag_id, run_id) DO NOTHING
         RETURNING id",
    )
    .bind(dag_id)
    .bind(&run_id)
    .bind(p.logical_date)
    .bind(p.interval_start)
    .bind(p.interval_end)
    .bind(conf)
    .bind(backfill_id)
    .fetch_optional(&mut **tx)
    .await
}
