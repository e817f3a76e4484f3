//! Marking task instances and runs by hand, and deleting runs.
//!
//! Marking a task sets its state (and, as asked, its upstream and downstream tasks'); the
//! tasks after it then react by their trigger rules, as if it had ended that way. Marking a
//! run does what Airflow's does: `success` marks every task that has not succeeded success;
//! `failed` fails the running tasks and skips the unfinished ones; `queued` runs the whole run
//! again (updraft clears every task; Airflow only resets the run's state).

use sqlx::PgPool;

use super::apply::{apply, Applied, Target};
use super::clear::{expand, Tasks};
use super::settle::Change;
use crate::core::{RunState, TaskState};
use crate::db::tasks::SpecCache;

/// Marking task instances of one run.
#[derive(Debug, Clone)]
pub struct MarkRequest {
    pub run_pk: i64,
    pub version_id: i64,
    pub task_ids: Vec<String>,
    /// `success`, `failed` or `skipped`.
    pub state: TaskState,
    pub include_upstream: bool,
    pub include_downstream: bool,
    pub dry_run: bool,
}

/// Task states an operator may set.
pub const MARKABLE: [TaskState; 3] = [TaskState::Success, TaskState::Failed, TaskState::Skipped];

/// Sets the chosen task instances' state; returns those that change (dry: would change).
pub async fn mark_tasks(pool: &PgPool, req: &MarkRequest) -> anyhow::Result<Applied> {
    anyhow::ensure!(
        MARKABLE.contains(&req.state),
        "a task instance can be marked success, failed or skipped, not {}",
        req.state
    );
    let dag = SpecCache::default().get(pool, req.version_id).await?;
    let ids = expand(
        &dag,
        &Tasks::Ids(req.task_ids.clone()),
        req.include_upstream,
        req.include_downstream,
    );
    let to = req.state;
    let pick = move |s: TaskState| (s != to).then_some(Change::Set(to));
    let target = Target {
        task_ids: ids.as_ref(),
        pick: &pick,
        force_run: None,
        dry_run: req.dry_run,
    };
    Ok(apply(pool, req.run_pk, &dag, &target).await?)
}

/// A whole run's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMark {
    pub run_pk: i64,
    pub version_id: i64,
    pub state: RunState,
    /// Only say which task instances would change.
    pub dry_run: bool,
}

/// Marks a run success, failed or queued (see the module docs).
pub async fn mark_run(pool: &PgPool, m: RunMark) -> anyhow::Result<Applied> {
    let dag = SpecCache::default().get(pool, m.version_id).await?;
    let success =
        |s: TaskState| (s != TaskState::Success).then_some(Change::Set(TaskState::Success));
    let failed = |s: TaskState| match s {
        TaskState::Running => Some(Change::Set(TaskState::Failed)),
        s if s.is_unfinished() => Some(Change::Set(TaskState::Skipped)),
        _ => None,
    };
    let again = |s: TaskState| (s != TaskState::None).then_some(Change::Clear);
    let (pick, force_run): (&(dyn Fn(TaskState) -> Option<Change> + Sync), _) = match m.state {
        RunState::Success => (&success, Some(RunState::Success)),
        RunState::Failed => (&failed, Some(RunState::Failed)),
        RunState::Queued => (&again, None),
        RunState::Running => anyhow::bail!("a run can be marked success, failed or queued"),
    };
    let target = Target {
        task_ids: None,
        pick,
        force_run,
        dry_run: m.dry_run,
    };
    Ok(apply(pool, m.run_pk, &dag, &target).await?)
}

/// Deletes a run with its task instances, logs and XComs (they cascade). Running tries
/// lose their run, so their workers stop them at the next lease check.
pub async fn delete_run(pool: &PgPool, run_pk: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM dag_runs WHERE id = $1 FOR UPDATE")
        .bind(run_pk)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM dag_runs WHERE id = $1")
        .bind(run_pk)
        .execute(&mut *tx)
        .await?;
    crate::db::notify(&mut *tx, crate::db::SCHEDULER_CHANNEL).await?;
    tx.commit().await?;
    Ok(true)
}
