//! Databases and schemas themselves: creating the database standalone uses, and the scratch
//! databases and schemas of `dags test`, the bench and tests. Identifiers cannot be bound
//! as parameters, so every name is checked to be a plain one first.

use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection};

fn plain(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "bad database or schema name `{name}`"
    );
    Ok(())
}

/// Connects to `admin_url`, creates `name` if missing, returns the URL of `name`.
pub async fn ensure_database(
    admin_url: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let mut conn = tokio::time::timeout(timeout, PgConnection::connect(admin_url)).await??;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        plain(name)?;
        let create = format!("CREATE DATABASE {name}");
        if let Err(e) = sqlx::query(&create).execute(&mut conn).await {
            // Another process may have created it in the meantime.
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            if code.as_deref() != Some("42P04") {
                return Err(e.into());
            }
        }
    }
    let _ = conn.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("admin URL has no database part")?;
    Ok(format!("{base}/{name}"))
}

/// Drops database `name` (closing its connections) if it exists.
pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    plain(name)?;
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(())
}

/// The server's version, e.g. `15.19 (Debian 15.19-0+deb12u1)`.
pub async fn server_version(pool: &sqlx::PgPool) -> sqlx::Result<String> {
    sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await
}

/// Rows in `schema.table` (a sink's table), then the schema is dropped: what the pipeline
/// bench checks after a run. Both happen whatever the count says.
pub async fn count_rows_and_drop_schema(
    url: &str,
    schema: &str,
    table: &str,
) -> anyhow::Result<i64> {
    plain(schema)?;
    plain(table)?;
    let mut conn = PgConnection::connect(url).await?;
    let rows: Result<i64, sqlx::Error> =
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".{table}"))
            .fetch_one(&mut conn)
            .await;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(rows?)
}

/// The stream bench's table: what the sink upserts (`id`, `sent_at` as text, microseconds
/// since the epoch at publish) plus `written_at`, the database clock when the row was
/// inserted, so a row carries its own end-to-end latency.
pub async fn create_stream_bench_table(url: &str, schema: &str) -> anyhow::Result<()> {
    plain(schema)?;
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".created_users (id uuid PRIMARY KEY, sent_at text, \
         written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))
    .execute(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(())
}

/// Rows in the stream bench's table.
pub async fn stream_bench_rows(url: &str, schema: &str) -> anyhow::Result<i64> {
    plain(schema)?;
    let mut conn = PgConnection::connect(url).await?;
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".created_users"))
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(n)
}

/// When the first row after `after` was written to the stream bench's table, if one was.
pub async fn first_write_after(
    url: &str,
    schema: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    plain(schema)?;
    let mut conn = PgConnection::connect(url).await?;
    let at = sqlx::query_scalar(&format!(
        "SELECT min(written_at) FROM \"{schema}\".created_users WHERE written_at > $1"
    ))
    .bind(after)
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(at)
}

/// Each row's latency in milliseconds (written_at minus sent_at), rows sent after
/// `after_micros` only.
pub async fn stream_bench_latencies(
    url: &str,
    schema: &str,
    after_micros: i64,
) -> anyhow::Result<Vec<f64>> {
    plain(schema)?;
    let mut conn = PgConnection::connect(url).await?;
    let v = sqlx::query_scalar(&format!(
        "SELECT (extract(epoch FROM written_at) * 1000 - sent_at::bigint / 1000.0)::float8
         FROM \"{schema}\".created_users WHERE sent_at::bigint > $1"
    ))
    .bind(after_micros)
    .fetch_all(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(v)
}
