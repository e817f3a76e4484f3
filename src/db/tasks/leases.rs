//! Leases belong to workers. A worker's heartbeat renews its one `workers` row; a task
//! instance it runs is leased as long as that row is fresher than the worker's lease TTL.
//! So a heartbeat costs one row however many tasks a worker runs, and never waits on a task
//! instance a finish is writing. A worker learns that a try was taken away (reaped, run timed
//! out, cleared) by reading which of its tries are still its own ([`held_tries`]).

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::core::Duration;

/// Registers a worker (or renews it, after a restart of the same id).
pub async fn register_worker(
    pool: &PgPool,
    worker: Uuid,
    hostname: &str,
    slots: i32,
    lease_ttl: Duration,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO workers (id, hostname, pid, slots, lease_ttl)
         VALUES ($1, $2, $3, $4, $5 * interval '1 microsecond')
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lease_ttl = EXCLUDED.lease_ttl",
    )
    .bind(worker)
    .bind(hostname)
    .bind(std::process::id() as i32)
    .bind(slots)
    .bind(lease_ttl.pg_interval_micros())
    .execute(pool)
    .await?;
    Ok(())
}

/// Renews every lease the worker holds. `false`: the worker's row is gone (it is then
/// registered anew by the caller).
pub async fn worker_heartbeat(pool: &PgPool, worker: Uuid) -> sqlx::Result<bool> {
    let n = sqlx::query("UPDATE workers SET heartbeat_at = now() WHERE id = $1")
        .bind(worker)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Removes a worker that stopped cleanly (its tasks were handed back first).
pub async fn unregister_worker(pool: &PgPool, worker: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM workers WHERE id = $1")
        .bind(worker)
        .execute(pool)
        .await?;
    Ok(())
}

/// A try still held by the worker that asked, and whether its DAG is paused now (a
/// continuous task then stops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Held {
    pub ti_id: i64,
    pub dag_paused: bool,
}

/// Which of the worker's tries `(ti_id, try_number)` are still its own and running; a try
/// missing from the answer was taken away. A plain read: it locks nothing.
pub async fn held_tries(
    pool: &PgPool,
    worker: Uuid,
    tries: &[(i64, i32)],
) -> sqlx::Result<Vec<Held>> {
    if tries.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = tries.iter().map(|t| t.0).collect();
    let numbers: Vec<i32> = tries.iter().map(|t| t.1).collect();
    sqlx::query_as(
        "SELECT t.id AS ti_id, coalesce(d.is_paused, false) AS dag_paused FROM task_instances t
         JOIN UNNEST($2::bigint[], $3::int[]) AS x(id, try_number)
           ON t.id = x.id AND t.try_number = x.try_number
         LEFT JOIN dags d ON d.dag_id = t.dag_id
         WHERE t.state = 'running' AND t.lease_owner = $1",
    )
    .bind(worker)
    .bind(&ids)
    .bind(&numbers)
    .fetch_all(pool)
    .await
}

/// Puts back in the queue, untried, the tries leased to `worker` that it does not know it
/// runs (`known`) and that were leased more than `grace` ago: a claim or a hand-off whose
/// commit reached the database while its answer did not (the connection broke at COMMIT).
/// Nothing ran them, and without this they would stay leased for as long as the worker
/// lives. The grace keeps a claim whose answer is still on its way out of it. Returns the
/// tries put back; workers are woken for them.
pub async fn requeue_strays(
    pool: &PgPool,
    worker: Uuid,
    known: &[i64],
    grace: Duration,
) -> sqlx::Result<Vec<i64>> {
    const STRAYS: &str = "lease_owner = $1 AND state = 'running' AND id <> ALL($2)
        AND heartbeat_at < clock_timestamp() - $3 * interval '1 microsecond'";
    // A plain read first: there are almost never any, and then nothing is locked.
    let runs: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT DISTINCT run_pk FROM task_instances WHERE {STRAYS} ORDER BY run_pk"
    ))
    .bind(worker)
    .bind(known)
    .bind(grace.pg_interval_micros())
    .fetch_all(pool)
    .await?;
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    // In the lock order (module docs): their runs first, by id, then the task instances.
    let mut tx = pool.begin().await?;
    super::lock_runs(&mut tx, &runs).await?;
    let back: Vec<i64> = sqlx::query_scalar(&format!(
        "UPDATE task_instances SET state = 'queued', try_number = try_number - 1, lease_owner = NULL,
                start_date = NULL, hostname = NULL, not_before = now()
         WHERE {STRAYS} AND run_pk = ANY($4)
         RETURNING id"
    ))
    .bind(worker)
    .bind(known)
    .bind(grace.pg_interval_micros())
    .bind(&runs)
    .fetch_all(&mut *tx)
    .await?;
    if !back.is_empty() {
        super::super::notify(&mut *tx, super::super::WORKER_CHANNEL).await?;
    }
    tx.commit().await?;
    Ok(back)
}

/// Gives up one try's lease at once (fenced by owner and try), so the reaper fails and
/// retries it without waiting for the worker's other leases to expire.
pub async fn release_lease(
    pool: &PgPool,
    ti_id: i64,
    owner: Uuid,
    try_number: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE task_instances SET lease_owner = NULL
         WHERE id = $1 AND lease_owner = $2 AND try_number = $3 AND state = 'running'",
    )
    .bind(ti_id)
    .bind(owner)
    .bind(try_number)
    .execute(pool)
    .await?;
    Ok(())
}

/// A running task whose lease has expired: its worker stopped heartbeating (or released it).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Expired {
    pub ti_id: i64,
    pub run_pk: i64,
    pub dag_id: String,
    pub task_id: String,
    pub logical_date: DateTime<Utc>,
    pub try_number: i32,
    pub max_tries: i32,
    pub version_id: i64,
    pub lease_owner: Option<Uuid>,
}

/// Running task instances whose lease has expired, oldest heartbeat first.
pub async fn expired_leases(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<Expired>> {
    sqlx::query_as::<_, Expired>(
        "SELECT t.id AS ti_id, t.run_pk, t.dag_id, t.task_id, r.logical_date, t.try_number,
                t.max_tries, r.version_id, t.lease_owner
         FROM task_instances t
         JOIN dag_runs r ON r.id = t.run_pk
         LEFT JOIN workers w ON w.id = t.lease_owner
         WHERE t.state = 'running' AND (w.id IS NULL OR w.heartbeat_at + w.lease_ttl < now())
         ORDER BY coalesce(w.heartbeat_at, t.heartbeat_at), t.id
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Forgets workers that have not heartbeated for a day (their tasks were reaped long ago).
pub async fn forget_dead_workers(pool: &PgPool) -> sqlx::Result<u64> {
    let gone = StdDuration::from_secs(86_400);
    Ok(sqlx::query(
        "DELETE FROM workers WHERE heartbeat_at < now() - $1 * interval '1 microsecond'
         AND NOT EXISTS (SELECT 1 FROM task_instances t WHERE t.lease_owner = workers.id AND t.state = 'running')",
    )
    .bind(gone.as_micros() as i64)
    .execute(pool)
    .await?
    .rows_affected())
}
