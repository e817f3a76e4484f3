//! The topic monitor's shared part, for its pages, its API and the Prometheus gauges: which
//! topics the DAGs use (by brokers and name) and what the brokers say about them.
//!
//! # Layout
//! - [`rates`]: the background sampler of end offsets and its bounded history, from which
//!   messages per second are computed.
//! - [`chart`]: the messages/s history as a small SVG chart, drawn here (no script, nothing
//!   fetched from elsewhere: the CSP allows neither).
//!
//! A topic is known by its brokers and its name ([`TopicKey`]): one name on two broker sets
//! is two topics. Pages and API name a topic by its name and take `servers` only when the
//! name alone is ambiguous ([`find`]).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;

use crate::dag::streams::{topic_uses, Role, TopicUse};
use crate::operators::kafka::monitor::{topic_offsets, TopicOffsets};
use crate::operators::OperatorEnv;

pub mod chart;
pub mod rates;

/// A topic on a set of brokers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicKey {
    /// The bootstrap servers, as the tasks resolve them.
    pub servers: String,
    pub topic: String,
}

/// Every topic the active DAGs' publish and sink tasks use, with the tasks using it.
pub async fn known_topics(
    pool: &PgPool,
    env: &OperatorEnv,
) -> sqlx::Result<BTreeMap<TopicKey, Vec<TopicUse>>> {
    let dags = crate::db::dags::current_specs(pool).await?;
    let mut by_topic: BTreeMap<TopicKey, Vec<TopicUse>> = BTreeMap::new();
    for d in &dags {
        for u in topic_uses(d, env) {
            let key = TopicKey {
                servers: u.servers.clone(),
                topic: u.topic.clone(),
            };
            by_topic.entry(key).or_default().push(u);
        }
    }
    Ok(by_topic)
}

/// A topic some DAG uses, with what the brokers say about it (or why they did not).
pub struct TopicView {
    pub key: TopicKey,
    pub uses: Vec<TopicUse>,
    pub offsets: Result<TopicOffsets, String>,
}

impl TopicView {
    /// The consumer groups of the topic's sink tasks, each with the first task using it.
    pub fn sink_groups(&self) -> Vec<(&str, &TopicUse)> {
        let mut out: Vec<(&str, &TopicUse)> = Vec::new();
        for u in self.uses.iter().filter(|u| u.role == Role::Consumes) {
            if let Some(g) = u.group.as_deref() {
                if !out.iter().any(|(seen, _)| *seen == g) {
                    out.push((g, u));
                }
            }
        }
        out
    }
}

/// Asks the brokers about one topic: its partitions' offsets and its sink groups' committed
/// offsets and lag. An unreachable broker is this topic's error, not the caller's.
pub async fn view(key: TopicKey, uses: Vec<TopicUse>, timeout: Duration) -> TopicView {
    let mut groups: Vec<String> = uses.iter().filter_map(|u| u.group.clone()).collect();
    groups.sort();
    groups.dedup();
    let offsets = topic_offsets(&key.servers, &key.topic, &groups, timeout)
        .await
        .map_err(|e| e.to_string());
    TopicView { key, uses, offsets }
}

/// How many topics are asked about at once (each on a blocking thread).
const CONCURRENT_VIEWS: usize = 8;

/// [`view`] of every known topic, several at a time, so an unreachable broker set costs a
/// few timeouts rather than one per topic in turn.
pub async fn topic_views(
    pool: &PgPool,
    env: &OperatorEnv,
    timeout: Duration,
) -> sqlx::Result<Vec<TopicView>> {
    use futures::StreamExt;
    let known = known_topics(pool, env).await?;
    Ok(futures::stream::iter(known)
        .map(|(key, uses)| view(key, uses, timeout))
        .buffered(CONCURRENT_VIEWS)
        .collect()
        .await)
}

/// How a topic name (and perhaps its brokers) matched the known topics.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(TopicKey, Vec<TopicUse>),
    /// The name is used on several broker sets (these); `servers` must say which.
    Ambiguous(Vec<String>),
    Unknown,
}

/// Finds the topic `topic` (on `servers`, when given) among the known topics.
pub fn find(
    known: BTreeMap<TopicKey, Vec<TopicUse>>,
    topic: &str,
    servers: Option<&str>,
) -> Lookup {
    let mut matching: Vec<(TopicKey, Vec<TopicUse>)> = known
        .into_iter()
        .filter(|(k, _)| k.topic == topic && servers.is_none_or(|s| k.servers == s))
        .collect();
    match matching.len() {
        0 => Lookup::Unknown,
        1 => {
            let (k, uses) = matching.remove(0);
            Lookup::Found(k, uses)
        }
        _ => Lookup::Ambiguous(matching.into_iter().map(|(k, _)| k.servers).collect()),
    }
}

/// Whether `topic` is used on more than one broker set, so links must name the brokers.
pub fn is_ambiguous<'a>(keys: impl IntoIterator<Item = &'a TopicKey>, topic: &str) -> bool {
    keys.into_iter().filter(|k| k.topic == topic).count() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_(servers: &str, topic: &str) -> (TopicKey, Vec<TopicUse>) {
        let u = TopicUse {
            dag_id: "d".into(),
            task_id: "t".into(),
            role: Role::Publishes,
            topic: topic.into(),
            group: None,
            servers: servers.into(),
        };
        (
            TopicKey {
                servers: servers.into(),
                topic: topic.into(),
            },
            vec![u],
        )
    }

    #[test]
    fn a_name_on_two_broker_sets_needs_its_servers() {
        let known: BTreeMap<_, _> = [
            use_("a:9092", "users"),
            use_("b:9092", "users"),
            use_("a:9092", "orders"),
        ]
        .into_iter()
        .collect();
        assert!(
            matches!(find(known.clone(), "orders", None), Lookup::Found(k, _) if k.servers == "a:9092")
        );
        assert_eq!(
            find(known.clone(), "users", None),
            Lookup::Ambiguous(vec!["a:9092".into(), "b:9092".into()])
        );
        assert!(
            matches!(find(known.clone(), "users", Some("b:9092")), Lookup::Found(k, _) if k.servers == "b:9092")
        );
        assert_eq!(
            find(known.clone(), "users", Some("c:9092")),
            Lookup::Unknown
        );
        assert_eq!(find(known.clone(), "nope", None), Lookup::Unknown);
        assert!(is_ambiguous(known.keys(), "users"));
        assert!(!is_ambiguous(known.keys(), "orders"));
    }
}
