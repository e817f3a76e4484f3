//! Claiming: one statement takes the due task instances a worker has slots for and leases
//! them to it. Queued tasks and retries whose delay has passed are taken together in due-time
//! order (`not_before`: when a task became ready, or when its retry is due), so a retry due
//! now does not wait behind tasks queued after it.
//!
//! Claims run one at a time, under a transaction-scoped advisory lock, so the limits they
//! check are exact: neither `max_active_tasks` per run (as in Airflow 3) nor a pool's slots
//! are ever overshot by two workers claiming in the same instant. A claim holds the lock for one short statement and
//! waits on no row (`SKIP LOCKED`), so it cannot take part in a deadlock.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The advisory lock key that serializes claims (`'updraft' claim`, an arbitrary constant).
const CLAIM_LOCK: i64 = 0x7570_6472_6166_7431;

/// What a claim returns of each task instance it leased (`t`, joined with its run `r`): the
/// columns of [`Claimed`].
const CLAIMED: &str =
    "t.id AS ti_id, t.run_pk, t.dag_id, t.task_id, t.try_number, t.max_tries, r.version_id,
     r.run_id, r.logical_date, r.data_interval_start, r.data_interval_end, r.conf,
     (SELECT g.generation FROM config_generation g) AS config_generation, t.pool,
     EXISTS (SELECT 1 FROM pools p WHERE p.pool = t.pool) AS pool_exists, t.subprocess";

/// The room of pool `p` as the statement sees it: its slots less those its running tasks
/// take; NULL for an unlimited pool (-1 slots, as in Airflow).
const POOL_ROOM: &str = "CASE WHEN p.slots < 0 THEN NULL
     ELSE p.slots - coalesce((SELECT sum(a.pool_slots) FROM task_instances a
                              WHERE a.pool = p.pool AND a.state = 'running'), 0)
     END";

/// How many more tasks the run of task instance `q` may run: its DAG's `max_active_tasks`
/// less those running.
const RUN_ROOM: &str = "((SELECT d.max_active_tasks FROM dags d WHERE d.dag_id = q.dag_id)
     - (SELECT count(*) FROM task_instances a WHERE a.run_pk = q.run_pk AND a.state = 'running'))";

/// A direct hand-off goes past the queue, so it is made only while nothing in the queue that
/// could be claimed now has been due for longer than this: under a backlog, slots go back to
/// the queue, in due order.
const HAND_OFF_PATIENCE: crate::core::Duration = crate::core::Duration::from_secs_const(1);

/// How many of the tasks that have waited longest a hand-off looks at to find one that could
/// be claimed now (a run with room, a pool with room). It bounds the cost of a hand-off under
/// a large backlog that cannot be served, such as a fan-out of thousands under its
/// `max_active_tasks`; a claimable task behind more than this many such tasks does not stop
/// hand-offs, and waits for a claim.
const PATIENCE_SCAN: i64 = 256;

/// A task instance a worker now holds the lease on, with what it needs to run it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// The connections-and-variables generation as of the claim, so the worker knows
    /// without another round trip whether its cached copy is current.
    pub config_generation: i64,
    /// The task's pool, and whether it exists (a task whose pool vanished fails naming it).
    pub pool: String,
    pub pool_exists: bool,
    /// Whether the task runs a command in processes of its own (it takes a process slot).
    pub subprocess: bool,
}

/// Claims up to `limit` task instances whose time has come, leasing them to `worker`.
///
/// Candidates of runs already at `max_active_tasks`, or of pools already full, are passed over
/// in the scan; the rest are ranked within their run and their pool (by `pool_slots`, in due
/// order) so that a claim never takes more than a run or a pool has room for. A pool of -1
/// slots is unlimited, as in Airflow. A task whose pool does not exist is claimed anyway, so
/// the worker fails it with a message naming the pool instead of it waiting forever. Four
/// times `limit` candidates are locked so that a full run or pool does not crowd out others.
/// Of tasks that run processes of their own (`bash`), at most `process_limit` are taken;
/// the others are claimed past them.
pub async fn claim(
    pool: &PgPool,
    worker: Uuid,
    hostname: &str,
    (limit, process_limit): (i64, i64),
) -> sqlx::Result<Vec<Claimed>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CLAIM_LOCK)
        .execute(&mut *tx)
        .await?;
    let claimed = sqlx::query_as::<_, Claimed>(&format!(
        "WITH pool_room AS (
             SELECT p.pool, {POOL_ROOM} AS room FROM pools p
         ), cand AS (
             SELECT q.id, q.run_pk, q.dag_id, q.pool, q.pool_slots, q.not_before, q.subprocess FROM task_instances q
             WHERE q.state IN ('queued', 'up_for_retry') AND q.not_before <= now()
               AND {RUN_ROOM} > 0
               AND coalesce((SELECT pr.room >= q.pool_slots FROM pool_room pr WHERE pr.pool = q.pool), true)
             ORDER BY q.not_before, q.id
             FOR UPDATE SKIP LOCKED
             LIMIT $2 * 4
         ), ranked AS (
             SELECT q.id, q.not_before,
                    row_number() OVER (PARTITION BY q.run_pk ORDER BY q.not_before, q.id) AS rn,
                    {RUN_ROOM} AS room,
                    sum(q.pool_slots) OVER (PARTITION BY q.pool ORDER BY q.not_before, q.id) AS pool_used,
                    sum(q.subprocess::int) OVER (ORDER BY q.not_before, q.id) AS processes,
                    q.subprocess,
                    (SELECT pr.room FROM pool_room pr WHERE pr.pool = q.pool) AS pool_room
             FROM cand q
         ), chosen AS (
             SELECT id FROM ranked
             WHERE rn <= room AND (pool_room IS NULL OR pool_used <= pool_room)
               AND (NOT subprocess OR processes <= $4)
             ORDER BY not_before, id LIMIT $2
         )
         UPDATE task_instances t
         SET state = 'running', try_number = t.try_number + 1, lease_owner = $1,
             lease_expires_at = NULL, heartbeat_at = clock_timestamp(), start_date = clock_timestamp(), end_date = NULL,
             hostname = $3
         FROM dag_runs r
         WHERE r.id = t.run_pk AND t.id IN (SELECT id FROM chosen)
         RETURNING {CLAIMED}"
    ))
    .bind(worker)
    .bind(limit)
    .bind(hostname)
    .bind(process_limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// When the next retry falls due, if one is waiting: a worker with nothing to do sleeps
/// until then rather than a whole poll interval, so retries start on time.
pub async fn next_retry_due(pool: &PgPool) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "SELECT min(not_before) FROM task_instances WHERE state = 'up_for_retry' AND not_before > now()",
    )
    .fetch_one(pool)
    .await
}

/// What a task instance takes of its pool, and whether it runs processes of its own.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Slot {
    pub pool: String,
    pub pool_slots: i32,
    pub subprocess: bool,
}

impl Slot {
    /// Whether `next` may run in the place this one frees: same pool, no more of its slots,
    /// and processes of its own only where this one ran them (the process slot passes on).
    fn fits(&self, next: &Slot) -> bool {
        next.pool == self.pool
            && next.pool_slots <= self.pool_slots
            && (self.subprocess || !next.subprocess)
    }
}

/// A task a finish found ready to run (still `none`, to be queued).
#[derive(Debug)]
pub(super) struct Ready {
    pub id: i64,
    pub run_pk: i64,
    pub task_id: String,
    pub slot: Slot,
}

/// A worker's request to be handed a ready task in the place of its try that ended.
#[derive(Debug)]
pub(super) struct Request {
    /// The finish item it came with.
    pub item: usize,
    pub run_pk: i64,
    /// What the ended try held.
    pub slot: Slot,
    pub worker: Uuid,
    pub hostname: std::sync::Arc<str>,
}

/// Queues the tasks a finish batch found ready (`ready`, still `none`) in one statement,
/// and makes the direct hand-offs asked for: a ready task is leased at once to the worker
/// whose try ended, for the slot that try frees, so a chain's next task starts without
/// waiting for a NOTIFY and a claim of its own. Each request gets at most one task, the
/// first by `task_id` of its run that fits its slot ([`Slot::fits`]) and no other request
/// took. Returns how many were queued (those handed off included) and, per request's
/// item, the task handed off.
///
/// A hand-off takes no claim lock, because it cannot overshoot a limit: the ended try and
/// the task that takes its place belong to the same run (its running count stays the same),
/// the task must be in the ended try's pool and need no more of its slots (the pool's use
/// does not grow), and it may run processes of its own only if the ended try did (the
/// worker's process slot passes on). A claim running beside it sees either the ended try or
/// its successor running, never both and never neither. The runs and pools must also have
/// room for the hand-offs as this transaction sees them, without the ended tries (ranked
/// as a claim ranks its picks): a limit lowered while a chain runs (a pool set to 0 to drain
/// it) stops its hand-offs too.
///
/// A hand-off goes past the queue, so none is made while a task in the queue has been due
/// for longer than [`HAND_OFF_PATIENCE`] and could be claimed now (its run and its pool have
/// room; among the [`PATIENCE_SCAN`] that have waited longest): under a backlog the slot goes
/// back to the queue, which is served in due order. Tasks a freed slot could not serve anyway
/// (a run at its limit, a full pool) do not stop hand-offs for everyone else.
pub(super) async fn queue_ready(
    tx: &mut sqlx::PgConnection,
    ready: &[Ready],
    requests: &[Request],
) -> sqlx::Result<(usize, Vec<(usize, Claimed)>)> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        claimed: Claimed,
        handed: bool,
    }
    if ready.is_empty() {
        return Ok((0, Vec::new()));
    }
    let mut taken = vec![false; ready.len()];
    let mut offers: Vec<(i64, &Request)> = Vec::new();
    for r in requests {
        let pick = (0..ready.len())
            .filter(|&i| !taken[i] && ready[i].run_pk == r.run_pk && r.slot.fits(&ready[i].slot))
            .min_by(|&a, &b| ready[a].task_id.cmp(&ready[b].task_id));
        if let Some(i) = pick {
            taken[i] = true;
            offers.push((ready[i].id, r));
        }
    }
    let ids: Vec<i64> = ready.iter().map(|r| r.id).collect();
    let offered: Vec<i64> = offers.iter().map(|o| o.0).collect();
    let workers: Vec<Uuid> = offers.iter().map(|o| o.1.worker).collect();
    let hostnames: Vec<&str> = offers.iter().map(|o| &*o.1.hostname).collect();
    let rows = sqlx::query_as::<_, Row>(&format!(
        "WITH offer AS (
             SELECT q.id, o.worker, o.hostname, q.pool,
                    row_number() OVER (PARTITION BY q.run_pk ORDER BY q.task_id) AS rn,
                    {RUN_ROOM} AS room,
                    sum(q.pool_slots) OVER (PARTITION BY q.pool ORDER BY q.run_pk, q.task_id) AS pool_used
             FROM UNNEST($2::bigint[], $3::uuid[], $4::text[]) AS o(id, worker, hostname)
             JOIN task_instances q ON q.id = o.id
             WHERE q.state = 'none'
         ), pool_room AS MATERIALIZED (
             SELECT p.pool, {POOL_ROOM} AS room FROM pools p WHERE p.pool IN (SELECT pool FROM offer)
         ), pick AS MATERIALIZED (
             SELECT c.id, c.worker, c.hostname FROM offer c LEFT JOIN pool_room pr ON pr.pool = c.pool
             WHERE c.rn <= c.room AND (pr.room IS NULL OR pr.room >= c.pool_used)
               AND NOT EXISTS (
                   SELECT 1 FROM (SELECT w.run_pk, w.dag_id, w.pool, w.pool_slots FROM task_instances w
                                  WHERE w.state IN ('queued', 'up_for_retry')
                                    AND w.not_before < now() - $5 * interval '1 microsecond'
                                  ORDER BY w.not_before, w.id LIMIT {PATIENCE_SCAN}) q
                   WHERE {RUN_ROOM} > 0
                     AND coalesce((SELECT ({POOL_ROOM}) >= q.pool_slots FROM pools p WHERE p.pool = q.pool), true))
         ), ready AS (
             SELECT x.id, h.id IS NOT NULL AS handed, h.worker, h.hostname
             FROM UNNEST($1::bigint[]) AS x(id) LEFT JOIN pick h ON h.id = x.id
         )
         UPDATE task_instances t
         SET state = CASE WHEN x.handed THEN 'running' ELSE 'queued' END,
             queued_at = now(), not_before = now(), end_date = NULL,
             try_number = t.try_number + x.handed::int,
             lease_owner = CASE WHEN x.handed THEN x.worker ELSE t.lease_owner END,
             lease_expires_at = NULL,
             heartbeat_at = CASE WHEN x.handed THEN clock_timestamp() ELSE t.heartbeat_at END,
             start_date = CASE WHEN x.handed THEN clock_timestamp() ELSE t.start_date END,
             hostname = CASE WHEN x.handed THEN x.hostname ELSE t.hostname END
         FROM dag_runs r, ready x
         WHERE x.id = t.id AND r.id = t.run_pk AND t.state = 'none'
         RETURNING {CLAIMED}, x.handed"
    ))
    .bind(&ids)
    .bind(&offered)
    .bind(&workers)
    .bind(&hostnames)
    .bind(HAND_OFF_PATIENCE.pg_interval_micros())
    .fetch_all(tx)
    .await?;
    let queued = rows.len();
    let handed = rows
        .into_iter()
        .filter(|r| r.handed)
        .filter_map(|r| {
            let item = offers.iter().find(|o| o.0 == r.claimed.ti_id)?.1.item;
            Some((item, r.claimed))
        })
        .collect();
    Ok((queued, handed))
}
