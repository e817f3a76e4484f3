//! DAGs for `GET /dags` (filters on the DAG and on its latest run), tags, per-state run
//! counts, versions and source.

use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{push_order, push_page, Like, Page, Sort, TimeRange};
use crate::db::web::{DagRow, VersionRow, DAG_COLUMNS, RECENT_RUNS};

/// What `GET /dags` asks for.
#[derive(Debug, Clone, Default)]
pub struct DagQuery {
    pub tags: Vec<String>,
    /// `tags_match_mode=all`: every tag; otherwise any.
    pub tags_match_all: bool,
    /// Owner substrings, any of which matches (case-insensitive).
    pub owners: Vec<String>,
    /// Patterns on the DAG id (updraft's display name), all of which must match.
    pub patterns: Vec<Like>,
    /// `exclude_stale` (default true): only DAGs whose file is still there.
    pub exclude_stale: bool,
    pub paused: Option<bool>,
    pub has_import_errors: Option<bool>,
    /// States the latest run must have (`last_dag_run_state`, `dag_run_state`).
    pub last_run_states: Vec<String>,
    pub last_run_start: TimeRange,
    pub last_run_end: TimeRange,
    /// Match no DAG (a filter no DAG can pass, e.g. another bundle).
    pub match_none: bool,
    pub sort: Vec<Sort>,
    pub page: Page,
}

/// `order_by` fields of `GET /dags` and their columns.
pub const DAG_SORT: &[(&str, &str)] = &[
    ("dag_id", "d.dag_id"),
    ("dag_display_name", "d.dag_id"),
    ("next_dagrun", "d.next_logical_date"),
    ("last_run_state", "lr.state"),
    ("last_run_start_date", "lr.start_date"),
];

const LATEST_RUN: &str = " LEFT JOIN LATERAL (
        SELECT state, start_date, end_date FROM dag_runs WHERE dag_id = d.dag_id ORDER BY id DESC LIMIT 1
    ) lr ON true";

fn push_where(b: &mut QueryBuilder<'_, Postgres>, q: &DagQuery) {
    b.push(if q.match_none {
        " WHERE false"
    } else {
        " WHERE true"
    });
    if q.exclude_stale {
        b.push(" AND d.is_active");
    }
    if !q.tags.is_empty() {
        let op = if q.tags_match_all { "@>" } else { "&&" };
        b.push(format!(" AND d.tags {op} "))
            .push_bind(q.tags.clone())
            .push("::text[]");
    }
    if !q.owners.is_empty() {
        let owners: Vec<String> = q
            .owners
            .iter()
            .map(|o| format!("%{}%", super::literal(o)))
            .collect();
        b.push(" AND d.owners ILIKE ANY(")
            .push_bind(owners)
            .push("::text[])");
    }
    for p in &q.patterns {
        p.push(b, "d.dag_id");
    }
    if let Some(paused) = q.paused {
        b.push(" AND d.is_paused = ").push_bind(paused);
    }
    if let Some(has) = q.has_import_errors {
        b.push(if has { " AND " } else { " AND NOT " })
            .push("EXISTS (SELECT 1 FROM import_errors ie WHERE ie.filename = d.fileloc)");
    }
    super::push_any(b, "lr.state", &q.last_run_states);
    q.last_run_start.push(b, "lr.start_date");
    q.last_run_end.push(b, "lr.end_date");
}

/// One page of DAGs and how many match in all.
pub async fn list(pool: &PgPool, q: &DagQuery) -> sqlx::Result<(Vec<DagRow>, i64)> {
    let mut count = QueryBuilder::new(format!("SELECT count(*) FROM dags d{LATEST_RUN}"));
    push_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(format!(
        "SELECT {DAG_COLUMNS} FROM dags d{LATEST_RUN} {RECENT_RUNS}"
    ));
    push_where(&mut b, q);
    push_order(&mut b, &q.sort, DAG_SORT, "d.dag_id");
    push_page(&mut b, q.page);
    let rows = b.build_query_as::<DagRow>().fetch_all(pool).await?;
    Ok((rows, total))
}

/// Tags of live DAGs (`GET /dagTags`), by name, and how many there are.
pub async fn tags(
    pool: &PgPool,
    pattern: Option<&Like>,
    desc: bool,
    page: Page,
) -> sqlx::Result<(Vec<String>, i64)> {
    let base = "SELECT DISTINCT t AS name FROM dags d, unnest(d.tags) t WHERE d.is_active";
    let mut count = QueryBuilder::new(format!("SELECT count(*) FROM ({base}"));
    if let Some(p) = pattern {
        p.push(&mut count, "t");
    }
    count.push(") x");
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(base);
    if let Some(p) = pattern {
        p.push(&mut b, "t");
    }
    b.push(if desc {
        " ORDER BY name DESC"
    } else {
        " ORDER BY name"
    });
    push_page(&mut b, page);
    let rows = b.build_query_scalar().fetch_all(pool).await?;
    Ok((rows, total))
}

/// (dag_id, run state, count) for the given live DAGs (all when `None`), by DAG id.
pub async fn run_counts(
    pool: &PgPool,
    dag_ids: Option<&[String]>,
) -> sqlx::Result<Vec<(String, Option<String>, i64)>> {
    sqlx::query_as(
        "SELECT d.dag_id, r.state, count(r.id) FROM dags d LEFT JOIN dag_runs r ON r.dag_id = d.dag_id
         WHERE d.is_active AND ($1::text[] IS NULL OR d.dag_id = ANY($1))
         GROUP BY d.dag_id, r.state ORDER BY d.dag_id",
    )
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

/// `order_by` fields of `GET /dags/{dag_id}/dagVersions`.
pub const VERSION_SORT: &[(&str, &str)] = &[("id", "v.id"), ("version_number", "v.number")];

/// A DAG's versions (number 1 is the first), filtered by number, and the total.
pub async fn versions(
    pool: &PgPool,
    dag_id: &str,
    number: Option<i64>,
    sort: &[Sort],
    page: Page,
) -> sqlx::Result<(Vec<VersionRow>, i64)> {
    let base =
        "FROM (SELECT id, row_number() OVER (ORDER BY id) AS number, hash, fileloc, created_at
                FROM dag_versions WHERE dag_id = ";
    let mut count = QueryBuilder::new(format!("SELECT count(*) {base}"));
    count.push_bind(dag_id).push(") v WHERE true");
    let mut b = QueryBuilder::new(format!(
        "SELECT v.id, v.number, v.hash, v.fileloc, v.created_at {base}"
    ));
    b.push_bind(dag_id).push(") v WHERE true");
    if let Some(n) = number {
        count.push(" AND v.number = ").push_bind(n);
        b.push(" AND v.number = ").push_bind(n);
    }
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    push_order(&mut b, sort, VERSION_SORT, "v.id");
    push_page(&mut b, page);
    Ok((
        b.build_query_as::<VersionRow>().fetch_all(pool).await?,
        total,
    ))
}

/// One version by its number.
pub async fn version(pool: &PgPool, dag_id: &str, number: i64) -> sqlx::Result<Option<VersionRow>> {
    sqlx::query_as::<_, VersionRow>(
        "SELECT id, number, hash, fileloc, created_at FROM (
             SELECT id, row_number() OVER (ORDER BY id) AS number, hash, fileloc, created_at
             FROM dag_versions WHERE dag_id = $1) v
         WHERE number = $2",
    )
    .bind(dag_id)
    .bind(number)
    .fetch_optional(pool)
    .await
}

/// The stored spec of a DAG version, by its id.
pub async fn version_spec(pool: &PgPool, version_id: i64) -> sqlx::Result<serde_json::Value> {
    sqlx::query_scalar("SELECT spec FROM dag_versions WHERE id = $1")
        .bind(version_id)
        .fetch_one(pool)
        .await
}

/// A DAG's file content: of the given version number, or of the current version; with
/// the version's number.
pub async fn source(
    pool: &PgPool,
    dag_id: &str,
    number: Option<i64>,
) -> sqlx::Result<Option<(i64, String)>> {
    sqlx::query_as(
        "SELECT v.number, v.source FROM (
             SELECT id, row_number() OVER (ORDER BY id) AS number, source FROM dag_versions WHERE dag_id = $1
         ) v
         WHERE CASE WHEN $2::bigint IS NULL
                    THEN v.id = (SELECT version_id FROM dags WHERE dag_id = $1)
                    ELSE v.number = $2 END",
    )
    .bind(dag_id)
    .bind(number)
    .fetch_optional(pool)
    .await
}

/// `order_by` fields of `GET /importErrors`.
pub const IMPORT_ERROR_SORT: &[(&str, &str)] = &[
    ("id", "e.id"),
    ("import_error_id", "e.id"),
    ("timestamp", "e.created_at"),
    ("filename", "e.filename"),
    ("bundle_name", "e.filename"),
    ("stacktrace", "e.message"),
];

/// What `GET /importErrors` asks for.
#[derive(Debug, Clone, Default)]
pub struct ImportErrorQuery {
    pub id: Option<i64>,
    pub filename: Option<String>,
    pub filename_patterns: Vec<Like>,
    pub sort: Vec<Sort>,
    pub page: Page,
}

/// Import errors (their id is derived from the file name, the table's key) and the total.
pub async fn import_errors(
    pool: &PgPool,
    q: &ImportErrorQuery,
) -> sqlx::Result<(Vec<crate::db::web::ImportErrorRow>, i64)> {
    let base = "FROM (SELECT ('x' || substr(md5(filename), 1, 13))::bit(52)::bigint AS id, filename, message, created_at
                FROM import_errors) e WHERE true";
    let push = |b: &mut QueryBuilder<'_, Postgres>| {
        if let Some(id) = q.id {
            b.push(" AND e.id = ").push_bind(id);
        }
        if let Some(f) = &q.filename {
            b.push(" AND e.filename = ").push_bind(f.clone());
        }
        for p in &q.filename_patterns {
            p.push(b, "e.filename");
        }
    };
    let mut count = QueryBuilder::new(format!("SELECT count(*) {base}"));
    push(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(format!(
        "SELECT e.id, e.filename, e.message, e.created_at {base}"
    ));
    push(&mut b);
    push_order(&mut b, &q.sort, IMPORT_ERROR_SORT, "e.filename");
    push_page(&mut b, q.page);
    Ok((b.build_query_as().fetch_all(pool).await?, total))
}
