//! Knowing when a sink is done: the end offsets each partition had when the task started,
//! how far this task has read the partitions it holds, and how far the rest of its consumer
//! group has committed the ones it does not.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::config::Config;
use crate::operators::error::classify;
use crate::operators::OperatorError;

/// A partition's offsets when the task started: the run's records lie below `end`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bound {
    pub low: i64,
    pub end: i64,
}

/// How far one assigned partition has to go.
#[derive(Clone, Copy, Debug)]
pub(super) struct Progress {
    /// The partition's end offset when the task started (or, for a partition created since,
    /// when this task first saw it assigned).
    pub end: i64,
    /// The next offset this task will read (committed offset, or the start, at first).
    pub next: i64,
}

/// What the rest of the group has done with the partitions this task does not hold.
pub(super) struct Group {
    /// Partitions the group has committed up to their bound: read and written, by anyone.
    pub settled: HashSet<i32>,
    /// The group's committed offsets when last asked, to notice progress.
    pub seen: HashMap<i32, i64>,
    pub last_asked: Instant,
    pub last_moved: Instant,
    /// Whether the log already says this task is waiting for the group.
    pub told: bool,
}

impl Group {
    pub fn new(bounds: &HashMap<i32, Bound>, started: Instant) -> Group {
        Group {
            // An empty partition (or one whose records have all expired) has nothing to read.
            settled: bounds
                .iter()
                .filter(|(_, b)| b.end <= b.low)
                .map(|(&p, _)| p)
                .collect(),
            seen: HashMap::new(),
            last_asked: started,
            last_moved: started,
            told: false,
        }
    }
}

/// Where every partition of `topic` ends now, read on a blocking thread.
pub(super) async fn bounds(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    partitions: Vec<i32>,
    timeout: Duration,
) -> Result<HashMap<i32, Bound>, OperatorError> {
    let (c, t) = (consumer.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || -> Result<HashMap<i32, Bound>, KafkaError> {
        let mut bounds = HashMap::new();
        for p in partitions {
            let (low, end) = c.fetch_watermarks(&t, p, timeout)?;
            bounds.insert(p, Bound { low, end });
        }
        Ok(bounds)
    })
    .await
    .map_err(|e| OperatorError::internal("the watermark request's thread failed", e))?
    .map_err(|e| {
        classify::kafka_error(
            format_args!("could not read the end offsets of `{topic}`"),
            &e,
        )
    })
}

pub(super) fn list(partitions: &[i32]) -> String {
    partitions
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Partitions neither held by this task nor known to be read by the group up to their bound.
pub(super) fn pending(
    bounds: &HashMap<i32, Bound>,
    progress: &HashMap<i32, Progress>,
    settled: &HashSet<i32>,
) -> Vec<i32> {
    let mut pending: Vec<i32> = bounds
        .keys()
        .filter(|p| !progress.contains_key(p) && !settled.contains(p))
        .copied()
        .collect();
    pending.sort_unstable();
    pending
}

/// Reads the group's committed offsets of `pending` partitions: settles those committed up to
/// their bound, and notes whether anything moved since the last look.
pub(super) async fn ask_group(
    config: &Config,
    consumer: &Arc<StreamConsumer>,
    bounds: &HashMap<i32, Bound>,
    pending: &[i32],
    group: &mut Group,
    timeout: Duration,
) -> Result<(), OperatorError> {
    group.last_asked = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for &p in pending {
        tpl.add_partition(&config.topic, p);
    }
    let c = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || c.committed_offsets(tpl, timeout))
        .await
        .map_err(|e| OperatorError::internal("the offset request's thread failed", e))?;
    let committed = match committed {
        Ok(c) => c,
        // Asked again in 250 ms; meanwhile nothing counts as progress.
        Err(_) => return Ok(()),
    };
    for &p in pending {
        let Some(Offset::Offset(offset)) = committed
            .find_partition(&config.topic, p)
            .map(|e| e.offset())
        else {
            continue;
        };
        if group.seen.insert(p, offset) != Some(offset) {
            group.last_moved = Instant::now();
        }
        if offset >= bounds[&p].end {
            group.settled.insert(p);
        }
    }
    Ok(())
}

/// Notices newly assigned (and revoked) partitions. For a new one, records its bound (the end
/// offset as of start) and where this group left off.
pub(super) async fn track_assignment(
    config: &Config,
    consumer: &Arc<StreamConsumer>,
    bounds: &HashMap<i32, Bound>,
    read: &HashMap<i32, i64>,
    progress: &mut HashMap<i32, Progress>,
    timeout: Duration,
) -> Result<(), OperatorError> {
    let assigned: Vec<i32> = consumer
        .assignment()
        .map_err(|e| classify::kafka_error("could not read the consumer's assignment", &e))?
        .elements()
        .iter()
        .filter(|e| e.topic() == config.topic)
        .map(|e| e.partition())
        .collect();
    progress.retain(|p, _| assigned.contains(p));
    let new: Vec<i32> = assigned
        .into_iter()
        .filter(|p| !progress.contains_key(p))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let c = consumer.clone();
    let topic = config.topic.clone();
    let bounds = bounds.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, Progress)>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            tpl.add_partition(&topic, p);
        }
        let committed = c.committed_offsets(tpl, timeout)?;
        let mut out = Vec::new();
        for p in new {
            let bound = match bounds.get(&p) {
                Some(&b) => b,
                // Created since the task started: its end now is the bound.
                None => {
                    let (low, end) = c.fetch_watermarks(&topic, p, timeout)?;
                    Bound { low, end }
                }
            };
            // Records below `low` are gone (retention), so a committed offset under it
            // leaves nothing to read there.
            let next = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(bound.low),
                _ => bound.low,
            };
            out.push((
                p,
                Progress {
                    end: bound.end,
                    next,
                },
            ));
        }
        Ok(out)
    })
    .await
    .map_err(|e| OperatorError::internal("the offset request's thread failed", e))?
    .map_err(|e| {
        classify::kafka_error(
            format_args!(
                "could not read the offsets of newly assigned partitions of `{}`",
                config.topic
            ),
            &e,
        )
    })?;
    for (p, mut pr) in found {
        // Messages of this partition may have arrived (into the batch, written before the
        // task ends) before it was tracked.
        if let Some(&r) = read.get(&p) {
            pr.next = pr.next.max(r);
        }
        progress.insert(p, pr);
    }
    Ok(())
}
