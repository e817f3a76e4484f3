//! Replaying dead letters after a fix, in one command (`updraft streams
//! replay-dead-letters`): the records a sink kept aside are checked again against what the
//! task declares now (columns and record contract), and those that pass are written.
//!
//! - A Postgres target keeps its dead letters in `<table>_dead_letter`: each batch is one
//!   transaction that upserts the records that pass and deletes them from the dead-letter
//!   table; the others stay, with today's reason. Run twice, the second run finds only those.
//! - A Cassandra target's dead letters are messages on `<topic>.dlq`: they are published
//!   back to the sink's topic (key and payload as they were), where the sink checks them
//!   again. Progress is the consumer group `<group>.dead-letters` on the dead-letter topic,
//!   committed after each batch is delivered, so a second run republishes only what came
//!   since. Rows are upserts by `id`, so a record that is replayed twice is written once.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use serde_json::Value;

use super::config::{Config, Target};
use super::postgres::{PgWriter, Statements};
use super::record;
use crate::operators::contract::Contract;
use crate::operators::error::classify;
use crate::operators::kafka::monitor::topic_offsets;
use crate::operators::{parse_config, OperatorEnv, OperatorError};

/// Dead letters looked at per transaction (Postgres) or per delivery round (Kafka).
const BATCH: i64 = 1_000;

/// What a replay did, so far or in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub checked: u64,
    /// Written as rows (Postgres) or published back to the topic (Cassandra).
    pub written: u64,
    /// Still breaking the checks (Postgres); kept with their new reason.
    pub still_dead: u64,
}

/// Where a sink task's dead letters are.
pub fn place(with: Value, env: &OperatorEnv) -> Result<String, OperatorError> {
    let config: Config = parse_config(with)?;
    Ok(match Target::resolve(config.conn_id.as_deref(), env)? {
        Target::Postgres { .. } => {
            format!("table {}.{}_dead_letter", config.keyspace, config.table)
        }
        Target::Cassandra { .. } => format!("topic {}", config.dead_letter_topic()),
    })
}

/// Replays the dead letters of the sink task whose literal `with:` is `with`, held to
/// `contract`; `progress` hears the totals after each batch.
pub async fn replay_dead_letters(
    with: Value,
    dag_id: &str,
    task_id: &str,
    env: &OperatorEnv,
    contract: Option<&Contract>,
    mut progress: impl FnMut(&Replayed),
) -> Result<Replayed, OperatorError> {
    let config: Config = parse_config(with)?;
    crate::operators::ensure_valid(config.validate())?;
    let timeout = config.connect_timeout.std();
    let mut total = Replayed::default();
    match Target::resolve(config.conn_id.as_deref(), env)? {
        Target::Postgres { url } => {
            let stmts = Statements::new(&config.keyspace, &config.table, &config.columns);
            let writer = PgWriter::connect(&url, stmts, config.columns.len(), timeout).await?;
            let mut after = 0;
            let check = |m: &[record::Message]| record::split(m, &config.columns, contract);
            while let Some(b) = writer
                .replay_dead_letters(&config.topic, after, BATCH, check)
                .await?
            {
                after = b.last_id;
                total.checked += b.checked;
                total.written += b.written;
                total.still_dead += b.still_dead;
                progress(&total);
            }
        }
        Target::Cassandra { .. } => {
            let servers = crate::operators::kafka::bootstrap_servers(
                config.bootstrap_servers.as_deref(),
                config.kafka_conn_id.as_deref(),
                env,
            )?;
            let group = format!("{}.dead-letters", config.group_id(dag_id, task_id));
            total = republish(
                &servers,
                &config.dead_letter_topic(),
                &config.topic,
                &group,
                timeout,
                progress,
            )
            .await?;
        }
    }
    Ok(total)
}

/// Publishes every message of `from` that `group` has not yet replayed to `to`, committing
/// `group`'s offsets on `from` after each delivered batch.
pub async fn republish(
    servers: &str,
    from: &str,
    to: &str,
    group: &str,
    timeout: Duration,
    mut progress: impl FnMut(&Replayed),
) -> Result<Replayed, OperatorError> {
    let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("log_level", "3")
        .create()
        .map_err(|e| kafka("could not create the dead-letter consumer", &e))?;
    let producer: FutureProducer = crate::operators::kafka::idempotent_producer(servers)
        .create()
        .map_err(|e| kafka("could not create the producer", &e))?;

    // Where to start (the group's commits, else the oldest message kept) and where to stop
    // (the end offsets now: messages that arrive meanwhile wait for the next replay): what
    // the group has yet to read, as the topic monitor counts its lag.
    let offsets = topic_offsets(servers, from, &[group.to_string()], timeout).await?;
    let lags = offsets
        .groups
        .into_iter()
        .next()
        .map(|(_, g)| g)
        .unwrap_or_default();
    let spans: Vec<(i32, i64, i64)> = offsets
        .partitions
        .iter()
        .zip(lags)
        .filter(|(_, g)| g.lag > 0)
        .map(|(p, g)| (p.partition, p.end - g.lag, p.end))
        .collect();
    // The consumer's calls block, so they run on the blocking pool.
    let consumer = Arc::new(consumer);
    let on_thread = |e| OperatorError::internal("the dead-letter consumer's thread failed", e);
    let mut total = Replayed::default();
    for (partition, start, end) in spans {
        let mut next = start;
        while next < end {
            let batch = {
                let (c, from) = (consumer.clone(), from.to_string());
                tokio::task::spawn_blocking(move || {
                    read_batch(&c, &from, partition, (next, end), timeout)
                })
                .await
                .map_err(on_thread)??
            };
            let mut deliveries = Vec::with_capacity(batch.len());
            for m in &batch {
                let mut record = FutureRecord::<[u8], [u8]>::to(to);
                if let Some(k) = &m.key {
                    record = record.key(k);
                }
                if let Some(p) = &m.payload {
                    record = record.payload(p);
                }
                deliveries.push(producer.send(record, timeout));
            }
            for d in deliveries {
                d.await
                    .map_err(|(e, _)| kafka("publishing a dead letter back failed", &e))?;
                total.written += 1;
            }
            total.checked = total.written;
            next = batch.last().map_or(end, |m| m.offset + 1);
            let mut done = TopicPartitionList::new();
            done.add_partition_offset(from, partition, Offset::Offset(next))
                .map_err(|e| kafka("could not list the offset to commit", &e))?;
            let c = consumer.clone();
            tokio::task::spawn_blocking(move || c.commit(&done, CommitMode::Sync))
                .await
                .map_err(on_thread)?
                .map_err(|e| kafka("committing the replayed dead letters failed", &e))?;
            progress(&total);
        }
    }
    Ok(total)
}

/// Up to [`BATCH`] messages of `topic`'s `partition` from `span.0`, stopping before `span.1`.
fn read_batch(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    (from, end): (i64, i64),
    timeout: Duration,
) -> Result<Vec<record::Message>, OperatorError> {
    let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| kafka("could not assign the dead-letter partition", &e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| kafka("could not assign the dead-letter partition", &e))?;
    let mut out = Vec::new();
    let mut next = from;
    while next < end && (out.len() as i64) < BATCH {
        let Some(m) = consumer.poll(timeout) else {
            return Err(OperatorError::new(
                crate::operators::Reason::Timeout,
                format!("`{topic}` partition {partition} sent nothing at offset {next} within {timeout:?}"),
            ));
        };
        let m = m.map_err(|e| kafka("reading the dead letters failed", &e))?;
        next = m.offset() + 1;
        out.push(record::Message {
            partition,
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        });
    }
    Ok(out)
}
