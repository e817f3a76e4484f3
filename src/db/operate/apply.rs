//! One run's change in one transaction: lock the run, then its task instances by
//! `task_id`; pick the targets; settle; write the rows and the run; wake whoever has work.

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;

use super::settle::{settle, Change, Current};
use crate::core::{RunState, TaskState};
use crate::dag::Dag;
use crate::db::{SCHEDULER_CHANNEL, WORKER_CHANNEL};

/// Which task instances of a run to change, and how.
pub struct Target<'a> {
    /// The tasks (with their upstream/downstream already added); `None`: every task.
    pub task_ids: Option<&'a BTreeSet<String>>,
    /// The change for a task instance in a state; `None` leaves it alone.
    pub pick: &'a (dyn Fn(TaskState) -> Option<Change> + Sync),
    /// The run's state afterwards, whatever its tasks say (marking a whole run); its tasks
    /// must all be finished by then.
    pub force_run: Option<RunState>,
    /// Only say which task instances would change.
    pub dry_run: bool,
}

/// What a change did to one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The task instances the operator's change applies to (not those it cascaded to).
    pub ti_ids: Vec<i64>,
    /// The run's state afterwards (`None`: the run has no task instances yet, or dry run).
    pub run_state: Option<RunState>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    task_id: String,
    state: TaskState,
    up_success: i32,
    up_failed: i32,
    up_skipped: i32,
    up_upstream_failed: i32,
}

/// Applies `target` to the run `run_pk` (pinned to `dag`). A run whose tasks were never
/// created (still queued) has nothing to change.
pub async fn apply(
    pool: &PgPool,
    run_pk: i64,
    dag: &Dag,
    target: &Target<'_>,
) -> sqlx::Result<Applied> {
    let mut tx = pool.begin().await?;
    let run: Option<RunState> =
        sqlx::query_scalar("SELECT state FROM dag_runs WHERE id = $1 FOR UPDATE")
            .bind(run_pk)
            .fetch_optional(&mut *tx)
            .await?;
    if run.is_none() {
        return Ok(Applied::default());
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, task_id, state, up_success, up_failed, up_skipped, up_upstream_failed
         FROM task_instances WHERE run_pk = $1 ORDER BY task_id FOR UPDATE",
    )
    .bind(run_pk)
    .fetch_all(&mut *tx)
    .await?;
    let chosen: Vec<(&Row, Change)> = rows
        .iter()
        .filter(|r| target.task_ids.is_none_or(|ids| ids.contains(&r.task_id)))
        .filter_map(|r| (target.pick)(r.state).map(|c| (r, c)))
        .collect();
    let ti_ids: Vec<i64> = chosen.iter().map(|(r, _)| r.id).collect();
    if target.dry_run || (chosen.is_empty() && target.force_run.is_none()) {
        return Ok(Applied {
            ti_ids,
            run_state: None,
        });
    }
    let changes: HashMap<String, Change> = chosen
        .iter()
        .map(|(r, c)| (r.task_id.clone(), *c))
        .collect();
    let current: Vec<Current> = rows
        .iter()
        .map(|r| Current {
            id: r.id,
            task_id: r.task_id.clone(),
            state: r.state,
            counts: [
                r.up_success,
                r.up_failed,
                r.up_skipped,
                r.up_upstream_failed,
            ],
        })
        .collect();
    let mut settled = settle(dag, &current, &changes);
    if let Some(forced) = target.force_run {
        settled.run_state = forced;
    }
    let w = &settled.writes;
    let retries: Vec<i32> = w
        .iter()
        .map(|x| {
            dag.task(&x.task_id)
                .map_or(0, |t| i32::try_from(t.retries).unwrap_or(i32::MAX))
        })
        .collect();
    let count = |i: usize| w.iter().map(|x| x.counts[i]).collect::<Vec<i32>>();
    sqlx::query(
        "UPDATE task_instances t SET
            state = x.state,
            up_success = x.s, up_failed = x.f, up_skipped = x.k, up_upstream_failed = x.u,
            max_tries = CASE WHEN x.why = 'cleared' THEN t.try_number + x.retries ELSE t.max_tries END,
            lease_owner = CASE WHEN x.why IN ('cleared', 'marked') THEN NULL ELSE t.lease_owner END,
            start_date = CASE WHEN x.why = 'cleared' THEN NULL ELSE t.start_date END,
            end_date = CASE WHEN x.state IN ('none', 'queued') THEN NULL
                            WHEN x.state = t.state THEN t.end_date ELSE now() END,
            queued_at = CASE WHEN x.state = 'queued' AND t.state <> 'queued' THEN now()
                             WHEN x.state = 'none' THEN NULL ELSE t.queued_at END,
            not_before = CASE WHEN x.state = 'queued' AND t.state <> 'queued' THEN now()
                              WHEN x.state = 'none' THEN '-infinity' ELSE t.not_before END
         FROM UNNEST($1::bigint[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[],
                     $7::text[], $8::int[]) AS x(id, state, s, f, k, u, why, retries)
         WHERE t.id = x.id",
    )
    .bind(w.iter().map(|x| x.id).collect::<Vec<i64>>())
    .bind(w.iter().map(|x| x.state.as_str()).collect::<Vec<&str>>())
    .bind(count(0))
    .bind(count(1))
    .bind(count(2))
    .bind(count(3))
    .bind(w.iter().map(|x| x.why.as_str()).collect::<Vec<&str>>())
    .bind(&retries)
    .execute(&mut *tx)
    .await?;
    let timeout = dag.dagrun_timeout.map(|d| d.pg_interval_micros());
    let (before, after): (RunState, RunState) = sqlx::query_as(
        "WITH old AS (SELECT state FROM dag_runs WHERE id = $1)
         UPDATE dag_runs SET state = $2, unfinished_tasks = $3,
            start_date = coalesce(start_date, now()),
            end_date = CASE WHEN $2 IN ('success', 'failed')
                            THEN CASE WHEN state = $2 THEN coalesce(end_date, now()) ELSE now() END END,
            timeout_at = CASE WHEN state IN ('success', 'failed') AND $2 = 'running'
                              THEN now() + $4 * interval '1 microsecond' ELSE timeout_at END
         WHERE id = $1
         RETURNING (SELECT state FROM old), state",
    )
    .bind(run_pk)
    .bind(settled.run_state)
    .bind(settled.unfinished)
    .bind(timeout)
    .fetch_one(&mut *tx)
    .await?;
    if w.iter().any(|x| x.state == TaskState::Queued) {
        crate::db::notify(&mut *tx, WORKER_CHANNEL).await?;
    }
    if before != after {
        crate::db::notify(&mut *tx, SCHEDULER_CHANNEL).await?;
    }
    tx.commit().await?;
    Ok(Applied {
        ti_ids,
        run_state: Some(after),
    })
}
