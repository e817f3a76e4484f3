//! The Postgres target. This SQL lives here rather than in `crate::db` on purpose: it writes
//! the pipeline's data into a table the DAG chose, possibly in another database, and is no
//! part of updraft's own state. Values are always bound; identifiers (which cannot be bound)
//! come only from `Config::validate`d names and are quoted.

use std::collections::HashMap;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use super::record::{DeadLetter, Message, Row};
use crate::core::log::mask_uri;
use crate::operators::error::classify::sqlx_error;
use crate::operators::{OperatorError, Reason};

/// Where the sink's Postgres comes from, for messages about it.
const TARGET_HINT: &str =
    "check the sink connection (`conn_id`, AIRFLOW_CONN_SINK_DEFAULT or SINK_POSTGRES_URL)";

/// The statements for one table, built once per task.
#[derive(Clone, Debug, PartialEq)]
pub struct Statements {
    pub create: Vec<String>,
    pub upsert: String,
    pub dead_letter: String,
    /// Dead letters of a topic after a `dl_id`, oldest first, locked for a replay.
    pub dead_letters_after: String,
    pub dead_letters_delete: String,
    pub dead_letters_reason: String,
}

impl Statements {
    pub fn new(schema: &str, table: &str, columns: &[String]) -> Statements {
        let t = format!("\"{schema}\".\"{table}\"");
        let dl = format!("\"{schema}\".\"{table}_dead_letter\"");
        let col_defs: String = columns.iter().map(|c| format!(", \"{c}\" text")).collect();
        let col_names: String = columns.iter().map(|c| format!(", \"{c}\"")).collect();
        let arrays: String = (0..columns.len())
            .map(|i| format!(", ${}::text[]", i + 2))
            .collect();
        let updates: Vec<String> = columns
            .iter()
            .map(|c| format!("\"{c}\" = EXCLUDED.\"{c}\""))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        Statements {
            create: vec![
                format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
                format!("CREATE TABLE IF NOT EXISTS {t} (\"id\" uuid PRIMARY KEY{col_defs})"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {dl} (\"dl_id\" bigserial PRIMARY KEY, \"topic\" text NOT NULL, \
                     \"partition\" integer NOT NULL, \"offset\" bigint NOT NULL, \"key\" bytea, \"payload\" bytea, \
                     \"error\" text NOT NULL, \"received_at\" timestamptz NOT NULL DEFAULT now(), \
                     UNIQUE (\"topic\", \"partition\", \"offset\"))"
                ),
            ],
            upsert: format!(
                "INSERT INTO {t} (\"id\"{col_names}) SELECT * FROM UNNEST($1::uuid[]{arrays}) ON CONFLICT (\"id\") {on_conflict}"
            ),
            dead_letter: format!(
                "INSERT INTO {dl} (\"topic\", \"partition\", \"offset\", \"key\", \"payload\", \"error\") \
                 SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[], $6::text[]) \
                 ON CONFLICT (\"topic\", \"partition\", \"offset\") DO NOTHING"
            ),
            dead_letters_after: format!(
                "SELECT \"dl_id\", \"partition\", \"offset\", \"key\", \"payload\" FROM {dl} \
                 WHERE \"topic\" = $1 AND \"dl_id\" > $2 ORDER BY \"dl_id\" LIMIT $3 FOR UPDATE"
            ),
            dead_letters_delete: format!("DELETE FROM {dl} WHERE \"dl_id\" = ANY($1)"),
            dead_letters_reason: format!(
                "UPDATE {dl} d SET \"error\" = u.error FROM UNNEST($1::bigint[], $2::text[]) AS u(id, error) \
                 WHERE d.\"dl_id\" = u.id"
            ),
        }
    }
}

pub struct PgWriter {
    pool: PgPool,
    statements: Statements,
    columns: usize,
}

impl PgWriter {
    /// Connects and creates the schema and tables if missing. Several sink tasks may start
    /// at once; an advisory lock keeps their `CREATE … IF NOT EXISTS` from racing.
    pub async fn connect(
        url: &str,
        statements: Statements,
        columns: usize,
        timeout: std::time::Duration,
    ) -> Result<PgWriter, OperatorError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(timeout)
            .connect(url)
            .await
            .map_err(|e| {
                let error = sqlx_error(
                    format_args!(
                        "could not connect to the sink Postgres at {}",
                        mask_uri(url)
                    ),
                    &e,
                );
                // sqlx reports an unreachable server as a pool timeout; say which one.
                match error.reason() {
                    Reason::Timeout | Reason::Connection | Reason::BadConfig => {
                        error.hint(TARGET_HINT)
                    }
                    _ => error,
                }
            })?;
        let ddl = |e: sqlx::Error| sqlx_error("could not create the sink tables", &e);
        let mut tx = pool.begin().await.map_err(ddl)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('updraft.sink.ddl'))")
            .execute(&mut *tx)
            .await
            .map_err(ddl)?;
        for stmt in &statements.create {
            sqlx::query(stmt).execute(&mut *tx).await.map_err(ddl)?;
        }
        tx.commit().await.map_err(ddl)?;
        Ok(PgWriter {
            pool,
            statements,
            columns,
        })
    }

    /// Upserts rows and keeps dead letters, in one transaction.
    pub async fn write(
        &self,
        topic: &str,
        rows: &[Row],
        dead: &[DeadLetter],
    ) -> Result<(), OperatorError> {
        let mut tx =
            self.pool.begin().await.map_err(|e| {
                sqlx_error("could not start a transaction on the sink Postgres", &e)
            })?;
        self.upsert(&mut tx, rows).await?;
        if !dead.is_empty() {
            let topics: Vec<&str> = dead.iter().map(|_| topic).collect();
            let partitions: Vec<i32> = dead.iter().map(|d| d.message.partition).collect();
            let offsets: Vec<i64> = dead.iter().map(|d| d.message.offset).collect();
            let keys: Vec<Option<Vec<u8>>> = dead.iter().map(|d| d.message.key.clone()).collect();
            let payloads: Vec<Option<Vec<u8>>> =
                dead.iter().map(|d| d.message.payload.clone()).collect();
            let errors: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
            sqlx::query(&self.statements.dead_letter)
                .bind(topics)
                .bind(partitions)
                .bind(offsets)
                .bind(keys)
                .bind(payloads)
                .bind(errors)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    sqlx_error(
                        format_args!("writing {} dead letters failed", dead.len()),
                        &e,
                    )
                })?;
        }
        tx.commit()
            .await
            .map_err(|e| sqlx_error("committing the rows failed", &e))?;
        Ok(())
    }

    async fn upsert(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        rows: &[Row],
    ) -> Result<(), OperatorError> {
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut q = sqlx::query(&self.statements.upsert).bind(ids);
        for c in 0..self.columns {
            let col: Vec<Option<String>> = rows
                .iter()
                .map(|r| r.values.get(c).cloned().flatten())
                .collect();
            q = q.bind(col);
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| sqlx_error(format_args!("writing {} rows failed", rows.len()), &e))?;
        Ok(())
    }

    /// One batch of a dead-letter replay, in one transaction: up to `limit` dead letters of
    /// `topic` after `after` (a `dl_id`), checked again by `check`; those that pass are
    /// upserted and leave the dead-letter table, the rest stay with today's reason.
    /// `None` when no dead letter is left after `after`.
    pub async fn replay_dead_letters(
        &self,
        topic: &str,
        after: i64,
        limit: i64,
        check: impl Fn(&[Message]) -> (Vec<Row>, Vec<DeadLetter>),
    ) -> Result<Option<ReplayedBatch>, OperatorError> {
        let failed = |e: sqlx::Error| sqlx_error("replaying dead letters failed", &e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        type Stored = (i64, i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);
        let stored: Vec<Stored> = sqlx::query_as(&self.statements.dead_letters_after)
            .bind(topic)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
        let Some(last_id) = stored.last().map(|s| s.0) else {
            return Ok(None);
        };
        let id_of: HashMap<(i32, i64), i64> = stored.iter().map(|s| ((s.1, s.2), s.0)).collect();
        let messages: Vec<Message> = stored
            .into_iter()
            .map(|(_, partition, offset, key, payload)| Message {
                partition,
                offset,
                key,
                payload,
            })
            .collect();
        let (rows, dead) = check(&messages);
        self.upsert(&mut tx, &rows).await?;
        let (dead_ids, reasons): (Vec<i64>, Vec<&str>) = dead
            .iter()
            .map(|d| {
                (
                    id_of[&(d.message.partition, d.message.offset)],
                    d.error.as_str(),
                )
            })
            .unzip();
        let passed: Vec<i64> = id_of
            .values()
            .copied()
            .filter(|id| !dead_ids.contains(id))
            .collect();
        sqlx::query(&self.statements.dead_letters_delete)
            .bind(&passed)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(&self.statements.dead_letters_reason)
            .bind(&dead_ids)
            .bind(&reasons)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(Some(ReplayedBatch {
            last_id,
            checked: messages.len() as u64,
            written: passed.len() as u64,
            still_dead: dead_ids.len() as u64,
        }))
    }
}

/// What one batch of a dead-letter replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayedBatch {
    /// The last dead letter looked at; the next batch starts after it.
    pub last_id: i64,
    pub checked: u64,
    /// Passed the checks now: written as rows, gone from the dead letters.
    pub written: u64,
    pub still_dead: u64,
}
