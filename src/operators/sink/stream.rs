//! The continuous sink (`mode: continuous`): read, batch, write, commit, until stopped.
//!
//! Why it looks like this: a stream has no end to catch up with, so a batch is written when
//! it is full or when its first message has waited `linger`, whichever comes first; that
//! bounds both the memory held (one batch) and a record's delay (`linger` plus one write).
//! Offsets are committed only after the batch's rows are written, as in batch mode, so a
//! worker that dies mid-batch leaves the batch to whoever takes the partitions over, who
//! rewrites it as upserts. How it ends decides what the worker records:
//! - `ctx.stop` (the worker shuts down, the DAG was paused): the batch is written and
//!   committed, and the outcome is marked `interrupted`;
//! - `ctx.cancel` (the lease was lost): nothing more is written or committed, since another
//!   worker may hold the task already;
//! - an error (brokers or target away): the task fails and its retry policy restarts it,
//!   from the committed offsets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::Message as _;
use serde_json::json;

use super::config::Config;
use super::record::Message;
use super::write::{flush, Counts, Writer};
use crate::operators::error::classify;
use crate::operators::{OperatorError, Outcome, Reason, TaskContext};

/// How often a stream writes a progress line to its log: a stream runs for days, and its
/// log is stored.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Consecutive consumer errors after which the try fails (and the retry policy takes over).
const MAX_RECV_ERRORS: u32 = 50;

/// The outcome of a stream asked to stop before it consumed anything.
pub(super) fn stopped_before_start() -> Outcome {
    Outcome {
        interrupted: true,
        ..Outcome::returning(json!({
            "consumed": 0, "rows": 0, "dead_letters": 0, "stopped": "asked to stop",
        }))
    }
}

/// Consumes until stopped; see the module docs for how each way out leaves the offsets.
pub(super) async fn stream(
    config: &Config,
    ctx: &TaskContext,
    consumer: &Arc<StreamConsumer>,
    writer: &Writer,
) -> Result<Outcome, OperatorError> {
    let started = Instant::now();
    let linger = config.linger.std();
    let mut batch: Vec<Message> = Vec::with_capacity(config.batch_size.min(10_000));
    // When the batch's first message arrived.
    let mut oldest: Option<Instant> = None;
    let mut counts = Counts::default();
    let mut reported = (Instant::now(), 0u64);
    let mut recv_errors = 0u32;
    ctx.log.info(format!(
        "Streaming continuously: batches of up to {} written within {} of their first record; stops on shutdown, pause or lease loss",
        config.batch_size, config.linger
    ));
    let (stopped, interrupted) = loop {
        if ctx.cancel.is_cancelled() {
            return Err(OperatorError::new(
                Reason::Cancelled,
                format!(
                    "stream was cancelled; {} rows were written and committed, the batch in hand is left to the next owner of its partitions",
                    counts.rows
                ),
            ));
        }
        if ctx.stop.is_cancelled() {
            break ("asked to stop", true);
        }
        if config
            .max_duration
            .is_some_and(|d| started.elapsed() >= d.std())
        {
            break ("reached max_duration", false);
        }
        if config.max_records.is_some_and(|m| counts.consumed >= m) {
            break ("reached max_records", false);
        }
        // Wait for a message no longer than the batch in hand may still linger.
        let wait = match oldest {
            Some(t) => linger.saturating_sub(t.elapsed()),
            None => linger.max(Duration::from_millis(200)),
        };
        let received = tokio::select! {
            r = tokio::time::timeout(wait, consumer.recv()) => r,
            _ = ctx.cancel.cancelled() => continue,
            _ = ctx.stop.cancelled() => continue,
        };
        match received {
            Ok(Ok(m)) => {
                recv_errors = 0;
                batch.push(Message {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                });
                oldest.get_or_insert_with(Instant::now);
                counts.consumed += 1;
            }
            Ok(Err(e)) => {
                recv_errors += 1;
                ctx.log.info(format!("Kafka consumer error: {e}"));
                if recv_errors >= MAX_RECV_ERRORS {
                    return Err(classify::kafka_error(
                        format_args!(
                            "the Kafka consumer failed {MAX_RECV_ERRORS} times in a row; last error"
                        ),
                        &e,
                    ));
                }
            }
            Err(_) => {} // the batch's time is up, or nothing came
        }
        if batch.len() >= config.batch_size || oldest.is_some_and(|t| t.elapsed() >= linger) {
            flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
            oldest = None;
        }
        if reported.0.elapsed() >= REPORT_EVERY {
            ctx.log.info(format!(
                "Progress: {} rows written in the last {}s ({} in all), {} dead letters",
                counts.rows - reported.1,
                reported.0.elapsed().as_secs(),
                counts.rows,
                counts.dead
            ));
            reported = (Instant::now(), counts.rows);
        }
    };
    // Asked to stop or a bound reached: what was read is written and committed first.
    flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
    ctx.log.info(format!(
        "Stopped: {stopped}. Wrote {} rows in {} batches in {:.3}s; {} invalid messages kept as dead letters",
        counts.rows,
        counts.batches,
        started.elapsed().as_secs_f64(),
        counts.dead
    ));
    Ok(Outcome {
        interrupted,
        ..Outcome::returning(json!({
            "consumed": counts.consumed,
            "rows": counts.rows,
            "dead_letters": counts.dead,
            "stopped": stopped,
        }))
    })
}
