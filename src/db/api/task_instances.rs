//! Task instances for the REST API (lists with Airflow's filters, one instance, its tries)
//! and XCom entries. A task's pool, queue and operator live in the DAG version its run is
//! pinned to, so they are read from that version's stored spec.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{push_any, push_order, push_page, Like, Page, Range, Sort, TimeRange};
use crate::core::TaskState;

/// A task instance with its run and task fields, as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TiApiRow {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_pk: i64,
    pub version_id: i64,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub logical_date: DateTime<Utc>,
    pub run_after: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub pool: String,
    pub queue: String,
    /// The operator's class name (`BashOperator`), as Airflow's `operator`.
    pub operator: Option<String>,
    pub version_number: i64,
    pub note: Option<String>,
}

const FROM: &str = " FROM task_instances ti
    JOIN dag_runs r ON r.id = ti.run_pk
    JOIN dag_versions v ON v.id = r.version_id
    LEFT JOIN LATERAL (
        SELECT t FROM jsonb_array_elements(v.spec->'tasks') t WHERE t->>'task_id' = ti.task_id LIMIT 1
    ) ts ON true";

const COLUMNS: &str = "ti.id, r.dag_id, r.run_id, ti.run_pk, r.version_id, ti.task_id, ti.state, ti.try_number,
    ti.max_tries, ti.start_date, ti.end_date, ti.hostname, ti.queued_at, r.logical_date, r.run_after,
    r.data_interval_start, r.data_interval_end,
    coalesce(ts.t->>'pool', 'default_pool') AS pool, coalesce(ts.t->>'queue', 'default') AS queue,
    regexp_replace(ts.t->>'uses', '^.*\\.', '') AS operator,
    (SELECT count(*) FROM dag_versions w WHERE w.dag_id = r.dag_id AND w.id <= r.version_id) AS version_number,
    ti.note";

/// What a task instance list asks for.
#[derive(Debug, Clone, Default)]
pub struct TiQuery {
    /// `None`: every DAG (`~`).
    pub dag_ids: Option<Vec<String>>,
    /// `None`: every run (`~`).
    pub run_ids: Option<Vec<String>>,
    pub task_ids: Vec<String>,
    /// updraft's state names (`none` for a task not yet looked at).
    pub states: Vec<String>,
    pub pools: Vec<String>,
    pub queues: Vec<String>,
    pub operators: Vec<String>,
    pub try_numbers: Vec<i32>,
    /// Map indexes asked for; updraft's are all -1, so a list without -1 matches nothing.
    pub map_indexes: Vec<i64>,
    pub version_numbers: Vec<i64>,
    pub task_patterns: Vec<Like>,
    pub dag_id_patterns: Vec<Like>,
    pub run_id_patterns: Vec<Like>,
    pub pool_patterns: Vec<Like>,
    pub queue_patterns: Vec<Like>,
    pub operator_patterns: Vec<Like>,
    pub logical_date: TimeRange,
    pub run_after: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub duration: Range<f64>,
    pub sort: Vec<Sort>,
    pub page: Page,
}

/// `order_by` fields of task instance lists and their columns.
pub const TI_SORT: &[(&str, &str)] = &[
    ("id", "ti.id"),
    ("state", "ti.state"),
    ("duration", "(ti.end_date - ti.start_date)"),
    ("start_date", "ti.start_date"),
    ("end_date", "ti.end_date"),
    ("map_index", "ti.id"),
    ("try_number", "ti.try_number"),
    ("logical_date", "r.logical_date"),
    ("run_after", "r.run_after"),
    ("data_interval_start", "r.data_interval_start"),
    ("data_interval_end", "r.data_interval_end"),
    ("rendered_map_index", "ti.id"),
    ("operator", "(ts.t->>'uses')"),
    ("task_id", "ti.task_id"),
    ("dag_id", "r.dag_id"),
    ("run_id", "r.run_id"),
];

fn push_where(b: &mut QueryBuilder<'_, Postgres>, q: &TiQuery) {
    b.push(" WHERE true");
    if let Some(ids) = &q.dag_ids {
        b.push(" AND r.dag_id = ANY(")
            .push_bind(ids.clone())
            .push("::text[])");
    }
    if let Some(ids) = &q.run_ids {
        b.push(" AND r.run_id = ANY(")
            .push_bind(ids.clone())
            .push("::text[])");
    }
    push_any(b, "ti.task_id", &q.task_ids);
    push_any(b, "ti.state", &q.states);
    push_any(b, "coalesce(ts.t->>'pool', 'default_pool')", &q.pools);
    push_any(b, "coalesce(ts.t->>'queue', 'default')", &q.queues);
    push_any(
        b,
        "regexp_replace(ts.t->>'uses', '^.*\\.', '')",
        &q.operators,
    );
    if !q.try_numbers.is_empty() {
        b.push(" AND ti.try_number = ANY(")
            .push_bind(q.try_numbers.clone())
            .push("::int[])");
    }
    if !q.map_indexes.is_empty() && !q.map_indexes.contains(&-1) {
        b.push(" AND false");
    }
    if !q.version_numbers.is_empty() {
        b.push(
            " AND (SELECT count(*) FROM dag_versions w WHERE w.dag_id = r.dag_id AND w.id <= r.version_id) = ANY(",
        )
        .push_bind(q.version_numbers.clone())
        .push("::bigint[])");
    }
    for (patterns, column) in [
        (&q.task_patterns, "ti.task_id"),
        (&q.dag_id_patterns, "r.dag_id"),
        (&q.run_id_patterns, "r.run_id"),
        (&q.pool_patterns, "coalesce(ts.t->>'pool', 'default_pool')"),
        (&q.queue_patterns, "coalesce(ts.t->>'queue', 'default')"),
        (&q.operator_patterns, "(ts.t->>'uses')"),
    ] {
        for p in patterns {
            p.push(b, column);
        }
    }
    q.logical_date.push(b, "r.logical_date");
    q.run_after.push(b, "r.run_after");
    q.start_date.push(b, "ti.start_date");
    q.end_date.push(b, "ti.end_date");
    q.duration
        .push(b, "extract(epoch FROM ti.end_date - ti.start_date)::float8");
}

/// One page of task instances and how many match in all.
pub async fn list(pool: &PgPool, q: &TiQuery) -> sqlx::Result<(Vec<TiApiRow>, i64)> {
    let mut count = QueryBuilder::new(format!("SELECT count(*){FROM}"));
    push_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(format!("SELECT {COLUMNS}{FROM}"));
    push_where(&mut b, q);
    push_order(&mut b, &q.sort, TI_SORT, "ti.id");
    push_page(&mut b, q.page);
    Ok((b.build_query_as::<TiApiRow>().fetch_all(pool).await?, total))
}

/// One task instance of a run.
pub async fn get(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> sqlx::Result<Option<TiApiRow>> {
    let q = TiQuery {
        dag_ids: Some(vec![dag_id.to_string()]),
        run_ids: Some(vec![run_id.to_string()]),
        task_ids: vec![task_id.to_string()],
        page: Page {
            limit: 1,
            offset: 0,
        },
        ..Default::default()
    };
    Ok(list(pool, &q).await?.0.into_iter().next())
}

/// Task instances by id, in logical-date and task order (what a clear or a mark changed).
pub async fn by_ids(pool: &PgPool, ids: &[i64]) -> sqlx::Result<Vec<TiApiRow>> {
    sqlx::query_as::<_, TiApiRow>(&format!(
        "SELECT {COLUMNS}{FROM} WHERE ti.id = ANY($1) ORDER BY r.logical_date, r.id, ti.task_id"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// A try of a task instance, as far as updraft records tries: its log's first and last line.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TryRow {
    pub try_number: i32,
    pub first_line: Option<DateTime<Utc>>,
    pub last_line: Option<DateTime<Utc>>,
}

/// Every try of a task instance that wrote a log line, oldest first.
pub async fn tries(pool: &PgPool, ti_id: i64) -> sqlx::Result<Vec<TryRow>> {
    sqlx::query_as(
        "SELECT try_number, min(at) AS first_line, max(at) AS last_line
         FROM task_logs WHERE ti_id = $1 GROUP BY try_number ORDER BY try_number",
    )
    .bind(ti_id)
    .fetch_all(pool)
    .await
}

/// An XCom entry with its run's dates.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct XComRow {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub key: String,
    pub value: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub logical_date: DateTime<Utc>,
    pub run_after: DateTime<Utc>,
}

/// What an XCom list asks for.
#[derive(Debug, Clone, Default)]
pub struct XComQuery {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub key: Option<String>,
    pub key_patterns: Vec<Like>,
    pub dag_id_patterns: Vec<Like>,
    pub run_id_patterns: Vec<Like>,
    pub task_id_patterns: Vec<Like>,
    pub logical_date: TimeRange,
    pub run_after: TimeRange,
    pub map_indexes: Vec<i64>,
    pub sort: Vec<Sort>,
    pub page: Page,
}

/// `order_by` fields of XCom lists.
pub const XCOM_SORT: &[(&str, &str)] = &[
    ("key", "x.key"),
    ("dag_id", "r.dag_id"),
    ("run_id", "r.run_id"),
    ("task_id", "x.task_id"),
    ("map_index", "x.task_id"),
    ("timestamp", "x.created_at"),
    ("run_after", "r.run_after"),
];

fn push_xcom_where(b: &mut QueryBuilder<'_, Postgres>, q: &XComQuery) {
    b.push(" WHERE true");
    for (v, column) in [
        (&q.dag_id, "r.dag_id"),
        (&q.run_id, "r.run_id"),
        (&q.task_id, "x.task_id"),
        (&q.key, "x.key"),
    ] {
        if let Some(v) = v {
            b.push(format!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    for (patterns, column) in [
        (&q.key_patterns, "x.key"),
        (&q.dag_id_patterns, "r.dag_id"),
        (&q.run_id_patterns, "r.run_id"),
        (&q.task_id_patterns, "x.task_id"),
    ] {
        for p in patterns {
            p.push(b, column);
        }
    }
    if !q.map_indexes.is_empty() && !q.map_indexes.contains(&-1) {
        b.push(" AND false");
    }
    q.logical_date.push(b, "r.logical_date");
    q.run_after.push(b, "r.run_after");
}

/// One page of XCom entries and how many match in all.
pub async fn xcoms(pool: &PgPool, q: &XComQuery) -> sqlx::Result<(Vec<XComRow>, i64)> {
    let from = " FROM xcom x JOIN dag_runs r ON r.id = x.run_pk";
    let mut count = QueryBuilder::new(format!("SELECT count(*){from}"));
    push_xcom_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(format!(
        "SELECT r.dag_id, r.run_id, x.task_id, x.key, x.value, x.created_at, r.logical_date, r.run_after{from}"
    ));
    push_xcom_where(&mut b, q);
    let sort = if q.sort.is_empty() {
        vec![
            super::Sort {
                field: "dag_id",
                desc: false,
            },
            super::Sort {
                field: "task_id",
                desc: false,
            },
            super::Sort {
                field: "run_id",
                desc: false,
            },
            super::Sort {
                field: "key",
                desc: false,
            },
        ]
    } else {
        q.sort.clone()
    };
    push_order(&mut b, &sort, XCOM_SORT, "x.created_at");
    push_page(&mut b, q.page);
    Ok((b.build_query_as::<XComRow>().fetch_all(pool).await?, total))
}
