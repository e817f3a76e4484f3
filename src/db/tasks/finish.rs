//! Finishing: recording tries' outcomes, deciding which downstream tasks became ready under
//! their trigger rules, and ending runs, in one transaction per batch. The lock order is the
//! module's (`super`): the batch's runs first, by id; then the tries' own rows; then their
//! downstream rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::super::{SCHEDULER_CHANNEL, WORKER_CHANNEL};
use super::claim::{Ready, Slot};
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
        run_ended: Option<RunState>,
        /// The task handed to the same worker in this transaction ([`HandOff`]): it is
        /// already leased to it.
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
/// then the tries' fenced state changes, XComs and last log lines; their downstream tasks
/// are decided under their trigger rules, ready ones queued (some handed off), skips and
/// upstream failures cascaded, and runs ended when nothing is left. Workers batch the
/// outcomes that arrive together, across runs, so a burst of short tasks shares one commit
/// and the same few statements. Results come back in the order of `items`. NOTIFY is
/// delivered at commit.
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
    // A fixed handful of statements for the whole batch, whatever its size: every try's
    // fenced state change; XComs where there are any; the downstream counters (one statement
    // per cascade step); the queueing of the tasks that became ready, with the hand-offs;
    // the last log lines; each run's counter. The run locks are held briefly, and every
    // hand-off of the batch is made by the fifth statement.
    let recorded = record_states(&mut tx, items).await?;
    let mut dags: BTreeMap<i64, &Dag> = BTreeMap::new();
    let mut ended: BTreeMap<i64, i32> = BTreeMap::new();
    let mut work = Vec::new();
    let mut requests = Vec::new();
    let mut gave_back = false;
    // Per item: whether its outcome counted (the same try twice in one batch: the first).
    let mut counted = vec![false; items.len()];
    let mut seen = HashSet::new();
    for i in order {
        let item = &items[i];
        let Some(done) = recorded.get(&item.ti_id) else {
            continue;
        };
        if !seen.insert(item.ti_id) {
            continue;
        }
        counted[i] = true;
        if let Finish::Success { xcom } = &item.outcome {
            store_xcom(
                &mut tx,
                item.run_pk,
                &done.task_id,
                item.fence.try_number(),
                xcom,
            )
            .await?;
        }
        let new_state = item.outcome.new_state();
        if !new_state.is_finished() {
            // Handed back (queued again, for another worker), or waiting for a retry.
            gave_back |= new_state == TaskState::Queued;
            continue;
        }
        dags.insert(item.run_pk, &item.dag);
        *ended.entry(item.run_pk).or_default() += 1;
        work.push((item.run_pk, done.task_id.clone(), new_state));
        // Only a try that was still running hands off: one the reaper had taken back no
        // longer counted against any limit, so a task taking its place would add to them.
        if let (Some(h), true) = (&item.hand_off, done.was_running) {
            requests.push(super::claim::Request {
                item: i,
                run_pk: item.run_pk,
                slot: done.slot.clone(),
                worker: h.worker,
                hostname: h.hostname.clone(),
            });
        }
    }
    let (ready, cascaded) = propagate(&mut tx, &dags, work).await?;
    for (run_pk, n) in cascaded {
        *ended.entry(run_pk).or_default() += n;
    }
    let (queued, handed) = super::claim::queue_ready(&mut tx, &ready, &requests).await?;
    // The log lines after the hand-offs: nothing waits for them before the commit.
    let tails: Vec<(i64, i32, Vec<LogLine>)> = items
        .iter()
        .zip(&counted)
        .filter(|(i, &counted)| counted && !i.tail.is_empty())
        .map(|(i, _)| (i.ti_id, i.fence.try_number(), i.tail.clone()))
        .collect();
    super::super::logs::append_many_in(&mut tx, &tails).await?;
    let run_states = count_off(&mut tx, &dags, &ended).await?;
    // Tasks handed off are no other worker's business.
    let for_others = gave_back || queued > handed.len();
    let mut next: HashMap<usize, Claimed> = handed.into_iter().collect();
    let results: Vec<Finished> = items
        .iter()
        .enumerate()
        .map(|(i, item)| match counted[i] {
            true => Finished::Recorded {
                run_ended: run_states.get(&item.run_pk).copied(),
                next: next.remove(&i).map(Box::new),
            },
            false => Finished::LeaseLost,
        })
        .collect();
    if for_others {
        super::super::notify(&mut *tx, WORKER_CHANNEL).await?;
    }
    if !run_states.is_empty() {
        // A slot under max_active_runs is free: let a scheduler start the next queued run.
        super::super::notify(&mut *tx, SCHEDULER_CHANNEL).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// A try whose fenced state change was recorded.
struct Done {
    task_id: String,
    /// Whether it was running (a late outcome may find its try reaped, in `up_for_retry`).
    was_running: bool,
    /// What it held of its pool, for a hand-off into its place.
    slot: Slot,
}

/// The fenced state change of every item, in one statement: the tries whose fence held, by
/// `ti_id`. The rows belong to runs whose locks the batch already holds, so the order the
/// statement locks them in cannot matter.
async fn record_states(
    tx: &mut Transaction<'_, Postgres>,
    items: &[FinishItem],
) -> sqlx::Result<HashMap<i64, Done>> {
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
    let rows: Vec<(i64, String, bool, String, i32, bool)> = sqlx::query_as(
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
                   was.state = 'running' AS was_running, t.pool, t.pool_slots, t.subprocess),
         noted AS (
            INSERT INTO task_tries (ti_id, try_number, state, start_date, end_date)
            SELECT id, try_number, state, start_date, end_date FROM done WHERE state <> 'queued'
            ON CONFLICT (ti_id, try_number) DO UPDATE
              SET state = EXCLUDED.state, start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date)
         SELECT id, task_id, was_running, pool, pool_slots, subprocess FROM done",
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
        .map(|(id, task_id, was_running, pool, pool_slots, subprocess)| {
            let slot = Slot {
                pool,
                pool_slots,
                subprocess,
            };
            let done = Done {
                task_id,
                was_running,
                slot,
            };
            (id, done)
        })
        .collect())
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
    run_pk: i64,
    task_id: String,
    state: TaskState,
    upstream_total: i32,
    up_success: i32,
    up_failed: i32,
    up_skipped: i32,
    up_upstream_failed: i32,
    #[sqlx(flatten)]
    slot: Slot,
}

/// Applies final states (`work`: run, task, state) to their downstream counters, for every
/// run of the batch at once, cascading decided skips and upstream failures: one statement
/// per step of the cascade. The caller holds the runs' locks, so the order the statements
/// lock downstream rows in cannot matter. Returns the tasks that became ready (still `none`:
/// the caller queues them) and, per run, how many more tasks the cascade ended.
async fn propagate(
    tx: &mut Transaction<'_, Postgres>,
    dags: &BTreeMap<i64, &Dag>,
    mut work: Vec<(i64, String, TaskState)>,
) -> sqlx::Result<(Vec<Ready>, BTreeMap<i64, i32>)> {
    let mut ready = Vec::new();
    let mut ended: BTreeMap<i64, i32> = BTreeMap::new();
    loop {
        // Per downstream row: what its upstream tasks that ended add to its counters (two
        // tries of the batch may share a downstream task).
        let mut bumps: BTreeMap<(i64, &str), [i32; 4]> = BTreeMap::new();
        for (run_pk, task_id, state) in &work {
            let Some(task) = dags.get(run_pk).and_then(|d| d.task(task_id)) else {
                continue;
            };
            let column = match state {
                TaskState::Success => 0,
                TaskState::Failed => 1,
                TaskState::Skipped => 2,
                TaskState::UpstreamFailed => 3,
                _ => continue,
            };
            for down in &task.downstream {
                bumps.entry((*run_pk, down.as_str())).or_default()[column] += 1;
            }
        }
        if bumps.is_empty() {
            break;
        }
        let (keys, adds): (Vec<_>, Vec<_>) = bumps.into_iter().unzip();
        let runs: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let tasks: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let column = |c: usize| adds.iter().map(|a: &[i32; 4]| a[c]).collect::<Vec<i32>>();
        let mut rows = sqlx::query_as::<_, CounterRow>(
            "UPDATE task_instances t SET
                up_success = up_success + v.success,
                up_failed = up_failed + v.failed,
                up_skipped = up_skipped + v.skipped,
                up_upstream_failed = up_upstream_failed + v.upstream_failed
             FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[])
                  AS v(run_pk, task_id, success, failed, skipped, upstream_failed)
             WHERE t.run_pk = v.run_pk AND t.task_id = v.task_id
             RETURNING t.id, t.run_pk, t.task_id, t.state, t.upstream_total, t.up_success,
                       t.up_failed, t.up_skipped, t.up_upstream_failed, t.pool, t.pool_slots,
                       t.subprocess",
        )
        .bind(&runs)
        .bind(&tasks)
        .bind(column(0))
        .bind(column(1))
        .bind(column(2))
        .bind(column(3))
        .fetch_all(&mut **tx)
        .await?;
        rows.sort_by(|a, b| (a.run_pk, &a.task_id).cmp(&(b.run_pk, &b.task_id)));
        let mut settle: Vec<(i64, TaskState)> = Vec::new();
        for row in rows.into_iter().filter(|r| r.state == TaskState::None) {
            let Some(down) = dags.get(&row.run_pk).and_then(|d| d.task(&row.task_id)) else {
                continue;
            };
            let counts = UpstreamCounts {
                total: row.upstream_total as u32,
                success: row.up_success as u32,
                failed: row.up_failed as u32,
                skipped: row.up_skipped as u32,
                upstream_failed: row.up_upstream_failed as u32,
            };
            match decide(down.trigger_rule, counts) {
                Decision::Wait => {}
                // A task may be found ready twice in a cascade (an odd trigger rule); once counts.
                Decision::Run if ready.iter().any(|r: &Ready| r.id == row.id) => {}
                Decision::Run => ready.push(Ready {
                    id: row.id,
                    run_pk: row.run_pk,
                    task_id: row.task_id,
                    slot: row.slot,
                }),
                Decision::Skip => settle.push((row.id, TaskState::Skipped)),
                Decision::UpstreamFailed => settle.push((row.id, TaskState::UpstreamFailed)),
            }
        }
        work = settle_decided(tx, &settle).await?;
        for (run_pk, _, _) in &work {
            *ended.entry(*run_pk).or_default() += 1;
        }
    }
    Ok((ready, ended))
}

/// Ends tasks their trigger rules decided without running them (skipped, upstream failed),
/// if still `none`; returns those it ended, for the next step of the cascade.
async fn settle_decided(
    tx: &mut Transaction<'_, Postgres>,
    decided: &[(i64, TaskState)],
) -> sqlx::Result<Vec<(i64, String, TaskState)>> {
    if decided.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = decided.iter().map(|d| d.0).collect();
    let states: Vec<&str> = decided.iter().map(|d| d.1.as_str()).collect();
    sqlx::query_as(
        "UPDATE task_instances t SET state = v.state, queued_at = NULL, end_date = now()
         FROM UNNEST($1::bigint[], $2::text[]) AS v(id, state)
         WHERE t.id = v.id AND t.state = 'none'
         RETURNING t.run_pk, t.task_id, t.state",
    )
    .bind(&ids)
    .bind(&states)
    .fetch_all(&mut **tx)
    .await
}

/// Counts the tasks that ended (`ended`, per run) off their runs, in one statement; each
/// run it brings to zero is decided: failed if any leaf failed or is upstream_failed,
/// success otherwise (Airflow's rule). Returns the runs that ended, with their state.
async fn count_off(
    tx: &mut Transaction<'_, Postgres>,
    dags: &BTreeMap<i64, &Dag>,
    ended: &BTreeMap<i64, i32>,
) -> sqlx::Result<BTreeMap<i64, RunState>> {
    let mut states = BTreeMap::new();
    let (runs, counts): (Vec<i64>, Vec<i32>) = ended
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (*r, *n))
        .unzip();
    if runs.is_empty() {
        return Ok(states);
    }
    let done: Vec<i64> = sqlx::query_scalar::<_, Option<i64>>(
        "UPDATE dag_runs r SET unfinished_tasks = r.unfinished_tasks - v.n
         FROM UNNEST($1::bigint[], $2::int[]) AS v(id, n)
         WHERE r.id = v.id
         RETURNING CASE WHEN r.unfinished_tasks <= 0 AND r.state = 'running' THEN r.id END",
    )
    .bind(&runs)
    .bind(&counts)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .flatten()
    .collect();
    for run_pk in done {
        let Some(dag) = dags.get(&run_pk) else {
            continue;
        };
        let leaves: Vec<&str> = dag.leaves().map(|t| t.task_id.as_str()).collect();
        let failed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM task_instances WHERE run_pk = $1 AND task_id = ANY($2)
                            AND state IN ('failed', 'upstream_failed'))",
        )
        .bind(run_pk)
        .bind(&leaves)
        .fetch_one(&mut **tx)
        .await?;
        let state = if failed {
            RunState::Failed
        } else {
            RunState::Success
        };
        sqlx::query(
            "UPDATE dag_runs SET state = $2, end_date = now() WHERE id = $1 AND state = 'running'",
        )
        .bind(run_pk)
        .bind(state)
        .execute(&mut **tx)
        .await?;
        states.insert(run_pk, state);
    }
    Ok(states)
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
