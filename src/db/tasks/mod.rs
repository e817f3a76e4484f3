//! The task queue: claim under a lease, finish (fenced by the lease holder and the try)
//! while queueing the downstream tasks that became ready in the same transaction, worker
//! heartbeats, and the reaper.
//!
//! # Lock order
//!
//! Every transaction that touches more than one of these takes its row locks in this order,
//! so no two can wait on each other in a circle (Postgres docs, "Explicit Locking" §13.3.4):
//!
//! 0. `backfills` rows (advancing or cancelling a backfill; [`super::backfill`]),
//! 1. `dags` rows (run creation and start; `FOR UPDATE SKIP LOCKED`),
//! 2. `dag_runs` rows, by `id` (finishing locks every run of its batch first, in id order;
//!    timeouts lock the runs they end in id order),
//! 3. `task_instances` rows: finished tries' own rows, then their downstream rows
//!    (clearing and marking, [`super::operate`], lock every row of the run by `task_id`,
//!    after the run's row). Among the rows of runs it has locked, a transaction may lock in
//!    any order: every other writer of a run's rows holds the run's lock too, except claims,
//!    which skip locked rows and wait on nothing,
//! 4. then inserts only (`xcom`, `task_logs`).
//!
//! Two things stay out of that order on purpose. Claiming locks only the task instances it
//! takes, with `SKIP LOCKED`, so it never waits on a row (one claim at a time, under an
//! advisory lock, so limits are exact). A finish may also lease one task it queues straight
//! to the worker whose try ended (a *hand-off*, in the finish's own order, under its run
//! lock): it needs no claim lock because it only swaps a running task of a run and pool
//! for another ([`claim::queue_ready`]). Heartbeats touch only the worker's own `workers`
//! row: a lease belongs to the worker, and a running task is leased while its worker's row
//! is fresh ([`leases`]), so a heartbeat never contends with a finish.

mod claim;
mod finish;
pub mod leases;

use std::sync::Arc;

use sqlx::PgPool;

use crate::dag::Dag;
pub use claim::{claim, next_retry_due, Claimed};
pub use finish::{
    fail_unreadable, finish, finish_many, is_retryable, Fence, Finish, FinishItem, Finished,
    HandOff,
};
pub use leases::{
    expired_leases, held_tries, register_worker, release_lease, requeue_strays, unregister_worker,
    worker_heartbeat, Expired, Held,
};

/// Locks runs' rows in id order: the first step of the lock order above, for a transaction
/// that then changes their task instances.
pub(crate) async fn lock_runs(tx: &mut sqlx::PgConnection, runs: &[i64]) -> sqlx::Result<()> {
    sqlx::query("SELECT id FROM dag_runs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(runs)
        .execute(tx)
        .await?;
    Ok(())
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
