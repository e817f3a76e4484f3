//! The task queue: claim under a lease, finish (fenced by the lease) while queueing the
//! downstream tasks that became ready in the same transaction, heartbeats, and the reaper.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::WORKER_CHANNEL;
use crate::core::trigger::{decide, Decision, UpstreamCounts};
use crate::core::{Duration, LogLine};
use crate::dag::Dag;

/// A task instance a worker now holds the lease on, with what it needs to run it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub ti_id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub max_tries: i32,
    pub version_id: i64,
    pub run_id: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: serde_json::Value,
}

/// Claims up to `limit` queued tasks whose time has come, in one statement: the rows are
/// locked only for the statement (`FOR UPDATE SKIP LOCKED`), then held by the lease.
///
/// `max_active_tasks` counts running tasks per DAG run, as in Airflow 3. Candidates of runs
/// already at the limit are passed over in the scan; the rest are ranked within their run
/// so that one claim never takes more than a run has room for. Two workers claiming in the
/// same instant can still overshoot by what they claim together (documented in the README).
/// Four times `limit` candidates are locked so that a run at its limit does not crowd out
/// other runs' tasks.
pub async fn claim(
    pool: &PgPool,
    worker: Uuid,
    hostname: &str,
    limit: i64,
    lease_ttl: Duration,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as::<_, Claimed>(
        "WITH cand AS (
             SELECT q.id, q.run_pk, q.dag_id, q.not_before FROM task_instances q
             WHERE q.state = 'queued' AND q.not_before <= now()
               AND (SELECT count(*) FROM task_instances a WHERE a.run_pk = q.run_pk AND a.state = 'running')
                   < (SELECT d.max_active_tasks FROM dags d WHERE d.dag_id = q.dag_id)
             ORDER BY q.not_before, q.id
             FOR UPDATE SKIP LOCKED
             LIMIT $2 * 4
         ), ranked AS (
             SELECT c.id, c.not_before,
                    row_number() OVER (PARTITION BY c.run_pk ORDER BY c.not_before, c.id) AS rn,
                    (SELECT d.max_active_tasks FROM dags d WHERE d.dag_id = c.dag_id)
                      - (SELECT count(*) FROM task_instances a WHERE a.run_pk = c.run_pk AND a.state = 'running') AS room
             FROM cand c
         ), chosen AS (
             SELECT id FROM ranked WHERE rn <= room ORDER BY not_before, id LIMIT $2
         )
         UPDATE task_instances t
         SET state = 'running', try_number = t.try_number + 1, lease_owner = $1,
             lease_expires_at = now() + $3 * interval '1 microsecond', heartbeat_at = now(),
             start_date = now(), end_date = NULL, hostname = $4
         FROM dag_runs r
         WHERE r.id = t.run_pk AND t.id IN (SELECT id FROM chosen)
         RETURNING t.id AS ti_id, t.run_pk, t.dag_id, t.task_id, t.try_number, t.max_tries, r.version_id,
                   r.run_id, r.logical_date, r.data_interval_start, r.data_interval_end, r.conf",
    )
    .bind(worker)
    .bind(limit)
    .bind(lease_ttl.pg_interval_micros())
    .bind(hostname)
    .fetch_all(pool)
    .await
}

/// Who may record a try's outcome.
#[derive(Debug, Clone, Copy)]
pub enum Fence {
    /// The worker holding the lease for this try.
    Lease { owner: Uuid, try_number: i32 },
    /// The reaper, for a lease that has expired.
    Expired,
}

/// A try's outcome.
#[derive(Debug, Clone)]
pub enum Finish {
    Success {
        xcom: Vec<(String, serde_json::Value)>,
    },
    Skipped,
    /// Failed; `retry_after` is set when a try is left, and the task waits that long.
    Failed {
        retry_after: Option<Duration>,
    },
    /// Shutdown: hand the task back untried (the try is not counted).
    GiveBack,
}

/// What a finish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Recorded {
        queued: usize,
        run_ended: Option<String>,
    },
    /// The fence did not hold: the lease was lost (expired and reaped, or the run timed out).
    LeaseLost,
}

fn is_retryable(e: &sqlx::Error) -> bool {
    // 40P01 deadlock_detected, 40001 serialization_failure.
    matches!(
        e.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("40P01") | Some("40001")
    )
}

/// One try's outcome to record.
#[derive(Debug, Clone)]
pub struct FinishItem {
    pub ti_id: i64,
    pub fence: Fence,
    pub outcome: Finish,
    pub dag: Arc<Dag>,
    /// The try's last log lines, stored in the same transaction (none from the reaper).
    pub tail: Vec<LogLine>,
}

/// Records one try's outcome; see [`finish_many`].
pub async fn finish(pool: &PgPool, item: FinishItem) -> sqlx::Result<Finished> {
    let mut results = finish_many(pool, std::slice::from_ref(&item)).await?;
    Ok(results.pop().unwrap_or(Finished::LeaseLost))
}

/// Records tries' outcomes in ONE transaction: for each, the fenced state change, its XComs
/// and last log lines, then its downstream tasks are decided under their trigger rules,
/// ready ones queued, skips and upstream failures cascaded, and the run ended when nothing
/// is left. Workers batch the outcomes that arrive together, so a burst of short tasks
/// (a fan-out) shares one commit instead of serializing on the join task's row lock.
/// Deadlocks between concurrent batches are retried. NOTIFY is delivered at commit.
pub async fn finish_many(pool: &PgPool, items: &[FinishItem]) -> sqlx::Result<Vec<Finished>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = async {
            let mut tx = pool.begin().await?;
            let mut results = Vec::with_capacity(items.len());
            let mut queued_any = false;
            for item in items {
                let r = finish_in(&mut tx, item).await?;
                queued_any |= matches!(r, Finished::Recorded { queued, .. } if queued > 0);
                results.push(r);
            }
            if queued_any {
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(WORKER_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(results)
        }
        .await;
        match result {
            Err(e) if attempt < 10 && is_retryable(&e) => continue,
            other => return other,
        }
    }
}

async fn finish_in(
    tx: &mut Transaction<'_, Postgres>,
    item: &FinishItem,
) -> sqlx::Result<Finished> {
    let (ti_id, fence, outcome, dag) = (item.ti_id, item.fence, &item.outcome, &*item.dag);
    let (new_state, delay) = match outcome {
        Finish::Success { .. } => ("success", None),
        Finish::Skipped => ("skipped", None),
        Finish::Failed {
            retry_after: Some(d),
        } => ("up_for_retry", Some(*d)),
        Finish::Failed { retry_after: None } => ("failed", None),
        Finish::GiveBack => ("queued", None),
    };
    let (owner, try_number, expired) = match fence {
        Fence::Lease { owner, try_number } => (Some(owner), try_number, false),
        Fence::Expired => (None, 0, true),
    };
    let row: Option<(i64, String)> = sqlx::query_as(
        "UPDATE task_instances SET
            state = $2,
            end_date = CASE WHEN $2 = 'queued' THEN NULL ELSE now() END,
            start_date = CASE WHEN $2 = 'queued' THEN NULL ELSE start_date END,
            try_number = CASE WHEN $2 = 'queued' THEN try_number - 1 ELSE try_number END,
            queued_at = CASE WHEN $2 = 'queued' THEN now() ELSE queued_at END,
            lease_owner = NULL, lease_expires_at = NULL,
            not_before = CASE WHEN $2 = 'up_for_retry' THEN now() + $3 * interval '1 microsecond' ELSE not_before END
         WHERE id = $1 AND state = 'running'
           AND (($6 AND lease_expires_at < now()) OR (NOT $6 AND lease_owner = $4 AND try_number = $5))
         RETURNING run_pk, task_id",
    )
    .bind(ti_id)
    .bind(new_state)
    .bind(delay.map(Duration::pg_interval_micros).unwrap_or(0))
    .bind(owner)
    .bind(try_number)
    .bind(expired)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((run_pk, task_id)) = row else {
        return Ok(Finished::LeaseLost);
    };
    super::logs::append_in(tx, ti_id, try_number, &item.tail).await?;
    if let Finish::Success { xcom } = outcome {
        if try_number > 1 {
            // XComs of an earlier, failed try of this task.
            sqlx::query("DELETE FROM xcom WHERE run_pk = $1 AND task_id = $2")
                .bind(run_pk)
                .bind(&task_id)
                .execute(&mut **tx)
                .await?;
        }
        if !xcom.is_empty() {
            let keys: Vec<&str> = xcom.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<&serde_json::Value> = xcom.iter().map(|(_, v)| v).collect();
            sqlx::query(
                "INSERT INTO xcom (run_pk, task_id, key, value)
                 SELECT $1, $2, k, v FROM UNNEST($3::text[], $4::jsonb[]) AS x(k, v)
                 ON CONFLICT (run_pk, task_id, key) DO UPDATE SET value = EXCLUDED.value, created_at = now()",
            )
            .bind(run_pk)
            .bind(&task_id)
            .bind(&keys)
            .bind(&values)
            .execute(&mut **tx)
            .await?;
        }
    }
    match new_state {
        "success" | "skipped" | "failed" => {
            propagate(tx, run_pk, dag, vec![(task_id, new_state)]).await
        }
        _ => Ok(Finished::Recorded {
            queued: usize::from(new_state == "queued"),
            run_ended: None,
        }),
    }
}

#[derive(sqlx::FromRow)]
struct CounterRow {
    id: i64,
    task_id: String,
    state: String,
    upstream_total: i32,
    up_success: i32,
    up_failed: i32,
    up_skipped: i32,
    up_upstream_failed: i32,
}

/// Applies terminal states to their downstream counters, cascading decided skips and upstream
/// failures, then updates the run. Rows are locked in task_id order so that concurrent
/// finishes sharing downstreams cannot deadlock on each other.
async fn propagate(
    tx: &mut Transaction<'_, Postgres>,
    run_pk: i64,
    dag: &Dag,
    mut work: Vec<(String, &'static str)>,
) -> sqlx::Result<Finished> {
    let mut ended = work.len() as i32;
    let mut queued = 0usize;
    while let Some((task_id, state)) = work.pop() {
        let Some(task) = dag.task(&task_id) else {
            continue;
        };
        if task.downstream.is_empty() {
            continue;
        }
        let downstream: Vec<&str> = task.downstream.iter().map(|t| t.as_str()).collect();
        let rows = sqlx::query_as::<_, CounterRow>(
            "UPDATE task_instances SET
                up_success = up_success + ($3 = 'success')::int,
                up_failed = up_failed + ($3 = 'failed')::int,
                up_skipped = up_skipped + ($3 = 'skipped')::int,
                up_upstream_failed = up_upstream_failed + ($3 = 'upstream_failed')::int
             WHERE id IN (SELECT id FROM task_instances WHERE run_pk = $1 AND task_id = ANY($2)
                          ORDER BY task_id FOR UPDATE)
             RETURNING id, task_id, state, upstream_total, up_success, up_failed, up_skipped, up_upstream_failed",
        )
        .bind(run_pk)
        .bind(&downstream)
        .bind(state)
        .fetch_all(&mut **tx)
        .await?;
        for row in rows.into_iter().filter(|r| r.state == "none") {
            let Some(down) = dag.task(&row.task_id) else {
                continue;
            };
            let counts = UpstreamCounts {
                total: row.upstream_total as u32,
                success: row.up_success as u32,
                failed: row.up_failed as u32,
                skipped: row.up_skipped as u32,
                upstream_failed: row.up_upstream_failed as u32,
            };
            let next = match decide(down.trigger_rule, counts) {
                Decision::Wait => continue,
                Decision::Run => "queued",
                Decision::Skip => "skipped",
                Decision::UpstreamFailed => "upstream_failed",
            };
            let changed = sqlx::query(
                "UPDATE task_instances SET state = $2,
                    queued_at = CASE WHEN $2 = 'queued' THEN now() END,
                    end_date = CASE WHEN $2 = 'queued' THEN NULL ELSE now() END
                 WHERE id = $1 AND state = 'none'",
            )
            .bind(row.id)
            .bind(next)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            if next == "queued" {
                queued += 1;
            } else {
                ended += 1;
                work.push((row.task_id, next));
            }
        }
    }
    let run_ended = end_run_if_done(tx, run_pk, dag, ended).await?;
    Ok(Finished::Recorded { queued, run_ended })
}

/// Counts `ended` tasks off the run; the transaction that brings it to zero decides the run:
/// failed if any leaf failed or is upstream_failed, success otherwise (Airflow's rule).
async fn end_run_if_done(
    tx: &mut Transaction<'_, Postgres>,
    run_pk: i64,
    dag: &Dag,
    ended: i32,
) -> sqlx::Result<Option<String>> {
    let (left, state): (i32, String) = sqlx::query_as(
        "UPDATE dag_runs SET unfinished_tasks = unfinished_tasks - $2 WHERE id = $1 RETURNING unfinished_tasks, state",
    )
    .bind(run_pk)
    .bind(ended)
    .fetch_one(&mut **tx)
    .await?;
    if left > 0 || state != "running" {
        return Ok(None);
    }
    let leaves: Vec<&str> = dag.leaves().map(|t| t.task_id.as_str()).collect();
    let failed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = $1 AND task_id = ANY($2)
                        AND state IN ('failed', 'upstream_failed'))",
    )
    .bind(run_pk)
    .bind(&leaves)
    .fetch_one(&mut **tx)
    .await?;
    let final_state = if failed { "failed" } else { "success" };
    sqlx::query(
        "UPDATE dag_runs SET state = $2, end_date = now() WHERE id = $1 AND state = 'running'",
    )
    .bind(run_pk)
    .bind(final_state)
    .execute(&mut **tx)
    .await?;
    // A slot under max_active_runs is free: let a scheduler start the next queued run.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(super::SCHEDULER_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(Some(final_state.to_string()))
}

/// Renews the leases of the tries this worker is running (`ids`); returns the ones it still
/// holds, so the worker can cancel tries whose lease was taken away (reaped, or the run
/// timed out). Only live tries are renewed: an outcome the worker could not record must not
/// keep its lease alive.
pub async fn heartbeat(
    pool: &PgPool,
    worker: Uuid,
    ids: &[i64],
    lease_ttl: Duration,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "UPDATE task_instances SET lease_expires_at = now() + $2 * interval '1 microsecond', heartbeat_at = now()
         WHERE lease_owner = $1 AND state = 'running' AND id = ANY($3) RETURNING id",
    )
    .bind(worker)
    .bind(lease_ttl.pg_interval_micros())
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// For an expired task whose DAG version cannot be read: fail the task and its run (the
/// rest of the run is skipped), with a note that says why. Nothing else can decide its fate.
pub async fn fail_unreadable(pool: &PgPool, ti_id: i64, note: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let run_pk: Option<i64> = sqlx::query_scalar(
        "UPDATE task_instances SET state = 'failed', end_date = now(), lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND state = 'running' AND lease_expires_at < now() RETURNING run_pk",
    )
    .bind(ti_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run_pk) = run_pk {
        sqlx::query(
            "UPDATE task_instances SET state = 'skipped', end_date = now()
             WHERE run_pk = $1 AND state IN ('none', 'scheduled', 'queued', 'up_for_retry')",
        )
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE dag_runs SET state = 'failed', end_date = now(), unfinished_tasks = 0, note = $2
             WHERE id = $1 AND state = 'running'",
        )
        .bind(run_pk)
        .bind(note)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Expires a try's lease at once (fenced by owner and try), so the reaper retries it.
pub async fn release_lease(
    pool: &PgPool,
    ti_id: i64,
    owner: Uuid,
    try_number: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE task_instances SET lease_expires_at = now() - interval '1 second'
         WHERE id = $1 AND lease_owner = $2 AND try_number = $3 AND state = 'running'",
    )
    .bind(ti_id)
    .bind(owner)
    .bind(try_number)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn register_worker(
    pool: &PgPool,
    worker: Uuid,
    hostname: &str,
    slots: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO workers (id, hostname, pid, slots) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(worker)
    .bind(hostname)
    .bind(std::process::id() as i32)
    .bind(slots)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn worker_heartbeat(pool: &PgPool, worker: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE workers SET heartbeat_at = now() WHERE id = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    Ok(())
}

/// A running task whose lease has expired.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Expired {
    pub ti_id: i64,
    pub dag_id: String,
    pub task_id: String,
    pub logical_date: DateTime<Utc>,
    pub try_number: i32,
    pub max_tries: i32,
    pub version_id: i64,
}

pub async fn expired_leases(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Expired>> {
    sqlx::query_as::<_, Expired>(
        "SELECT t.id AS ti_id, t.dag_id, t.task_id, r.logical_date, t.try_number, t.max_tries, r.version_id
         FROM task_instances t JOIN dag_runs r ON r.id = t.run_pk
         WHERE t.state = 'running' AND t.lease_expires_at < now()
         ORDER BY t.lease_expires_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Turns retries whose delay has passed into queued tasks; returns how many.
pub async fn queue_due_retries(pool: &PgPool) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE task_instances SET state = 'queued', queued_at = now()
         WHERE state = 'up_for_retry' AND not_before <= now()",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WORKER_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// XCom values of the given upstream tasks in a run: `(task_id, key, value)`.
pub async fn xcoms(
    pool: &PgPool,
    run_pk: i64,
    tasks: &[String],
) -> sqlx::Result<Vec<(String, String, serde_json::Value)>> {
    sqlx::query_as("SELECT task_id, key, value FROM xcom WHERE run_pk = $1 AND task_id = ANY($2)")
        .bind(run_pk)
        .bind(tasks)
        .fetch_all(pool)
        .await
}

/// Loads validated DAG specs by version id, caching them: a version never changes.
#[derive(Default, Clone)]
pub struct SpecCache {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<i64, Arc<Dag>>>>,
}

impl SpecCache {
    pub async fn get(&self, pool: &PgPool, version_id: i64) -> anyhow::Result<Arc<Dag>> {
        if let Some(dag) = self.lock().get(&version_id) {
            return Ok(dag.clone());
        }
        let spec: serde_json::Value =
            sqlx::query_scalar("SELECT spec FROM dag_versions WHERE id = $1")
                .bind(version_id)
                .fetch_one(pool)
                .await?;
        let dag: Arc<Dag> = Arc::new(crate::dag::spec::from_stored(spec)?);
        let mut cache = self.lock();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(version_id, dag.clone());
        Ok(dag)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, Arc<Dag>>> {
        // A poisoned cache only means a panic elsewhere mid-insert; the map is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
