//! Replay: moving a sink's consumer group back (or forward), like `kafka-consumer-groups
//! --reset-offsets`, so the next try reads from there. Writes are upserts by `id`, so a
//! replay rewrites rows without duplicating them.
//!
//! The group must have no active member: a reset under a live consumer would be overwritten
//! by its next commit, so a continuous sink is paused first (its run ends and its consumer
//! leaves the group). The reset joins the group itself, as its only member, and commits as
//! that member: brokers (and librdkafka's mock cluster, which refuses commits from
//! outside a group it knows) accept that, and a member that sneaks in meanwhile shows up
//! as partitions this one was not given.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

use super::config::Config;
use crate::operators::error::classify;
use crate::operators::{parse_config, OperatorEnv, OperatorError};

/// Where to move the group to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayTo {
    /// The oldest offset still in each partition.
    Beginning,
    /// This offset in each partition (kept within what the partition holds).
    Offset(i64),
    /// The first offset at or after this time in each partition (the end if none is).
    Timestamp(DateTime<Utc>),
}

/// A sink task's group, topic and brokers, from its `with:`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkGroup {
    pub group: String,
    pub topic: String,
    #[serde(skip)]
    pub servers: String,
}

impl SinkGroup {
    /// Resolves a sink task's literal `with:` as a try would.
    pub fn of_task(
        with: Value,
        dag_id: &str,
        task_id: &str,
        env: &OperatorEnv,
    ) -> Result<SinkGroup, OperatorError> {
        let config: Config = parse_config(with)?;
        let servers = crate::operators::kafka::bootstrap_servers(
            config.bootstrap_servers.as_deref(),
            config.kafka_conn_id.as_deref(),
            env,
        )?;
        Ok(SinkGroup {
            group: config.group_id(dag_id, task_id),
            topic: config.topic,
            servers,
        })
    }
}

/// What a replay did to one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionReset {
    pub partition: i32,
    /// The group's committed offset before, if it had one.
    pub previous: Option<i64>,
    pub offset: i64,
}

/// Moves `group` on `partitions` of its topic (all when `None`) to `to`, committing the new
/// offsets. Fails if the group has active members or the brokers do not answer.
pub async fn replay(
    target: &SinkGroup,
    to: ReplayTo,
    partitions: Option<Vec<i32>>,
    timeout: Duration,
) -> Result<Vec<PartitionReset>, OperatorError> {
    let t = target.clone();
    tokio::task::spawn_blocking(move || replay_blocking(&t, to, partitions, timeout))
        .await
        .map_err(|e| OperatorError::internal("the replay's thread failed", e))?
}

/// What [`replay`] would do, without doing it: each chosen partition's committed offset
/// and the offset it would move to. Fails as [`replay`] would when the group has active
/// members (where the brokers can tell), the topic or a partition does not exist, or the
/// brokers do not answer. For the confirmation page.
pub async fn plan(
    target: &SinkGroup,
    to: ReplayTo,
    partitions: Option<Vec<i32>>,
    timeout: Duration,
) -> Result<Vec<PartitionReset>, OperatorError> {
    let t = target.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = group_client(&t)?;
        plan_blocking(&consumer, &t, to, partitions, timeout).map(|p| p.resets)
    })
    .await
    .map_err(|e| OperatorError::internal("the replay's thread failed", e))?
}

/// A replay worked out: what moves, and the topic's partitions.
struct Plan {
    resets: Vec<PartitionReset>,
    all: Vec<i32>,
}

/// A client in the sink's group, configured as the sink configures its own.
fn group_client(target: &SinkGroup) -> Result<BaseConsumer, OperatorError> {
    let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
    // As the sink sets them (see its `run`): the embedded broker holds a group for the
    // session timeout after its last member left, and real brokers refuse less than 6 s.
    let session = if crate::operators::kafka::is_embedded(&target.servers) {
        "1200"
    } else {
        "6000"
    };
    ClientConfig::new()
        .set("bootstrap.servers", &target.servers)
        .set("group.id", &target.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("session.timeout.ms", session)
        .set("heartbeat.interval.ms", "100")
        .set("log_level", "3")
        .create()
        .map_err(|e| kafka("could not create a Kafka client", &e))
}

fn active_members(target: &SinkGroup, n: usize) -> OperatorError {
    OperatorError::new(
        crate::operators::Reason::Rejected,
        format!("consumer group `{}` has {n} active member(s)", target.group),
    )
    .hint("a group with active members cannot be reset: pause the DAG (a continuous sink stops), wait for its run to end, and replay again")
}

fn plan_blocking(
    consumer: &BaseConsumer,
    target: &SinkGroup,
    to: ReplayTo,
    partitions: Option<Vec<i32>>,
    timeout: Duration,
) -> Result<Plan, OperatorError> {
    let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
    let active = |n: usize| active_members(target, n);
    // Refuse before joining, so live members are not disturbed by a rebalance. The embedded
    // broker cannot describe groups; there the assignment below is the check.
    match consumer.fetch_group_list(Some(&target.group), timeout) {
        Ok(groups) => {
            if let Some(g) = groups
                .groups()
                .iter()
                .find(|g| g.name() == target.group && !g.members().is_empty())
            {
                return Err(active(g.members().len()));
            }
        }
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnsupportedFeature) => {}
        Err(e) => return Err(kafka("could not describe the consumer group", &e)),
    }
    let topic = &target.topic;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka("could not reach Kafka", &e))?;
    let all: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if all.is_empty() {
        return Err(OperatorError::config(format!(
            "topic `{topic}` does not exist"
        )));
    }
    let chosen = match partitions {
        None => all.clone(),
        Some(ps) => {
            if let Some(p) = ps.iter().find(|p| !all.contains(p)) {
                return Err(OperatorError::config(format!(
                    "topic `{topic}` has no partition {p} (it has {})",
                    all.len()
                )));
            }
            ps
        }
    };
    let mut ask = TopicPartitionList::new();
    for &p in &chosen {
        ask.add_partition(topic, p);
    }
    let before = consumer
        .committed_offsets(ask, timeout)
        .map_err(|e| kafka("could not read the group's committed offsets", &e))?;
    let times = match to {
        ReplayTo::Timestamp(at) => {
            let mut tpl = TopicPartitionList::new();
            for &p in &chosen {
                tpl.add_partition_offset(topic, p, Offset::Offset(at.timestamp_millis()))
                    .map_err(|e| kafka("could not list partitions", &e))?;
            }
            Some(
                consumer
                    .offsets_for_times(tpl, timeout)
                    .map_err(|e| kafka("could not look offsets up by time", &e))?,
            )
        }
        _ => None,
    };
    let mut resets = Vec::new();
    for &p in &chosen {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| kafka("could not read the partition's offsets", &e))?;
        let offset = match to {
            ReplayTo::Beginning => low,
            ReplayTo::Offset(o) => o.clamp(low, high),
            ReplayTo::Timestamp(_) => match times
                .as_ref()
                .and_then(|t| t.find_partition(topic, p))
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o.clamp(low, high),
                _ => high, // nothing at or after that time
            },
        };
        let previous = match before.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        resets.push(PartitionReset {
            partition: p,
            previous,
            offset,
        });
    }
    Ok(Plan { resets, all })
}

fn replay_blocking(
    target: &SinkGroup,
    to: ReplayTo,
    partitions: Option<Vec<i32>>,
    timeout: Duration,
) -> Result<Vec<PartitionReset>, OperatorError> {
    let kafka = |what: &str, e: &rdkafka::error::KafkaError| classify::kafka_error(what, e);
    let consumer = group_client(target)?;
    let Plan { resets, all } = plan_blocking(&consumer, target, to, partitions, timeout)?;
    let topic = &target.topic;
    let mut commit = TopicPartitionList::new();
    for r in &resets {
        commit
            .add_partition_offset(topic, r.partition, Offset::Offset(r.offset))
            .map_err(|e| kafka("could not list the offsets to commit", &e))?;
    }
    // Join as the group's only member: every partition must come to this consumer.
    consumer
        .subscribe(&[topic.as_str()])
        .map_err(|e| kafka("could not join the consumer group", &e))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // Polling serves the group protocol; messages read here are dropped, not committed.
        let _ = consumer.poll(Duration::from_millis(50));
        let assigned = consumer
            .assignment()
            .map_err(|e| kafka("could not read the assignment", &e))?;
        if all
            .iter()
            .all(|&p| assigned.find_partition(topic, p).is_some())
        {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(active_members(target, 1));
        }
    }
    consumer.commit(&commit, CommitMode::Sync).map_err(|e| {
        kafka("the group refused the new offsets", &e).hint(
            "a group with active members cannot be reset: pause the DAG (a continuous sink stops) and wait for its run to end",
        )
    })?;
    consumer.unsubscribe();
    Ok(resets)
}
