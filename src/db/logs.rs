//! Task logs: one row per line, appended in batches, read in pages by id.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::core::LogLine;

pub async fn append(
    pool: &PgPool,
    ti_id: i64,
    try_number: i32,
    lines: &[LogLine],
) -> sqlx::Result<()> {
    let mut conn = pool.acquire().await?;
    append_in(&mut conn, ti_id, try_number, lines).await
}

/// Appends lines on a given connection or transaction.
pub async fn append_in(
    conn: &mut PgConnection,
    ti_id: i64,
    try_number: i32,
    lines: &[LogLine],
) -> sqlx::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let at: Vec<DateTime<Utc>> = lines.iter().map(|l| l.at).collect();
    let stream: Vec<&str> = lines.iter().map(|l| l.stream.as_str()).collect();
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    sqlx::query(
        "INSERT INTO task_logs (ti_id, try_number, at, stream, line)
         SELECT $1, $2, a, s, l FROM UNNEST($3::timestamptz[], $4::text[], $5::text[]) AS x(a, s, l)",
    )
    .bind(ti_id)
    .bind(try_number)
    .bind(&at)
    .bind(&stream)
    .bind(&text)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends the lines of several tries in one statement: `(ti_id, try_number, lines)`.
pub async fn append_many(pool: &PgPool, tries: &[(i64, i32, Vec<LogLine>)]) -> sqlx::Result<()> {
    let mut conn = pool.acquire().await?;
    append_many_in(&mut conn, tries).await
}

/// [`append_many`] on a connection (inside a transaction).
pub async fn append_many_in(
    conn: &mut PgConnection,
    tries: &[(i64, i32, Vec<LogLine>)],
) -> sqlx::Result<()> {
    let n: usize = tries.iter().map(|t| t.2.len()).sum();
    if n == 0 {
        return Ok(());
    }
    let (mut ti, mut tr, mut at, mut stream, mut text) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (ti_id, try_number, lines) in tries {
        for l in lines {
            ti.push(*ti_id);
            tr.push(*try_number);
            at.push(l.at);
            stream.push(l.stream.as_str());
            text.push(l.text.as_str());
        }
    }
    sqlx::query(
        "INSERT INTO task_logs (ti_id, try_number, at, stream, line)
         SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::text[])",
    )
    .bind(&ti)
    .bind(&tr)
    .bind(&at)
    .bind(&stream)
    .bind(&text)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct LogRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

/// Up to `limit` lines of one try after line id `after` (0 for the start).
pub async fn page(
    pool: &PgPool,
    ti_id: i64,
    try_number: i32,
    after: i64,
    limit: i64,
) -> sqlx::Result<Vec<LogRow>> {
    sqlx::query_as::<_, LogRow>(
        "SELECT id, at, stream, line FROM task_logs WHERE ti_id = $1 AND try_number = $2 AND id > $3
         ORDER BY id LIMIT $4",
    )
    .bind(ti_id)
    .bind(try_number)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
