//! Writing a batch and committing its offsets, always in that order: rows first, so a crash
//! between the two replays the batch (as upserts) instead of losing it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::cassandra::CqlWriter;
use super::config::Config;
use super::postgres::PgWriter;
use super::progress::Progress;
use super::record::{self, Message};
use crate::operators::error::classify;
use crate::operators::retry::{retry, RetryPolicy};
use crate::operators::{OperatorError, Reason, TaskContext};

/// The two targets; a closed set, so an enum rather than a trait object.
pub(super) enum Writer {
    Postgres(PgWriter),
    Cassandra(Box<CqlWriter>),
}

#[derive(Default)]
pub(super) struct Counts {
    pub consumed: u64,
    pub rows: u64,
    pub dead: u64,
    pub batches: u64,
    pub commit_failures: u64,
}

/// The last commit of a try: a few quick attempts, since the rows are written and a commit
/// saves the next run from replaying them. Not the DAG's to tune: it bounds a few hundred
/// milliseconds at the end of a try.
const FINAL_COMMIT: RetryPolicy = RetryPolicy {
    retries: 2,
    base: Duration::from_millis(200),
    cap: Duration::from_millis(400),
};

/// Writes the batch, then commits its offsets: never the other way round.
pub(super) async fn flush(
    config: &Config,
    ctx: &TaskContext,
    consumer: &Arc<StreamConsumer>,
    writer: &Writer,
    batch: &mut Vec<Message>,
    counts: &mut Counts,
) -> Result<(), OperatorError> {
    if batch.is_empty() {
        return Ok(());
    }
    let (rows, dead) = record::split(batch, &config.columns, ctx.contract.as_deref());
    for d in dead.iter().take(20) {
        ctx.log.info(format!(
            "Invalid message at partition {} offset {}: {}; kept as a dead letter",
            d.message.partition, d.message.offset, d.error
        ));
    }
    match writer {
        Writer::Postgres(w) => w.write(&config.topic, &rows, &dead).await?,
        Writer::Cassandra(w) => w.write(&rows, &dead).await?,
    }
    counts.rows += rows.len() as u64;
    counts.dead += dead.len() as u64;
    counts.batches += 1;

    let mut tpl = TopicPartitionList::new();
    for (partition, next) in record::commit_offsets(batch) {
        tpl.add_partition_offset(&config.topic, partition, Offset::Offset(next))
            .map_err(|e| classify::kafka_error("could not list the offsets to commit", &e))?;
    }
    batch.clear();
    let c = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
        .await
        .map_err(|e| OperatorError::internal("the commit's thread failed", e))?;
    if let Err(e) = committed {
        // The rows are safe; the offsets will be committed with the next batch, or replayed
        // (idempotently) by whoever owns the partition next.
        counts.commit_failures += 1;
        ctx.log.info(format!(
            "Committing offsets failed ({e}); the rows are written and a replay is harmless"
        ));
    }
    if let Some(max) = config.max_dead_letters.filter(|&m| counts.dead > m) {
        // Permanent: the same records break the contract on every try. They are kept, and
        // their offsets committed, so a rerun after a fix does not meet them again.
        return Err(OperatorError::new(
            Reason::Schema,
            format!(
                "{} dead letters, more than max_dead_letters ({max}); they are kept with their reasons ({}), {} rows are written",
                counts.dead,
                dead_letter_place(config, writer),
                counts.rows
            ),
        ));
    }
    Ok(())
}

/// Where this sink keeps its dead letters, for messages.
fn dead_letter_place(config: &Config, writer: &Writer) -> String {
    match writer {
        Writer::Postgres(_) => format!("table {}.{}_dead_letter", config.keyspace, config.table),
        Writer::Cassandra(_) => format!("topic {}", config.dead_letter_topic()),
    }
}

/// A commit that failed because the group moved the partitions elsewhere: not an error of
/// this task, the new owner resumes from the last committed offset.
pub(super) fn handed_over(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
        )
    )
}

/// How the last commit of a try ended, when it did not fail.
pub(super) enum Committed {
    Yes,
    /// Refused because the group moved the partitions elsewhere: the new owner resumes from
    /// the last committed offset, so retrying would not help and nothing is lost.
    HandedOver(KafkaError),
}

/// Commits the next offset of every partition this task has read, retrying a commit that
/// may pass.
pub(super) async fn commit_progress(
    consumer: &Arc<StreamConsumer>,
    config: &Config,
    progress: &HashMap<i32, Progress>,
) -> Result<Committed, OperatorError> {
    if progress.is_empty() {
        return Ok(Committed::Yes);
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, pr) in progress {
        tpl.add_partition_offset(&config.topic, p, Offset::Offset(pr.next))
            .map_err(|e| classify::kafka_error("could not list the offsets to commit", &e))?;
    }
    let attempt = || {
        let (c, tpl) = (consumer.clone(), tpl.clone());
        async move {
            match tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await {
                Ok(Ok(())) => Ok(Committed::Yes),
                Ok(Err(e)) if handed_over(&e) => Ok(Committed::HandedOver(e)),
                Ok(Err(e)) => Err(classify::kafka_error("committing offsets failed", &e)),
                Err(e) => Err(OperatorError::internal("the commit's thread failed", e)),
            }
        }
    };
    retry(FINAL_COMMIT, attempt, |_, _, _| {})
        .await
        .map_err(|gave_up| gave_up.error)
}
