//! The only place SQL lives. Every statement binds its parameters; state changes are
//! compare-and-set (`... WHERE state = $expected`); times come from the database clock.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool against `url`, failing fast with a message that says what to check.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid Postgres URL: {e}"))?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "could not connect to Postgres at {}: {e}. Is it running, and does DATABASE_URL point at it?",
                crate::core::log::mask_uri(url)
            )
        })?;
    Ok(pool)
}

/// A small pool of its own to `pool`'s database, with the same connection options (a test's
/// search path included), for work kept apart from the rest of the process: the worker's
/// recorder. Lazy: it connects on first use, inside the runtime that uses it.
pub fn side_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with((*pool.connect_options()).clone())
}

/// Applies every pending migration from `migrations/` (idempotent, safe to run concurrently:
/// sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))
}

pub mod admin;
pub mod api;
pub mod backfill;
pub mod config_store;
pub mod connections;
pub mod dags;
pub mod events;
pub mod listen;
pub mod listing;
pub mod logs;
pub mod operate;
pub mod pools;
pub mod reliability;
pub mod runs;
pub mod scheduling;
pub mod tasks;
pub mod templates;

/// The channel schedulers LISTEN on: a new run, an unpause, or a finished run.
pub const SCHEDULER_CHANNEL: &str = "updraft_scheduler";
/// The channel workers LISTEN on: tasks became queued.
pub const WORKER_CHANNEL: &str = "updraft_tasks";

/// Wakes every scheduler. A wake-up, not a delivery: schedulers also poll.
pub async fn notify_scheduler(pool: &PgPool) -> sqlx::Result<()> {
    notify(pool, SCHEDULER_CHANNEL).await
}

/// Wakes whoever LISTENs on `channel`; inside a transaction, at its commit.
pub async fn notify<'e>(db: impl sqlx::PgExecutor<'e>, channel: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(db)
        .await?;
    Ok(())
}

/// A pool whose connections use `schema` (created if missing) as their search path: used by
/// `dags test` for a scratch schema and by tests.
pub async fn connect_in_schema(
    url: &str,
    schema: &str,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    on_schema(url, "CREATE SCHEMA IF NOT EXISTS", schema, "").await?;
    let options: PgConnectOptions = url.parse()?;
    let options = options.options([("search_path", schema)]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await?)
}

pub async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    on_schema(url, "DROP SCHEMA IF EXISTS", schema, "CASCADE").await
}

/// Runs `{verb} {schema} {suffix}` on a short-lived connection. Identifiers cannot be
/// bound, so the name is checked to be a plain one first; `verb` and `suffix` are ours.
async fn on_schema(url: &str, verb: &str, schema: &str, suffix: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !schema.is_empty()
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "bad schema name `{schema}`"
    );
    let admin = connect(url, 1).await?;
    sqlx::query(&format!("{verb} {schema} {suffix}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    Ok(())
}

pub mod users;
pub mod variables;
pub mod web;
