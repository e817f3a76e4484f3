//! Pools: named slot counts that limit how many task slots run at once across every DAG
//! (`slots = -1` is unlimited). `default_pool` (128 slots, as in Airflow) holds every task
//! that names no pool and cannot be deleted. Enforcement happens at claim; this module keeps
//! the rows and reports how slots are used: running (claimed and running), queued (ready,
//! waiting for a worker or for the pool) and scheduled, each weighted by the task's
//! `pool_slots`.

use sqlx::PgPool;

use super::listing::{ListQuery, StoreError};

/// The pool of tasks that name none.
pub const DEFAULT_POOL: &str = "default_pool";

/// `order_by` names the pools list accepts (Airflow: `id`, `pool`, `name`); pools are keyed
/// by name, so all three order by it.
pub const ORDER_FIELDS: &[(&str, &str)] =
    &[("id", "p.pool"), ("pool", "p.pool"), ("name", "p.pool")];

/// A pool with its slot usage.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct PoolStats {
    pub pool: String,
    pub slots: i32,
    pub description: String,
    pub include_deferred: bool,
    pub running_slots: i64,
    pub queued_slots: i64,
    pub scheduled_slots: i64,
}

impl PoolStats {
    /// Slots held: what the claim counts against `slots` (running tries). updraft's
    /// `queued` tasks have not been admitted yet (Airflow's `scheduled`), so they hold none.
    pub fn occupied_slots(&self) -> i64 {
        self.running_slots
    }

    /// Slots free, or -1 for an unlimited pool (as Airflow's API reports it).
    pub fn open_slots(&self) -> i64 {
        if self.slots < 0 {
            -1
        } else {
            i64::from(self.slots) - self.occupied_slots()
        }
    }
}

/// Checks a pool name: 1 to 256 characters, no control characters.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "invalid pool name `{}`: it must be 1 to 256 characters without control characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Checks a slot count: -1 (unlimited) or more.
pub fn check_slots(slots: i64) -> Result<i32, StoreError> {
    i32::try_from(slots)
        .ok()
        .filter(|s| *s >= -1)
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "`slots` must be -1 (unlimited) or a whole number ≥ 0, got {slots}"
            ))
        })
}

const SELECT: &str = "SELECT p.pool, p.slots, p.description, p.include_deferred,
        coalesce(u.running, 0) AS running_slots, coalesce(u.queued, 0) AS queued_slots,
        coalesce(u.scheduled, 0) AS scheduled_slots
    FROM pools p LEFT JOIN LATERAL (
        SELECT sum(t.pool_slots) FILTER (WHERE t.state = 'running') AS running,
               sum(t.pool_slots) FILTER (WHERE t.state = 'queued') AS queued,
               sum(t.pool_slots) FILTER (WHERE t.state = 'scheduled') AS scheduled
        FROM task_instances t WHERE t.pool = p.pool AND t.state IN ('queued', 'running', 'scheduled')
    ) u ON true";
const WHERE: &str = "(cardinality($1::text[]) = 0 OR p.pool ILIKE ANY($1)) AND ($2::text IS NULL OR starts_with(p.pool, $2))";

/// One page of pools with their usage, and how many match.
pub async fn list(pool: &PgPool, q: &ListQuery) -> sqlx::Result<(Vec<PoolStats>, i64)> {
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM pools p WHERE {WHERE}"))
        .bind(&q.patterns)
        .bind(&q.prefix)
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query_as::<_, PoolStats>(&format!(
        "{SELECT} WHERE {WHERE} {} LIMIT $3 OFFSET $4",
        q.order_sql("p.pool", "p.pool")
    ))
    .bind(&q.patterns)
    .bind(&q.prefix)
    .bind(q.limit)
    .bind(q.offset)
    .fetch_all(pool)
    .await?;
    Ok((rows, total))
}

pub async fn get(pool: &PgPool, name: &str) -> sqlx::Result<Option<PoolStats>> {
    sqlx::query_as::<_, PoolStats>(&format!("{SELECT} WHERE p.pool = $1"))
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Every pool's name (the DAG processor checks tasks' pools against them).
pub async fn names(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT pool FROM pools ORDER BY pool")
        .fetch_all(pool)
        .await
}

/// A pool to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub slots: i32,
    pub description: String,
    pub include_deferred: bool,
}

/// Creates a pool, or replaces it when `overwrite`; false when it existed and was kept.
pub async fn put(pool: &PgPool, spec: &PoolSpec, overwrite: bool) -> Result<bool, StoreError> {
    check_name(&spec.name)?;
    check_slots(i64::from(spec.slots))?;
    let conflict = if overwrite {
        "ON CONFLICT (pool) DO UPDATE SET slots = EXCLUDED.slots, description = EXCLUDED.description,
           include_deferred = EXCLUDED.include_deferred"
    } else {
        "ON CONFLICT (pool) DO NOTHING"
    };
    let done = sqlx::query(&format!(
        "INSERT INTO pools (pool, slots, description, include_deferred) VALUES ($1, $2, $3, $4) {conflict}"
    ))
    .bind(&spec.name)
    .bind(spec.slots)
    .bind(&spec.description)
    .bind(spec.include_deferred)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done > 0)
}

/// Changes the given fields of a pool; false when there is none.
pub async fn update(
    pool: &PgPool,
    name: &str,
    slots: Option<i32>,
    description: Option<&str>,
    include_deferred: Option<bool>,
) -> Result<bool, StoreError> {
    if let Some(s) = slots {
        check_slots(i64::from(s))?;
    }
    let done = sqlx::query(
        "UPDATE pools SET slots = COALESCE($2, slots), description = COALESCE($3, description),
           include_deferred = COALESCE($4, include_deferred) WHERE pool = $1",
    )
    .bind(name)
    .bind(slots)
    .bind(description)
    .bind(include_deferred)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done > 0)
}

/// Why a pool could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("Default Pool can't be deleted")]
    Default,
    #[error("The Pool with name: `{0}` was not found")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub async fn delete(pool: &PgPool, name: &str) -> Result<(), DeleteError> {
    if name == DEFAULT_POOL {
        return Err(DeleteError::Default);
    }
    let done = sqlx::query("DELETE FROM pools WHERE pool = $1")
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected();
    if done == 0 {
        return Err(DeleteError::NotFound(name.to_string()));
    }
    Ok(())
}
