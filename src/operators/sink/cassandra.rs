//! The Cassandra target, through the scylla driver (it speaks the CQL protocol Cassandra
//! does). Rows are written as concurrent prepared single-row INSERTs, bounded by
//! `concurrency`: every row is its own partition (`id` is the key), and multi-partition
//! batches only add coordinator load in Cassandra. An INSERT is an upsert, so replays after a
//! crash rewrite the same values. Invalid messages go to a dead-letter Kafka topic.

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::record::{DeadLetter, Row};
use crate::operators::error::classify;
use crate::operators::{OperatorError, Reason};

/// The CQL for one table, built once per task from validated names.
#[derive(Clone, Debug, PartialEq)]
pub struct Statements {
    pub create_keyspace: String,
    pub create_table: String,
    pub insert: String,
}

impl Statements {
    pub fn new(keyspace: &str, table: &str, columns: &[String]) -> Statements {
        let col_defs: String = columns.iter().map(|c| format!(", {c} text")).collect();
        let col_names: String = columns.iter().map(|c| format!(", {c}")).collect();
        let marks: String = columns.iter().map(|_| ", ?").collect();
        Statements {
            create_keyspace: format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': '1'}}"
            ),
            create_table: format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} (id uuid PRIMARY KEY{col_defs})"),
            insert: format!("INSERT INTO {keyspace}.{table} (id{col_names}) VALUES (?{marks})"),
        }
    }
}

/// The bound values of one row: `uuid`, then one `text` (or NULL) per column.
pub fn cql_values(row: &Row) -> Vec<Option<CqlValue>> {
    std::iter::once(Some(CqlValue::Uuid(row.id)))
        .chain(row.values.iter().map(|v| v.clone().map(CqlValue::Text)))
        .collect()
}

pub struct CqlWriter {
    session: Session,
    insert: PreparedStatement,
    concurrency: usize,
    dead_letters: FutureProducer,
    dead_letter_topic: String,
}

impl CqlWriter {
    /// Connects, creates the keyspace and table if missing, prepares the insert.
    pub async fn connect(
        contact_points: &[String],
        user: Option<&(String, String)>,
        statements: &Statements,
        concurrency: usize,
        timeout: std::time::Duration,
        dead_letters: FutureProducer,
        dead_letter_topic: String,
    ) -> Result<CqlWriter, OperatorError> {
        let mut builder = SessionBuilder::new()
            .known_nodes(contact_points)
            .connection_timeout(timeout);
        if let Some((u, p)) = user {
            builder = builder.user(u, p);
        }
        let session = builder.build().await.map_err(|e| {
            OperatorError::caused(
                classify::cql_session(&e),
                format_args!("could not connect to Cassandra at {}", contact_points.join(",")),
                &e,
            )
            .hint("check the sink connection (`conn_id`, AIRFLOW_CONN_SINK_DEFAULT or CASSANDRA_CONTACT_POINTS)")
        })?;
        for stmt in [&statements.create_keyspace, &statements.create_table] {
            session
                .query_unpaged(stmt.as_str(), ())
                .await
                .map_err(|e| {
                    OperatorError::caused(
                        classify::cql_execution(&e),
                        "could not create the keyspace or table",
                        &e,
                    )
                })?;
        }
        session.await_schema_agreement().await.map_err(|e| {
            OperatorError::caused(
                Reason::Database,
                "Cassandra nodes did not agree on the schema",
                &e,
            )
        })?;
        let insert = session
            .prepare(statements.insert.as_str())
            .await
            .map_err(|e| {
                OperatorError::caused(
                    classify::cql_prepare(&e),
                    "could not prepare the insert",
                    &e,
                )
            })?;
        Ok(CqlWriter {
            session,
            insert,
            concurrency,
            dead_letters,
            dead_letter_topic,
        })
    }

    pub async fn write(&self, rows: &[Row], dead: &[DeadLetter]) -> Result<(), OperatorError> {
        // A plain loop over a `FuturesUnordered` rather than `stream::iter(..).map(closure)`:
        // the closure form makes the future non-`Send` (a known rustc limitation).
        let mut in_flight = FuturesUnordered::new();
        for row in rows {
            if in_flight.len() >= self.concurrency.max(1) {
                if let Some(done) = in_flight.next().await {
                    done?;
                }
            }
            in_flight.push(self.insert(row));
        }
        while let Some(done) = in_flight.next().await {
            done?;
        }
        for d in dead {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "updraft.error",
                    value: Some(d.error.as_str()),
                })
                .insert(Header {
                    key: "updraft.source.partition",
                    value: Some(&d.message.partition.to_string()),
                })
                .insert(Header {
                    key: "updraft.source.offset",
                    value: Some(&d.message.offset.to_string()),
                });
            let mut record =
                FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.dead_letter_topic).headers(headers);
            if let Some(k) = &d.message.key {
                record = record.key(k);
            }
            if let Some(p) = &d.message.payload {
                record = record.payload(p);
            }
            self.dead_letters
                .send(record, std::time::Duration::from_secs(10))
                .await
                .map_err(|(e, _)| {
                    classify::kafka_error(
                        format_args!(
                            "could not write a dead letter to `{}`",
                            self.dead_letter_topic
                        ),
                        &e,
                    )
                })?;
        }
        Ok(())
    }

    async fn insert(&self, row: &Row) -> Result<(), OperatorError> {
        self.session
            .execute_unpaged(&self.insert, cql_values(row))
            .await
            .map(|_| ())
            .map_err(|e| {
                OperatorError::caused(
                    classify::cql_execution(&e),
                    format_args!("writing row {} to Cassandra failed", row.id),
                    &e,
                )
            })
    }
}
