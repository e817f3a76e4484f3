//! Reads for the web UI and REST API. Every page section is one query (no N+1): lists are
//! paginated in SQL and per-row details (recent runs, task states) come back as arrays or in
//! one `= ANY($1)` query for the whole page.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::runs::RunRow;
use crate::core::{RunState, TaskState};

/// Which DAGs a list shows. `text` matches dag_id or description, case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct DagFilter {
    pub tags: Vec<String>,
    pub text: Option<String>,
    pub paused: Option<bool>,
    /// false: also DAGs whose file is gone.
    pub only_active: bool,
    pub limit: i64,
    pub offset: i64,
}

/// A DAG as lists show it, with its most recent runs (newest first).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DagRow {
    pub dag_id: String,
    pub fileloc: String,
    pub is_active: bool,
    pub is_paused: bool,
    pub schedule: Option<String>,
    pub description: Option<String>,
    pub owners: String,
    pub tags: Vec<String>,
    pub max_active_runs: i32,
    pub max_active_tasks: i32,
    pub next_logical_date: Option<DateTime<Utc>>,
    pub next_interval_start: Option<DateTime<Utc>>,
    pub next_interval_end: Option<DateTime<Utc>>,
    /// `None` also when nothing more will be scheduled; see `schedule_ended`.
    pub next_run_after: Option<DateTime<Utc>>,
    /// No next run will come (the `end_date` passed, or an `@once` ran).
    pub schedule_ended: bool,
    pub end_date: Option<DateTime<Utc>>,
    pub last_parsed_at: DateTime<Utc>,
    pub has_import_errors: bool,
    pub recent_states: Vec<RunState>,
    pub recent_run_ids: Vec<String>,
}

/// `next_run_after` as in `super::dags::NEXT_RUN_COLUMNS` (never the unreadable 'infinity').
pub(crate) const DAG_COLUMNS: &str = "d.dag_id, d.fileloc, d.is_active, d.is_paused, d.schedule, d.description, d.owners, d.tags,
    d.max_active_runs, d.max_active_tasks, d.next_logical_date, d.next_interval_start, d.next_interval_end,
    CASE WHEN isfinite(d.next_run_after) THEN d.next_run_after END AS next_run_after,
    coalesce(d.next_run_after = 'infinity', false) AS schedule_ended, d.end_date, d.last_parsed_at,
    EXISTS (SELECT 1 FROM import_errors ie WHERE ie.filename = d.fileloc) AS has_import_errors,
    coalesce(r.states, '{}') AS recent_states, coalesce(r.run_ids, '{}') AS recent_run_ids";

/// The page's recent runs, newest first, at most `n` per DAG.
pub(crate) const RECENT_RUNS: &str = "LEFT JOIN LATERAL (
        SELECT array_agg(x.state ORDER BY x.id DESC) AS states, array_agg(x.run_id ORDER BY x.id DESC) AS run_ids
        FROM (SELECT id, state, run_id FROM dag_runs WHERE dag_id = d.dag_id ORDER BY id DESC LIMIT 10) x
    ) r ON true";

/// Escapes `%`, `_` and `\` so user text matches literally inside ILIKE.
pub fn like_pattern(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// One page of DAGs ordered by dag_id, and how many match in total.
pub async fn list_dags(pool: &PgPool, f: &DagFilter) -> sqlx::Result<(Vec<DagRow>, i64)> {
    let pattern = f
        .text
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(like_pattern);
    let where_clause = "($1::text[] = '{}' OR d.tags && $1) AND ($2::text IS NULL OR d.dag_id ILIKE $2 OR d.description ILIKE $2)
        AND ($3::bool IS NULL OR d.is_paused = $3) AND (d.is_active OR NOT $4)";
    let total: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM dags d WHERE {where_clause}"))
            .bind(&f.tags)
            .bind(&pattern)
            .bind(f.paused)
            .bind(f.only_active)
            .fetch_one(pool)
            .await?;
    let rows = sqlx::query_as::<_, DagRow>(&format!(
        "SELECT {DAG_COLUMNS} FROM (SELECT * FROM dags d WHERE {where_clause} ORDER BY d.dag_id LIMIT $5 OFFSET $6) d
         {RECENT_RUNS} ORDER BY d.dag_id"
    ))
    .bind(&f.tags)
    .bind(&pattern)
    .bind(f.paused)
    .bind(f.only_active)
    .bind(f.limit)
    .bind(f.offset)
    .fetch_all(pool)
    .await?;
    Ok((rows, total))
}

/// Every tag in use, for the tag filter.
pub async fn all_tags(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT DISTINCT t FROM dags, unnest(tags) t WHERE is_active ORDER BY t")
        .fetch_all(pool)
        .await
}

/// One DAG with its current version's spec and source and its file's import error, if any.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DagDetailRow {
    #[sqlx(flatten)]
    pub dag: DagRow,
    pub version_id: i64,
    pub spec: serde_json::Value,
    pub source: String,
    pub import_error: Option<String>,
}

pub async fn dag_detail(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<DagDetailRow>> {
    sqlx::query_as::<_, DagDetailRow>(&format!(
        "SELECT {DAG_COLUMNS}, d.version_id, v.spec, v.source, ie.message AS import_error
         FROM dags d JOIN dag_versions v ON v.id = d.version_id
         LEFT JOIN import_errors ie ON ie.filename = d.fileloc
         {RECENT_RUNS} WHERE d.dag_id = $1"
    ))
    .bind(dag_id)
    .fetch_optional(pool)
    .await
}

pub async fn dag_row(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<DagRow>> {
    sqlx::query_as::<_, DagRow>(&format!(
        "SELECT {DAG_COLUMNS} FROM dags d {RECENT_RUNS} WHERE d.dag_id = $1"
    ))
    .bind(dag_id)
    .fetch_optional(pool)
    .await
}

/// The spec (a `crate::dag::Dag` as JSON) of one version.
pub async fn version_spec(
    pool: &PgPool,
    version_id: i64,
) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar("SELECT spec FROM dag_versions WHERE id = $1")
        .bind(version_id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub id: i64,
    /// 1 for the DAG's first version.
    pub number: i64,
    pub hash: String,
    pub fileloc: String,
    pub created_at: DateTime<Utc>,
}

/// A DAG's versions, newest first.
pub async fn versions(pool: &PgPool, dag_id: &str, limit: i64) -> sqlx::Result<Vec<VersionRow>> {
    sqlx::query_as::<_, VersionRow>(
        "SELECT id, row_number() OVER (ORDER BY id) AS number, hash, fileloc, created_at
         FROM dag_versions WHERE dag_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(dag_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

const RUN_COLUMNS: &str =
    "id, dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end, run_after,
    state, conf, note, version_id, queued_at, start_date, end_date";

/// The order of a run list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    NewestFirst,
    OldestFirst,
}

/// Runs of one DAG (or every DAG when `dag_id` is None), and the total.
pub async fn list_runs(
    pool: &PgPool,
    dag_id: Option<&str>,
    order: RunOrder,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<RunRow>, i64)> {
    let dir = match order {
        RunOrder::NewestFirst => "DESC",
        RunOrder::OldestFirst => "ASC",
    };
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE $1::text IS NULL OR dag_id = $1")
            .bind(dag_id)
            .fetch_one(pool)
            .await?;
    let rows = sqlx::query_as::<_, RunRow>(&format!(
        "SELECT {RUN_COLUMNS} FROM dag_runs WHERE $1::text IS NULL OR dag_id = $1 ORDER BY id {dir} LIMIT $2 OFFSET $3"
    ))
    .bind(dag_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok((rows, total))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionInfo {
    pub id: i64,
    pub dag_id: String,
    pub number: i64,
    pub created_at: DateTime<Utc>,
}

/// Number and creation time of the given versions (for API run responses), in one query.
pub async fn version_infos(pool: &PgPool, ids: &[i64]) -> sqlx::Result<Vec<VersionInfo>> {
    sqlx::query_as::<_, VersionInfo>(
        "SELECT v.id, v.dag_id, v.created_at,
                (SELECT count(*) FROM dag_versions w WHERE w.dag_id = v.dag_id AND w.id <= v.id) AS number
         FROM dag_versions v WHERE v.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// (run pk, task_id, state) of every task instance of the given runs: the grid in one query.
pub async fn grid_states(
    pool: &PgPool,
    run_pks: &[i64],
) -> sqlx::Result<Vec<(i64, String, String)>> {
    sqlx::query_as("SELECT run_pk, task_id, state FROM task_instances WHERE run_pk = ANY($1)")
        .bind(run_pks)
        .fetch_all(pool)
        .await
}

/// A task instance located by its run and task id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TiRow {
    pub id: i64,
    pub run_pk: i64,
    pub version_id: i64,
    pub task_id: String,
    pub state: TaskState,
    pub try_number: i32,
    pub max_tries: i32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
}

pub async fn task_instance(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> sqlx::Result<Option<TiRow>> {
    sqlx::query_as::<_, TiRow>(
        "SELECT ti.id, ti.run_pk, r.version_id, ti.task_id, ti.state, ti.try_number, ti.max_tries, ti.start_date, ti.end_date
         FROM dag_runs r JOIN task_instances ti ON ti.run_pk = r.id
         WHERE r.dag_id = $1 AND r.run_id = $2 AND ti.task_id = $3",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .fetch_optional(pool)
    .await
}

/// The state and try number of a task instance, for live tails.
pub async fn ti_state(pool: &PgPool, ti_id: i64) -> sqlx::Result<Option<(TaskState, i32)>> {
    sqlx::query_as("SELECT state, try_number FROM task_instances WHERE id = $1")
        .bind(ti_id)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportErrorRow {
    /// Stable across reads: derived from the file name (the table's key).
    pub id: i64,
    pub filename: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

pub async fn import_errors(
    pool: &PgPool,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<ImportErrorRow>, i64)> {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM import_errors")
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query_as::<_, ImportErrorRow>(
        "SELECT ('x' || substr(md5(filename), 1, 13))::bit(52)::bigint AS id, filename, message, created_at
         FROM import_errors ORDER BY filename LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok((rows, total))
}

/// The newest scheduler heartbeat and its age in seconds (database clock).
pub async fn scheduler_heartbeat(pool: &PgPool) -> sqlx::Result<Option<(DateTime<Utc>, f64)>> {
    let row: (Option<DateTime<Utc>>, Option<f64>) = sqlx::query_as(
        "SELECT max(heartbeat_at), extract(epoch FROM now() - max(heartbeat_at))::float8 FROM scheduler_heartbeats",
    )
    .fetch_one(pool)
    .await?;
    Ok(row.0.zip(row.1))
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StateCounts {
    pub runs: Vec<(String, i64)>,
    pub tasks: Vec<(String, i64)>,
    /// Cumulative counts of `start_date - queued_at` for the last hour, per bucket bound in
    /// seconds, plus the total count and sum.
    pub handoff_buckets: Vec<(f64, i64)>,
    pub handoff_count: i64,
    pub handoff_sum: f64,
}

pub const HANDOFF_BOUNDS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub async fn state_counts(pool: &PgPool) -> sqlx::Result<StateCounts> {
    let runs = sqlx::query_as("SELECT state, count(*) FROM dag_runs GROUP BY state ORDER BY state")
        .fetch_all(pool)
        .await?;
    let tasks =
        sqlx::query_as("SELECT state, count(*) FROM task_instances GROUP BY state ORDER BY state")
            .fetch_all(pool)
            .await?;
    let (counts, count, sum): (Vec<i64>, i64, f64) = sqlx::query_as(
        "WITH x AS (SELECT extract(epoch FROM start_date - queued_at)::float8 AS s FROM task_instances
                    WHERE start_date > now() - interval '1 hour' AND queued_at IS NOT NULL)
         SELECT array(SELECT (SELECT count(*) FROM x WHERE s <= b) FROM unnest($1::float8[]) WITH ORDINALITY u(b, o) ORDER BY o),
                (SELECT count(*) FROM x), (SELECT coalesce(sum(s), 0)::float8 FROM x)",
    )
    .bind(HANDOFF_BOUNDS.to_vec())
    .fetch_one(pool)
    .await?;
    Ok(StateCounts {
        runs,
        tasks,
        handoff_buckets: HANDOFF_BOUNDS.iter().copied().zip(counts).collect(),
        handoff_count: count,
        handoff_sum: sum,
    })
}

/// Seeds the web benchmark with set-based statements: `dags` DAGs (spec from `spec` with the
/// id replaced), `runs_per_dag` runs each with one task instance per `task_ids`, and a
/// `log_lines`-line log (about 100 bytes a line) on one task instance, whose id is returned.
pub async fn bench_seed(
    pool: &PgPool,
    spec: &serde_json::Value,
    dags: i64,
    runs_per_dag: i64,
    task_ids: &[String],
    log_lines: i64,
) -> sqlx::Result<i64> {
    sqlx::query(
        "INSERT INTO dag_versions (dag_id, hash, spec, fileloc, source)
         SELECT id, md5(id), jsonb_set($1::jsonb, '{dag_id}', to_jsonb(id)), 'bench/' || id || '.yaml',
                'dag_id: ' || id || E'\\nschedule: \"@daily\"\\n'
         FROM (SELECT 'bench_dag_' || lpad(i::text, 4, '0') AS id FROM generate_series(1, $2) i) x",
    )
    .bind(spec)
    .bind(dags)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO dags (dag_id, version_id, fileloc, is_paused, schedule, description, owners, tags,
                           max_active_runs, max_active_tasks, next_logical_date, next_run_after)
         SELECT dag_id, id, fileloc, false, '@daily', 'Benchmark DAG ' || dag_id, 'bench',
                ARRAY['bench', 'team_' || (id % 10)], 16, 16, date_trunc('day', now()) + interval '1 day',
                date_trunc('day', now()) + interval '2 days'
         FROM dag_versions",
    )
    .execute(pool)
    .await?;
    // Oldest runs first, so ids grow with time as they would in production.
    sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, run_type, logical_date, data_interval_start, data_interval_end,
                               state, version_id, start_date, end_date)
         SELECT d.dag_id, 'scheduled__' || to_char(x.ld, 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+00:00', 'scheduled',
                x.ld, x.ld, x.ld + interval '1 day',
                CASE WHEN k = 1 THEN 'running' WHEN k % 7 = 0 THEN 'failed' ELSE 'success' END,
                d.version_id, x.ld + interval '1 day',
                CASE WHEN k = 1 THEN NULL ELSE x.ld + interval '1 day 4 min' END
         FROM dags d CROSS JOIN generate_series(1, $1) k
         CROSS JOIN LATERAL (SELECT date_trunc('day', now()) - k * interval '1 day' AS ld) x
         ORDER BY k DESC, d.dag_id",
    )
    .bind(runs_per_dag)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO task_instances (run_pk, dag_id, task_id, state, try_number, max_tries, upstream_total,
                                     queued_at, start_date, end_date)
         SELECT r.id, r.dag_id, t.task_id, s.state, CASE WHEN s.state = 'none' THEN 0 ELSE 1 END, 1,
                CASE WHEN t.o = 1 THEN 0 ELSE 1 END, r.start_date + (t.o - 1) * interval '20 s',
                CASE WHEN s.state = 'none' THEN NULL ELSE r.start_date + (t.o - 1) * interval '20 s' + interval '1 s' END,
                CASE WHEN s.state IN ('none', 'running') THEN NULL ELSE r.start_date + t.o * interval '20 s' END
         FROM dag_runs r CROSS JOIN unnest($1::text[]) WITH ORDINALITY t(task_id, o)
         CROSS JOIN LATERAL (SELECT CASE
             WHEN r.state = 'running' AND t.o > 5 THEN 'none'
             WHEN r.state = 'running' AND t.o = 5 THEN 'running'
             WHEN r.state = 'failed' AND t.o = 10 THEN 'failed'
             ELSE 'success' END AS state) s",
    )
    .bind(task_ids)
    .execute(pool)
    .await?;
    let ti: i64 = sqlx::query_scalar(
        "SELECT ti.id FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk
         WHERE r.dag_id = 'bench_dag_0500' AND ti.task_id = $1 ORDER BY r.id DESC LIMIT 1",
    )
    .bind(&task_ids[0])
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "INSERT INTO task_logs (ti_id, try_number, at, stream, line)
         SELECT $1, 1, now() - ($2 - g) * interval '1 ms', 'stdout',
                'INFO - processed record ' || lpad(g::text, 8, '0') || ' of the benchmark batch: ' || repeat('x', 52)
         FROM generate_series(1, $2) g",
    )
    .bind(ti)
    .bind(log_lines)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(ti)
}

/// (dag_id, run_id, task_id) of a task instance, for building its URLs.
pub async fn bench_log_location(
    pool: &PgPool,
    ti_id: i64,
) -> sqlx::Result<(String, String, String)> {
    sqlx::query_as(
        "SELECT r.dag_id, r.run_id, ti.task_id FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk WHERE ti.id = $1",
    )
    .bind(ti_id)
    .fetch_one(pool)
    .await
}
