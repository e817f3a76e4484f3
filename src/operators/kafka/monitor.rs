//! The topic monitor's Kafka side: per partition a topic's offsets, and per consumer group
//! its committed offsets and lag (end offset minus committed), read without joining any group.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::operators::error::classify;
use crate::operators::OperatorError;

/// One partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The oldest offset the partition still holds.
    pub low: i64,
    /// The offset the next message will get.
    pub end: i64,
}

/// One consumer group on one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPartition {
    pub partition: i32,
    /// `None`: the group has committed nothing on this partition.
    pub committed: Option<i64>,
    /// Messages the group has yet to commit: end minus committed (minus low when none).
    pub lag: i64,
}

/// A topic as the monitor shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicOffsets {
    pub topic: String,
    /// `false`: the brokers do not know the topic (yet).
    pub exists: bool,
    pub partitions: Vec<PartitionOffsets>,
    /// Per group asked about, per partition.
    pub groups: Vec<(String, Vec<GroupPartition>)>,
}

/// Reads `topic`'s offsets and each of `groups`' committed offsets and lag.
pub async fn topic_offsets(
    servers: &str,
    topic: &str,
    groups: &[String],
    timeout: Duration,
) -> Result<TopicOffsets, OperatorError> {
    let (servers, topic, groups) = (servers.to_string(), topic.to_string(), groups.to_vec());
    tokio::task::spawn_blocking(move || read(&servers, &topic, &groups, timeout))
        .await
        .map_err(|e| OperatorError::internal("the monitor's thread failed", e))?
}

fn client(servers: &str, group: Option<&str>) -> Result<BaseConsumer, OperatorError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", servers)
        .set("enable.auto.commit", "false")
        .set("log_level", "3");
    if let Some(g) = group {
        cc.set("group.id", g);
    }
    cc.create()
        .map_err(|e| classify::kafka_error("could not create a Kafka client", &e))
}

/// A client that reads partitions' offsets and joins no group. The rate sampler keeps one
/// per broker set between samples rather than connecting anew every few seconds.
pub struct OffsetReader(BaseConsumer);

impl OffsetReader {
    pub fn new(servers: &str) -> Result<OffsetReader, OperatorError> {
        client(servers, None).map(OffsetReader)
    }

    /// `topic`'s partitions with their offsets, by partition id; empty when the brokers do
    /// not know the topic. Blocks for up to `timeout` per request.
    pub fn partitions(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<PartitionOffsets>, OperatorError> {
        let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
        let metadata = self
            .0
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| kafka("could not reach Kafka", &e))?;
        let mut ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        ids.sort_unstable();
        let mut partitions = Vec::with_capacity(ids.len());
        for p in ids {
            let (low, end) = self
                .0
                .fetch_watermarks(topic, p, timeout)
                .map_err(|e| kafka("could not read a partition's offsets", &e))?;
            partitions.push(PartitionOffsets {
                partition: p,
                low,
                end,
            });
        }
        Ok(partitions)
    }
}

fn read(
    servers: &str,
    topic: &str,
    groups: &[String],
    timeout: Duration,
) -> Result<TopicOffsets, OperatorError> {
    let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
    let partitions = OffsetReader::new(servers)?.partitions(topic, timeout)?;
    let mut per_group = Vec::with_capacity(groups.len());
    for g in groups {
        if partitions.is_empty() {
            per_group.push((g.clone(), Vec::new()));
            continue;
        }
        let gc = client(servers, Some(g))?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(topic, p.partition);
        }
        let committed = gc
            .committed_offsets(tpl, timeout)
            .map_err(|e| kafka("could not read a group's committed offsets", &e))?;
        let rows = partitions
            .iter()
            .map(|po| {
                let committed = match committed
                    .find_partition(topic, po.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                };
                GroupPartition {
                    partition: po.partition,
                    committed,
                    lag: lag(po, committed),
                }
            })
            .collect();
        per_group.push((g.clone(), rows));
    }
    Ok(TopicOffsets {
        topic: topic.to_string(),
        exists: !partitions.is_empty(),
        partitions,
        groups: per_group,
    })
}

/// What a group has yet to read of a partition: from its committed offset (or, with none,
/// from the oldest message still held) to the end.
pub fn lag(p: &PartitionOffsets, committed: Option<i64>) -> i64 {
    (p.end - committed.unwrap_or(p.low).max(p.low)).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_oldest_message() {
        let p = PartitionOffsets {
            partition: 0,
            low: 10,
            end: 50,
        };
        assert_eq!(lag(&p, Some(45)), 5);
        assert_eq!(lag(&p, None), 40);
        assert_eq!(lag(&p, Some(3)), 40, "expired messages are not lag");
        assert_eq!(lag(&p, Some(60)), 0);
    }
}
