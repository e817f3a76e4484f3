//! The consuming loop of a sink try: read, batch, flush, and decide when the try is done
//! (caught up with the end offsets as of start, by this task or its group; or a bound).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::Message as _;
use serde_json::json;

use super::config::Config;
use super::progress::{ask_group, list, pending, track_assignment, Bound, Group, Progress};
use super::record::Message;
use super::write::{commit_progress, flush, Committed, Counts, Writer};
use crate::operators::error::classify;
use crate::operators::{OperatorError, Outcome, Reason, TaskContext};

/// Reads, writes and commits until the try is done; every way out leaves the rows written
/// before their offsets are committed.
pub(super) async fn consume(
    config: &Config,
    ctx: &TaskContext,
    consumer: &Arc<StreamConsumer>,
    writer: &Writer,
    bounds: HashMap<i32, Bound>,
) -> Result<Outcome, OperatorError> {
    let started = Instant::now();
    let timeout = config.connect_timeout.std();
    let mut group = Group::new(&bounds, started);
    let mut progress: HashMap<i32, Progress> = HashMap::new();
    // Per partition, the offset after the last message this task received.
    let mut read: HashMap<i32, i64> = HashMap::new();
    let mut batch: Vec<Message> = Vec::with_capacity(config.batch_size);
    let mut counts = Counts::default();
    let mut last_report = Instant::now();
    let mut recv_errors = 0u32;
    let mut last_assignment_check = Instant::now();
    let stop_reason = loop {
        if ctx.cancel.is_cancelled() {
            return Err(OperatorError::new(
                Reason::Cancelled,
                format!(
                    "sink was cancelled; {} rows were written and committed",
                    counts.rows
                ),
            ));
        }
        if config
            .max_duration
            .is_some_and(|d| started.elapsed() >= d.std())
        {
            let behind = pending(&bounds, &progress, &group.settled);
            if !behind.is_empty() {
                ctx.log.info(format!(
                    "Partitions {} may not be read to the end yet (other members of the group hold them)",
                    list(&behind)
                ));
            }
            break "reached max_duration";
        }
        if config.max_records.is_some_and(|m| counts.consumed >= m) {
            break "reached max_records";
        }
        let received = tokio::select! {
            r = tokio::time::timeout(Duration::from_millis(200), consumer.recv()) => r,
            _ = ctx.cancel.cancelled() => continue,
        };
        match received {
            Ok(Ok(m)) => {
                recv_errors = 0;
                let msg = Message {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                };
                // Also for a partition not tracked yet: the assignment is looked at after
                // messages arrive, and the tracking must start past what was read.
                let read = read.entry(msg.partition).or_insert(msg.offset + 1);
                *read = (*read).max(msg.offset + 1);
                if let Some(p) = progress.get_mut(&msg.partition) {
                    p.next = p.next.max(msg.offset + 1);
                }
                counts.consumed += 1;
                // Reading below a bound is progress towards the goal (records published since
                // the start are not: they would hide a stuck member forever).
                if bounds
                    .get(&msg.partition)
                    .is_some_and(|b| msg.offset < b.end)
                {
                    group.last_moved = Instant::now();
                }
                batch.push(msg);
                if batch.len() >= config.batch_size {
                    flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
                }
            }
            Ok(Err(e)) => {
                recv_errors += 1;
                ctx.log.info(format!("Kafka consumer error: {e}"));
                if recv_errors >= 50 {
                    return Err(classify::kafka_error(
                        "the Kafka consumer failed 50 times in a row; last error",
                        &e,
                    ));
                }
            }
            // Quiet for a moment: write what we have rather than hold it.
            Err(_) => flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?,
        }

        // Asking librdkafka for the assignment costs a lock and a list; at most every 100 ms.
        if last_assignment_check.elapsed() >= Duration::from_millis(100) || progress.is_empty() {
            last_assignment_check = Instant::now();
            track_assignment(config, consumer, &bounds, &read, &mut progress, timeout).await?;
        }
        if progress.values().all(|p| p.next >= p.end) {
            // This task's partitions are done; the others are held by other members of the
            // group (or are between owners in a rebalance). Their committed offsets say how
            // far the group has got; asked at most every 250 ms.
            let pending = pending(&bounds, &progress, &group.settled);
            if pending.is_empty() {
                // Confirm against a fresh assignment and flush, so nothing read is held back.
                track_assignment(config, consumer, &bounds, &read, &mut progress, timeout).await?;
                if progress.values().all(|p| p.next >= p.end) {
                    break if progress.len() == bounds.len() {
                        "caught up with the end offsets as of start"
                    } else {
                        "caught up with the end offsets as of start, with other members of the group"
                    };
                }
            } else if group.last_asked.elapsed() >= Duration::from_millis(250) {
                if !progress.is_empty() && !group.told {
                    group.told = true;
                    ctx.log.info(format!(
                        "Read this task's partitions to the end; waiting for other members of the group to read partitions {}",
                        list(&pending)
                    ));
                }
                flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
                ask_group(config, consumer, &bounds, &pending, &mut group, timeout).await?;
                if group.last_moved.elapsed() >= config.stall_timeout.std() {
                    // Transient: the stuck member may go away, and a retry resumes from the
                    // committed offsets.
                    return Err(OperatorError::new(Reason::Timeout, format!(
                        "partitions {} of `{}` are held by other members of consumer group `{}`, which made no progress on them for {}; {} rows from this task's partitions are written and committed. Stop the stuck consumer (a retry resumes from the committed offsets), or raise `stall_timeout`",
                        list(&pending),
                        config.topic,
                        config.group_id(&ctx.dag_id, &ctx.task_id),
                        config.stall_timeout,
                        counts.rows
                    )));
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            ctx.log.info(format!(
                "Progress: {} rows written, {} dead letters",
                counts.rows, counts.dead
            ));
        }
    };
    flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
    if counts.commit_failures > 0 {
        // One last attempt covering everything consumed, so the next run does not replay it.
        match commit_progress(consumer, config, &progress).await {
            Ok(Committed::Yes) => {}
            Ok(Committed::HandedOver(e)) => ctx.log.info(format!(
                "Offsets of partitions handed to another consumer were not committed ({e}); it replays those messages as upserts"
            )),
            Err(e) => {
                return Err(OperatorError::new(
                    e.reason(),
                    format!("the rows are written but the offsets could not be committed ({e}); a rerun replays them as upserts, without duplicates"),
                ))
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    ctx.log.info(format!(
        "Stopped: {stop_reason}. Wrote {} rows in {} batches in {secs:.3}s ({:.0} rows/s); {} invalid messages kept as dead letters",
        counts.rows,
        counts.batches,
        counts.rows as f64 / secs,
        counts.dead
    ));
    Ok(Outcome::returning(json!({
        "consumed": counts.consumed,
        "rows": counts.rows,
        "dead_letters": counts.dead,
        "stopped": stop_reason,
    })))
}
