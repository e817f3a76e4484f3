//! DAGs, their versions and import errors: written by the DAG processor (sync from the
//! folder), read by the scheduler, CLI, API and UI.

use std::collections::BTreeMap;

use sqlx::PgPool;

use crate::dag::{DagBag, DagError, LoadedDag};

/// What one sync changed, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub new_versions: usize,
    pub deactivated: usize,
    pub import_errors: usize,
}

/// Stores the folder's state: one `dag_versions` row per distinct spec, the `dags` row
/// pointing at the current version, import errors replaced by the current ones, and DAGs
/// whose file is gone marked inactive. `known` maps dag_id → hash of the last synced version
/// so that unchanged DAGs cost nothing; pass an empty map the first time.
pub async fn sync_bag(
    pool: &PgPool,
    bag: &DagBag,
    known: &mut BTreeMap<String, String>,
) -> anyhow::Result<SyncReport> {
    let mut report = SyncReport::default();
    for (dag_id, loaded) in &bag.dags {
        if known.get(dag_id.as_str()) == Some(&loaded.hash) {
            continue;
        }
        if upsert_dag(pool, loaded).await? {
            report.new_versions += 1;
        }
        known.insert(dag_id.to_string(), loaded.hash.clone());
    }
    let present: Vec<String> = bag.dags.keys().map(|d| d.to_string()).collect();
    let gone = sqlx::query_scalar::<_, String>(
        "UPDATE dags SET is_active = false WHERE is_active AND NOT (dag_id = ANY($1)) RETURNING dag_id",
    )
    .bind(&present)
    .fetch_all(pool)
    .await?;
    for dag_id in &gone {
        known.remove(dag_id);
    }
    report.deactivated = gone.len();

    let mut tx = pool.begin().await?;
    let files: Vec<String> = bag.errors.keys().cloned().collect();
    sqlx::query("DELETE FROM import_errors WHERE NOT (filename = ANY($1))")
        .bind(&files)
        .execute(&mut *tx)
        .await?;
    for (file, errors) in &bag.errors {
        let message = errors
            .iter()
            .map(DagError::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        sqlx::query(
            "INSERT INTO import_errors (filename, message, errors) VALUES ($1, $2, $3)
             ON CONFLICT (filename) DO UPDATE SET message = EXCLUDED.message, errors = EXCLUDED.errors,
               created_at = CASE WHEN import_errors.message = EXCLUDED.message THEN import_errors.created_at ELSE now() END",
        )
        .bind(file)
        .bind(&message)
        .bind(serde_json::to_value(errors)?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    report.import_errors = bag.errors.len();
    Ok(report)
}

/// Inserts the version if new and points the DAG at it. Returns true when the version is new.
async fn upsert_dag(pool: &PgPool, loaded: &LoadedDag) -> anyhow::Result<bool> {
    let dag = &loaded.dag;
    let mut tx = pool.begin().await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO dag_versions (dag_id, hash, spec, fileloc, source) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (dag_id, hash) DO NOTHING RETURNING id",
    )
    .bind(dag.dag_id.as_str())
    .bind(&loaded.hash)
    .bind(crate::dag::spec::to_stored(dag))
    .bind(&loaded.fileloc)
    .bind(&loaded.source)
    .fetch_optional(&mut *tx)
    .await?;
    let version_id: i64 = match inserted {
        Some(id) => id,
        None => {
            sqlx::query_scalar("SELECT id FROM dag_versions WHERE dag_id = $1 AND hash = $2")
                .bind(dag.dag_id.as_str())
                .bind(&loaded.hash)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    // A changed schedule or start date invalidates the planned next run: the scheduler
    // recomputes it when next_run_after is NULL.
    sqlx::query(
        "INSERT INTO dags (dag_id, version_id, fileloc, is_active, is_paused, schedule, description, owners, tags,
                           max_active_runs, max_active_tasks, end_date, last_parsed_at)
         VALUES ($1, $2, $3, true, $4, $5, $6, $7, $8, $9, $10, $11, now())
         ON CONFLICT (dag_id) DO UPDATE SET
           version_id = EXCLUDED.version_id, fileloc = EXCLUDED.fileloc, is_active = true,
           schedule = EXCLUDED.schedule, description = EXCLUDED.description, owners = EXCLUDED.owners,
           tags = EXCLUDED.tags, max_active_runs = EXCLUDED.max_active_runs,
           max_active_tasks = EXCLUDED.max_active_tasks, end_date = EXCLUDED.end_date, last_parsed_at = now(),
           next_logical_date = NULL, next_interval_start = NULL, next_interval_end = NULL, next_run_after = NULL",
    )
    .bind(dag.dag_id.as_str())
    .bind(version_id)
    .bind(&loaded.fileloc)
    .bind(dag.is_paused_upon_creation.unwrap_or(false))
    .bind(dag.schedule.display())
    .bind(&dag.description)
    .bind(dag.owners())
    .bind(&dag.tags)
    .bind(dag.max_active_runs as i32)
    .bind(dag.max_active_tasks as i32)
    .bind(dag.end_date)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(inserted.is_some())
}

/// Pauses or unpauses a DAG. Returns false when there is no such DAG.
pub async fn set_paused(pool: &PgPool, dag_id: &str, paused: bool) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE dags SET is_paused = $2,
           -- Unpausing plans afresh, so a catchup: false DAG does not get the run it missed.
           next_logical_date = CASE WHEN $2 THEN next_logical_date END,
           next_interval_start = CASE WHEN $2 THEN next_interval_start END,
           next_interval_end = CASE WHEN $2 THEN next_interval_end END,
           next_run_after = CASE WHEN $2 THEN next_run_after END
         WHERE dag_id = $1",
    )
    .bind(dag_id)
    .bind(paused)
    .execute(pool)
    .await?
    .rows_affected();
    if n > 0 && !paused {
        // Queued runs may start now.
        super::notify_scheduler(pool).await?;
    }
    Ok(n > 0)
}

/// Whether the DAG is paused; `None` when there is no such DAG.
pub async fn is_paused(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("SELECT is_paused FROM dags WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
}

/// One line of `dags list`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DagSummary {
    pub dag_id: String,
    pub fileloc: String,
    pub is_paused: bool,
    pub is_active: bool,
    pub schedule: Option<String>,
    pub owners: String,
    /// `None` also when nothing more will be scheduled; see `schedule_ended`.
    pub next_run_after: Option<chrono::DateTime<chrono::Utc>>,
    /// The schedule has no next run (its `end_date` passed, or an `@once` ran).
    pub schedule_ended: bool,
    pub end_date: Option<chrono::DateTime<chrono::Utc>>,
}

/// The planned next run as readers take it: the scheduler stores 'infinity' for "nothing more
/// to schedule", which chrono cannot represent (decoding it panics), so it reads as NULL
/// beside a `schedule_ended` flag. Expects the `dags` row as `d`.
const NEXT_RUN_COLUMNS: &str =
    "CASE WHEN isfinite(d.next_run_after) THEN d.next_run_after END AS next_run_after,
    coalesce(d.next_run_after = 'infinity', false) AS schedule_ended, d.end_date";

/// How lists show a DAG whose schedule has ended: why, when it is the `end_date`.
pub fn ended_text(end_date: Option<chrono::DateTime<chrono::Utc>>) -> &'static str {
    if end_date.is_some_and(|e| e <= chrono::Utc::now()) {
        "no next run (end_date passed)"
    } else {
        "no next run"
    }
}

pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<DagSummary>> {
    Ok(sqlx::query_as::<_, DagSummary>(&format!(
        "SELECT d.dag_id, d.fileloc, d.is_paused, d.is_active, d.schedule, d.owners, {NEXT_RUN_COLUMNS}
         FROM dags d WHERE d.is_active ORDER BY d.dag_id"
    ))
    .fetch_all(pool)
    .await?)
}

/// Import errors: (filename, message with every error on its own line).
pub async fn import_errors(pool: &PgPool) -> anyhow::Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT filename, message FROM import_errors ORDER BY filename")
            .fetch_all(pool)
            .await?,
    )
}

/// The id of a DAG's current version, if the DAG is known.
pub async fn current_version_id(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT version_id FROM dags WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
}

/// A DAG's current version, as stored; `None` if the DAG is not known.
pub async fn current_spec(pool: &PgPool, dag_id: &str) -> anyhow::Result<Option<crate::dag::Dag>> {
    let spec: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT v.spec FROM dags d JOIN dag_versions v ON v.id = d.version_id WHERE d.dag_id = $1",
    )
    .bind(dag_id)
    .fetch_optional(pool)
    .await?;
    Ok(match spec {
        Some(s) => Some(crate::dag::spec::from_stored(s)?),
        None => None,
    })
}

/// A cheap fingerprint of which DAGs are active at which version: it changes when a DAG is
/// added, deactivated or gets a new version (version ids only grow). Lets a loop that
/// derives something from [`current_specs`] re-read them only when they change.
pub async fn current_versions_fingerprint(pool: &PgPool) -> sqlx::Result<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT count(*), coalesce(max(version_id), 0)::bigint, coalesce(sum(version_id), 0)::bigint
         FROM dags WHERE is_active",
    )
    .fetch_one(pool)
    .await
}

/// The current version of every active DAG, as stored; versions that cannot be read are
/// left out (the scheduler reports those).
pub async fn current_specs(pool: &PgPool) -> sqlx::Result<Vec<crate::dag::Dag>> {
    let specs: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT v.spec FROM dags d JOIN dag_versions v ON v.id = d.version_id
         WHERE d.is_active ORDER BY d.dag_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(specs
        .into_iter()
        .filter_map(|s| crate::dag::spec::from_stored(s).ok())
        .collect())
}
