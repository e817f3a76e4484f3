//! Finishing: recording tries' outcomes, deciding which downstream tasks became ready under
//! their trigger rules, and ending runs, in one transaction per batch. The lock order is the
//! module's (`super`): the batch's runs first, by id; then each try's own row; then its
//! downstream rows by `task_id`.

use std::sync::Arc;

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::super::{SCHEDULER_CHANNEL, WORKER_CHANNEL};
use super::Claimed;
use crate::core::trigger::{decide, Decision, UpstreamCounts};
use crate::core::{Duration, LogLine, RunState, TaskState};
use crate::dag::Dag;

/// Who may record a try's outcome.
#[derive(Debug, Clone, Copy)]
pub enum Fence {
    /// The worker that ran the try. It is accepted while the try is still running under that
    /// worker, and also after the reaper took it back to `up_for_retry` as long as nobody
    /// has claimed it since (the try number is unchanged): a worker cut off from the database
    /// for longer than its lease does not turn finished work into a rerun.
    Lease { owner: Uuid, try_number: i32 },
    /// The reaper, for a try whose worker's lease has expired; `owner` is the holder the
    /// reaper saw (`None` for a released lease).
    Expired {
        owner: Option<Uuid>,
        try_number: i32,
    },
}

impl Fence {
    pub fn try_number(&self) -> i32 {
        match *self {
            Fence::Lease { try_number, .. } | Fence::Expired { try_number, .. } => try_number,
        }
    }
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

impl Finish {
    fn new_state(&self) -> TaskState {
        match self {
            Finish::Success { .. } => TaskState::Success,
            Finish::Skipped => TaskState::Skipped,
            Finish::Failed {
                retry_after: Some(_),
            } => TaskState::UpForRetry,
            Finish::Failed { retry_after: None } => TaskState::Failed,
            Finish::GiveBack => TaskState::Queued,
        }
    }
}

/// What a finish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Recorded {
        queued: usize,
        run_ended: Option<RunState>,
        /// The task handed to the same worker in this transaction ([`HandOff`]): it is
        /// already leased to it, and counted in `queued`.
        next: Option<Box<Claimed>>,
    },
    /// The fence did not hold: the try was taken away (claimed again, cleared, or the run
    /// ended) before its outcome arrived.
    LeaseLost,
}

/// Deadlocks and serialization failures: the transaction can simply run again.
pub fn is_retryable(e: &sqlx::Error) -> bool {
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
    pub run_pk: i64,
    pub fence: Fence,
    pub outcome: Finish,
    pub dag: Arc<Dag>,
    /// The try's last log lines, stored in the same transaction (none from the reaper).
    pub tail: Vec<LogLine>,
    /// Whether the worker takes a task this outcome queued straight into the freed slot.
    pub hand_off: Option<HandOff>,
}

/// A worker's request to be handed one of the tasks a try's outcome queues, in the same
/// transaction ([`super::claim::queue_ready`] says when one qualifies).
#[derive(Debug, Clone)]
pub struct HandOff {
    pub worker: Uuid,
    pub hostname: Arc<str>,
}

/// Records one try's outcome; see [`finish_many`].
pub async fn finish(pool: &PgPool, item: FinishItem) -> sqlx::Result<Finished> {
    let mut results = finish_many(pool, std::slice::from_ref(&item)).await?;
    Ok(results.pop().unwrap_or(Finished::LeaseLost))
}

/// Records tries' outcomes in ONE transaction: the batch's runs are locked first (by id),
/// then for each try the fenced state change, its XComs and last log lines; its downstream
/// tasks are decided under their trigger rules, ready ones queued, skips and upstream
/// failures cascaded, and the run ended when nothing is left. Workers batch the outcomes
/// that arrive together, so a burst of short tasks shares one commit. Results come back in
/// the order of `items`. NOTIFY is delivered at commit.
pub async fn finish_many(pool: &PgPool, items: &[FinishItem]) -> sqlx::Result<Vec<Finished>> {
    // Deadlocks cannot happen under the lock order; serialization failures cannot either at
    // READ COMMITTED. Retrying them anyway keeps a future mistake from losing outcomes.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match finish_batch(pool, items).await {
            Err(e) if attempt < 10 && is_retryable(&e) => {
                tracing::warn!(error = %e, attempt, "finishing a batch hit a deadlock; retrying");
            }
            other => return other,
        }
    }
}

async fn finish_batch(pool: &PgPool, items: &[FinishItem]) -> sqlx::Result<Vec<Finished>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].run_pk, items[i].ti_id));
    let mut runs: Vec<i64> = items.iter().map(|i| i.run_pk).collect();
    runs.sort_unstable();
    runs.dedup();

    let mut tx = pool.begin().await?;
    super::lock_runs(&mut tx, &runs).await?;
    // Every try's fenced state change in one statement, then XComs, downstream decisions and
    // hand-offs per try (in run, then task order), then the recorded tries' last log lines in
    // one statement, then each run's counter once: a burst of outcomes costs a handful of round trips, so
    // the run locks are held briefly.
    let recorded_ids = record_states(&mut tx, items).await?;
    // Per item: how many tasks it queued; per run: how many tasks ended.
    let mut recorded: Vec<Option<(usize, Option<Claimed>)>> = vec![None; items.len()];
    let mut ended: std::collections::BTreeMap<i64, (i32, &Dag)> = Default::default();
    let mut seen = std::collections::HashSet::new();
    for i in order {
        let item = &items[i];
        let Some((task_id, was_running)) = recorded_ids.get(&item.ti_id) else {
            continue;
        };
        if !seen.insert(item.ti_id) {
            continue; // the same try twice in one batch: the first one counts
        }
        let (queued, n, next) = after_state(&mut tx, item, task_id, *was_running).await?;
        recorded[i] = Some((queued, next));
        ended.entry(item.run_pk).or_insert((0, &*item.dag)).0 += n;
    }
    // The log lines after the hand-offs: nothing waits for them before the commit.
    let tails: Vec<(i64, i32, Vec<LogLine>)> = items
        .iter()
        .filter(|i| recorded_ids.contains_key(&i.ti_id) && !i.tail.is_empty())
        .map(|i| (i.ti_id, i.fence.try_number(), i.tail.clone()))
        .collect();
    super::super::logs::append_many_in(&mut tx, &tails).await?;
    let mut run_states = std::collections::BTreeMap::new();
    for (run_pk, (n, dag)) in ended.into_iter().filter(|(_, (n, _))| *n > 0) {
        if let Some(state) = end_run_if_done(&mut tx, run_pk, dag, n).await? {
            run_states.insert(run_pk, state);
        }
    }
    // Tasks handed off are no other worker's business.
    let queued_any = recorded
        .iter()
        .flatten()
        .any(|(q, next)| *q > usize::from(next.is_some()));
    let ended_any = !run_states.is_empty();
    let results: Vec<Finished> = items
        .iter()
        .zip(recorded)
        .map(|(item, r)| match r {
            Some((queued, next)) => Finished::Recorded {
                queued,
                run_ended: run_states.get(&item.run_pk).copied(),
                next: next.map(Box::new),
            },
            None => Finished::LeaseLost,
        })
        .collect();
    if queued_any {
        super::super::notify(&mut *tx, WORKER_CHANNEL).await?;
    }
    if ended_any {
        // A slot under max_active_runs is free: let a scheduler start the next queued run.
        super::super::notify(&mut *tx, SCHEDULER_CHANNEL).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// The fenced state change of every item, in one statement: `ti_id → (task_id, whether it
/// was running)` of the tries whose fence held (a late outcome may find its try reaped, in
/// `up_for_retry`). The rows belong to runs whose locks the batch already holds, so the
/// order the statement locks them in cannot matter.
async fn record_states(
    tx: &mut Transaction<'_, Postgres>,
    items: &[FinishItem],
) -> sqlx::Result<std::collections::HashMap<i64, (String, bool)>> {
    let mut ids = Vec::with_capacity(items.len());
    let mut states = Vec::with_capacity(items.len());
    let mut delays = Vec::with_capacity(items.len());
    let mut owners = Vec::with_capacity(items.len());
    let mut tries = Vec::with_capacity(items.len());
    let mut reapers = Vec::with_capacity(items.len());
    for item in items {
        let (owner, try_number, reaper) = match item.fence {
            Fence::Lease { owner, try_number } => (Some(owner), try_number, false),
            Fence::Expired { owner, try_number } => (owner, try_number, true),
        };
        ids.push(item.ti_id);
        states.push(item.outcome.new_state().as_str());
        delays.push(match item.outcome {
            Finish::Failed {
                retry_after: Some(d),
            } => d.pg_interval_micros(),
            _ => 0,
        });
        owners.push(owner);
        tries.push(try_number);
        reapers.push(reaper);
    }
    // The reaper takes a try only while its worker's lease is still expired; a worker's
    // outcome is taken while the try is running under it, or waiting to be retried with
    // nobody having claimed it since (see `Fence::Lease`).
    // Each recorded try (not a hand-back, which does not count) is also noted in
    // `task_tries`, in the same statement.
    let rows: Vec<(i64, String, bool)> = sqlx::query_as(
        "WITH done AS (UPDATE task_instances t SET
            state = v.st,
            end_date = CASE WHEN v.st = 'queued' THEN NULL ELSE now() END,
            start_date = CASE WHEN v.st = 'queued' THEN NULL ELSE t.start_date END,
            try_number = CASE WHEN v.st = 'queued' THEN t.try_number - 1 ELSE t.try_number END,
            lease_owner = CASE WHEN v.st IN ('queued', 'up_for_retry') AND NOT v.reaper THEN NULL ELSE t.lease_owner END,
            not_before = CASE WHEN v.st = 'up_for_retry' THEN now() + v.delay * interval '1 microsecond' ELSE t.not_before END
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::int[], $6::bool[])
              AS v(id, st, delay, owner, tn, reaper),
              (SELECT id, state FROM task_instances WHERE id = ANY($1)) AS was
         WHERE t.id = v.id AND was.id = t.id AND t.id = ANY($1) AND t.try_number = v.tn
           AND t.lease_owner IS NOT DISTINCT FROM v.owner
           AND CASE WHEN v.reaper
                 THEN t.state = 'running' AND NOT EXISTS (
                        SELECT 1 FROM workers w
                        WHERE w.id = t.lease_owner AND w.heartbeat_at + w.lease_ttl >= now())
                 ELSE t.state = 'running' OR (t.state = 'up_for_retry' AND v.st <> 'queued')
               END
         RETURNING t.id, t.task_id, t.try_number, t.state, t.start_date, t.end_date,
                   was.state = 'running' AS was_running),
         noted AS (
            INSERT INTO task_tries (ti_id, try_number, state, start_date, end_date)
            SELECT id, try_number, state, start_date, end_date FROM done WHERE state <> 'queued'
            ON CONFLICT (ti_id, try_number) DO UPDATE
              SET state = EXCLUDED.state, start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date)
         SELECT id, task_id, was_running FROM done",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&delays)
    .bind(&owners)
    .bind(&tries)
    .bind(&reapers)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, task_id, was_running)| (id, (task_id, was_running)))
        .collect())
}

/// What follows a recorded try, under the run lock the batch holds: its XComs, and its
/// downstream tasks. Returns how many tasks it queued, how many ended (to count off the
/// run), and the task handed off to the try's worker. Only a try that was still running
/// hands off: one the reaper had taken back no longer counted against any limit, so a task
/// taking its place would add to them.
async fn after_state(
    tx: &mut Transaction<'_, Postgres>,
    item: &FinishItem,
    task_id: &str,
    was_running: bool,
) -> sqlx::Result<(usize, i32, Option<Claimed>)> {
    let new_state = item.outcome.new_state();
    if let Finish::Success { xcom } = &item.outcome {
        store_xcom(tx, item.run_pk, task_id, item.fence.try_number(), xcom).await?;
    }
    if new_state.is_finished() {
        let hand_off = match &item.hand_off {
            Some(h) if was_running => Some((h, item.ti_id)),
            _ => None,
        };
        let work = vec![(task_id.to_string(), new_state)];
        propagate(tx, item.run_pk, &item.dag, work, hand_off).await
    } else {
        // Handed back (queued again, for another worker), or waiting for a retry.
        Ok((usize::from(new_state == TaskState::Queued), 0, None))
    }
}

async fn store_xcom(
    tx: &mut Transaction<'_, Postgres>,
    run_pk: i64,
    task_id: &str,
    try_number: i32,
    xcom: &[(String, serde_json::Value)],
) -> sqlx::Result<()> {
    if try_number > 1 {
        // XComs of an earlier, failed try of this task.
        sqlx::query("DELETE FROM xcom WHERE run_pk = $1 AND task_id = $2")
            .bind(run_pk)
            .bind(task_id)
            .execute(&mut **tx)
            .await?;
    }
    if xcom.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = xcom.iter().map(|(k, _)| k.as_str()).collect();
    let values: Vec<&serde_json::Value> = xcom.iter().map(|(_, v)| v).collect();
    sqlx::query(
        "INSERT INTO xcom (run_pk, task_id, key, value)
         SELECT $1, $2, k, v FROM UNNEST($3::text[], $4::jsonb[]) AS x(k, v)
         ON CONFLICT (run_pk, task_id, key) DO UPDATE SET value = EXCLUDED.value, created_at = now()",
    )
    .bind(run_pk)
    .bind(task_id)
    .bind(&keys)
    .bind(&values)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct CounterRow {
    id: i64,
    task_id: String,
    state: TaskState,
    upstream_total: i32,
    up_success: i32,
    up_failed: i32,
    up_skipped: i32,
    up_upstream_failed: i32,
}

/// Applies final states to their downstream counters, cascading decided skips and upstream
/// failures. The caller holds the run's row lock; downstream rows are locked in `task_id`
/// order. The tasks that became ready are queued together at the end, one of them handed to
/// the finished try's worker if it asked (`hand_off`: the request and the finished try).
/// Returns how many were queued (the hand-off included), how many ended (`work` included,
/// which the caller counts off the run), and the task handed off.
async fn propagate(
    tx: &mut Transaction<'_, Postgres>,
    run_pk: i64,
    dag: &Dag,
    mut work: Vec<(String, TaskState)>,
    hand_off: Option<(&HandOff, i64)>,
) -> sqlx::Result<(usize, i32, Option<Claimed>)> {
    let mut ended = work.len() as i32;
    let mut ready = Vec::new();
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
        for row in rows.into_iter().filter(|r| r.state == TaskState::None) {
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
                Decision::Run => {
                    ready.push(row.id);
                    continue;
                }
                Decision::Skip => TaskState::Skipped,
                Decision::UpstreamFailed => TaskState::UpstreamFailed,
            };
            let changed = sqlx::query(
                "UPDATE task_instances SET state = $2, queued_at = NULL, end_date = now()
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
            ended += 1;
            work.push((row.task_id, next));
        }
    }
    if ready.is_empty() {
        return Ok((0, ended, None));
    }
    let (queued, next) = super::claim::queue_ready(tx, &ready, hand_off).await?;
    Ok((queued, ended, next))
}

/// Counts `ended` tasks off the run; the transaction that brings it to zero decides the run:
/// failed if any leaf failed or is upstream_failed, success otherwise (Airflow's rule).
async fn end_run_if_done(
    tx: &mut Transaction<'_, Postgres>,
    run_pk: i64,
    dag: &Dag,
    ended: i32,
) -> sqlx::Result<Option<RunState>> {
    let (left, state): (i32, RunState) = sqlx::query_as(
        "UPDATE dag_runs SET unfinished_tasks = unfinished_tasks - $2 WHERE id = $1 RETURNING unfinished_tasks, state",
    )
    .bind(run_pk)
    .bind(ended)
    .fetch_one(&mut **tx)
    .await?;
    if left > 0 || state != RunState::Running {
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
    let final_state = if failed {
        RunState::Failed
    } else {
        RunState::Success
    };
    sqlx::query(
        "UPDATE dag_runs SET state = $2, end_date = now() WHERE id = $1 AND state = 'running'",
    )
    .bind(run_pk)
    .bind(final_state)
    .execute(&mut **tx)
    .await?;
    Ok(Some(final_state))
}

/// For an expired task whose DAG version cannot be read: fail the task and its run (the
/// rest of the run is skipped), with a note that says why. Nothing else can decide its fate.
pub async fn fail_unreadable(
    pool: &PgPool,
    run_pk: i64,
    ti_id: i64,
    note: &str,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM dag_runs WHERE id = $1 FOR UPDATE")
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
    let failed = sqlx::query(
        "UPDATE task_instances SET state = 'failed', end_date = now()
         WHERE id = $1 AND state = 'running'",
    )
    .bind(ti_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if failed > 0 {
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
