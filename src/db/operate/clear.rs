//! Clearing: task instances of one run, of every run in a logical-date range, or of every
//! run of a DAG run again as new tries (Airflow's `clear`). The try number goes on from the
//! last try and the task's retries apply afresh (Airflow bumps `max_tries` the same way);
//! each run goes back to `running` and is settled under its trigger rules.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::apply::{apply, Target};
use super::settle::Change;
use crate::core::TaskState;
use crate::dag::Dag;
use crate::db::tasks::SpecCache;

/// Which tasks of each run.
#[derive(Debug, Clone)]
pub enum Tasks {
    All,
    /// These task ids (ids the run's DAG version does not have are ignored).
    Ids(Vec<String>),
    /// Task ids this regular expression matches (anywhere in the id, as `airflow tasks clear -t`).
    Regex(regex::Regex),
}

/// Which runs of the DAG.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub run_id: Option<String>,
    /// Logical dates from (inclusive).
    pub start: Option<DateTime<Utc>>,
    /// Logical dates up to (inclusive).
    pub end: Option<DateTime<Utc>>,
}

/// What to clear.
#[derive(Debug, Clone)]
pub struct ClearRequest {
    pub dag_id: String,
    pub runs: RunFilter,
    pub tasks: Tasks,
    pub include_upstream: bool,
    pub include_downstream: bool,
    /// Only task instances that failed or are upstream_failed.
    pub only_failed: bool,
    /// Only running task instances (with `only_failed`: either).
    pub only_running: bool,
    pub dry_run: bool,
}

/// What a clear did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct Cleared {
    /// The task instances cleared, run by run.
    pub ti_ids: Vec<i64>,
    /// The runs that had something cleared.
    pub run_pks: Vec<i64>,
}

/// The tasks of `dag` that `tasks` names, with their upstream and downstream tasks as asked;
/// `None` for every task.
pub fn expand(
    dag: &Dag,
    tasks: &Tasks,
    upstream: bool,
    downstream: bool,
) -> Option<BTreeSet<String>> {
    let matched: Vec<&str> = match tasks {
        Tasks::All => return None,
        Tasks::Ids(ids) => dag
            .tasks
            .iter()
            .map(|t| t.task_id.as_str())
            .filter(|t| ids.iter().any(|i| i == t))
            .collect(),
        Tasks::Regex(re) => dag
            .tasks
            .iter()
            .map(|t| t.task_id.as_str())
            .filter(|t| re.is_match(t))
            .collect(),
    };
    let mut out: BTreeSet<String> = matched.iter().map(|t| t.to_string()).collect();
    for t in matched {
        if upstream {
            out.extend(
                crate::dag::graph::ancestors(dag, t)
                    .into_iter()
                    .map(|x| x.as_str().to_string()),
            );
        }
        if downstream {
            out.extend(
                crate::dag::graph::descendants(dag, t)
                    .into_iter()
                    .map(|x| x.as_str().to_string()),
            );
        }
    }
    Some(out)
}

/// The runs of a DAG a filter selects, oldest first: `(id, version_id)`.
pub async fn select_runs(
    pool: &PgPool,
    dag_id: &str,
    f: &RunFilter,
) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT id, version_id FROM dag_runs
         WHERE dag_id = $1 AND ($2::text IS NULL OR run_id = $2)
           AND ($3::timestamptz IS NULL OR logical_date >= $3)
           AND ($4::timestamptz IS NULL OR logical_date <= $4)
         ORDER BY logical_date, id",
    )
    .bind(dag_id)
    .bind(&f.run_id)
    .bind(f.start)
    .bind(f.end)
    .fetch_all(pool)
    .await
}

/// Clears what `req` selects, one transaction per run (in logical-date order).
pub async fn clear(pool: &PgPool, req: &ClearRequest) -> anyhow::Result<Cleared> {
    let specs = SpecCache::default();
    let mut out = Cleared::default();
    let (failed, running) = (req.only_failed, req.only_running);
    let pick = move |s: TaskState| -> Option<Change> {
        let wanted = match (failed, running) {
            (false, false) => s != TaskState::None,
            _ => {
                (failed && matches!(s, TaskState::Failed | TaskState::UpstreamFailed))
                    || (running && s == TaskState::Running)
            }
        };
        wanted.then_some(Change::Clear)
    };
    for (run_pk, version_id) in select_runs(pool, &req.dag_id, &req.runs).await? {
        let dag = specs.get(pool, version_id).await?;
        let ids = expand(
            &dag,
            &req.tasks,
            req.include_upstream,
            req.include_downstream,
        );
        let target = Target {
            task_ids: ids.as_ref(),
            pick: &pick,
            force_run: None,
            dry_run: req.dry_run,
        };
        let applied = apply(pool, run_pk, &dag, &target).await?;
        if !applied.ti_ids.is_empty() {
            out.run_pks.push(run_pk);
            out.ti_ids.extend(applied.ti_ids);
        }
    }
    Ok(out)
}
