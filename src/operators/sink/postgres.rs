//! The Postgres target. This SQL lives here rather than in `crate::db` on purpose: it writes
//! the pipeline's data into a table the DAG chose, possibly in another database, and is no
//! part of updraft's own state. Values are always bound; identifiers (which cannot be bound)
//! come only from `Config::validate`d names and are quoted.

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use super::record::{DeadLetter, Row};
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
        if !rows.is_empty() {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let mut q = sqlx::query(&self.statements.upsert).bind(ids);
            for c in 0..self.columns {
                let col: Vec<Option<String>> = rows
                    .iter()
                    .map(|r| r.values.get(c).cloned().flatten())
                    .collect();
                q = q.bind(col);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| sqlx_error(format_args!("writing {} rows failed", rows.len()), &e))?;
        }
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
}
