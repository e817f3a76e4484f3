//! DAG runs for `GET /dags/{dag_id}/dagRuns` and `POST /dags/~/dagRuns/list`.

use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{push_any, push_order, push_page, Like, Page, Range, Sort, TimeRange};
use crate::db::runs::RunRow;

/// What a run list asks for.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// `None`: every DAG (`~`).
    pub dag_ids: Option<Vec<String>>,
    /// Airflow's state names (`queued`, `running`, `success`, `failed`).
    pub states: Vec<String>,
    /// Airflow's run type names (`scheduled`, `manual`, `backfill`).
    pub run_types: Vec<String>,
    pub run_id_patterns: Vec<Like>,
    pub dag_id_patterns: Vec<Like>,
    pub logical_date: TimeRange,
    pub run_after: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    /// Seconds between start and end.
    pub duration: Range<f64>,
    /// `conf_contains`: the conf's JSON text contains this (case-sensitive).
    pub conf_contains: Option<String>,
    /// Version numbers the run is pinned to.
    pub dag_versions: Vec<i64>,
    pub sort: Vec<Sort>,
    pub page: Page,
}

/// `order_by` fields of the run lists and their columns.
pub const RUN_SORT: &[(&str, &str)] = &[
    ("id", "r.id"),
    ("state", "r.state"),
    ("dag_id", "r.dag_id"),
    ("run_id", "r.run_id"),
    ("dag_run_id", "r.run_id"),
    ("logical_date", "r.logical_date"),
    ("run_after", "r.run_after"),
    ("start_date", "r.start_date"),
    ("end_date", "r.end_date"),
    ("duration", "(r.end_date - r.start_date)"),
    ("conf", "r.conf::text"),
];

const COLUMNS: &str = "r.id, r.dag_id, r.run_id, r.run_type, r.logical_date, r.data_interval_start,
    r.data_interval_end, r.run_after, r.state, r.conf, r.note, r.version_id, r.queued_at, r.start_date, r.end_date";

fn push_where(b: &mut QueryBuilder<'_, Postgres>, q: &RunQuery) {
    b.push(" WHERE true");
    if let Some(ids) = &q.dag_ids {
        b.push(" AND r.dag_id = ANY(")
            .push_bind(ids.clone())
            .push("::text[])");
    }
    push_any(b, "r.state", &q.states);
    push_any(b, "r.run_type", &q.run_types);
    for p in &q.run_id_patterns {
        p.push(b, "r.run_id");
    }
    for p in &q.dag_id_patterns {
        p.push(b, "r.dag_id");
    }
    q.logical_date.push(b, "r.logical_date");
    q.run_after.push(b, "r.run_after");
    q.start_date.push(b, "r.start_date");
    q.end_date.push(b, "r.end_date");
    q.duration
        .push(b, "extract(epoch FROM r.end_date - r.start_date)::float8");
    if let Some(text) = &q.conf_contains {
        b.push(" AND strpos(r.conf::text, ")
            .push_bind(text.clone())
            .push(") > 0");
    }
    if !q.dag_versions.is_empty() {
        b.push(
            " AND (SELECT count(*) FROM dag_versions w WHERE w.dag_id = r.dag_id AND w.id <= r.version_id) = ANY(",
        )
        .push_bind(q.dag_versions.clone())
        .push("::bigint[])");
    }
}

/// One page of runs and how many match in all.
pub async fn list(pool: &PgPool, q: &RunQuery) -> sqlx::Result<(Vec<RunRow>, i64)> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM dag_runs r");
    push_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(format!("SELECT {COLUMNS} FROM dag_runs r"));
    push_where(&mut b, q);
    push_order(&mut b, &q.sort, RUN_SORT, "r.id");
    push_page(&mut b, q.page);
    Ok((b.build_query_as::<RunRow>().fetch_all(pool).await?, total))
}
