use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::core::Duration;

/// Arguments of the `publish` operator (`uses: updraft.publish`).
///
/// Brokers: `bootstrap_servers`, else the `kafka_conn_id` connection, else
/// `KAFKA_BOOTSTRAP_SERVERS` (in standalone without Kafka, the embedded broker).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The records to publish, one message each, as JSON: normally `{$x: fetch_task}`.
    pub records: Vec<serde_json::Value>,
    /// The topic to publish to.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// A record field whose value becomes the message key (strings as is, other values as
    /// JSON). Without it messages have no key and spread over partitions.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Brokers, `host:port,host:port`. Overrides `kafka_conn_id` and `KAFKA_BOOTSTRAP_SERVERS`.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// A named connection (`AIRFLOW_CONN_<ID>=kafka://host:port,host:port`) for the brokers.
    #[serde(default)]
    pub kafka_conn_id: Option<String>,
    /// Create the topic when it does not exist.
    #[serde(default = "yes")]
    pub create_topic: bool,
    /// Partitions of a topic this task creates.
    #[serde(default = "three")]
    pub partitions: i32,
    /// Replication factor of a topic this task creates.
    #[serde(default = "one")]
    pub replication_factor: i32,
    /// How long to wait for the brokers to answer at all before failing the try.
    #[serde(default = "ten_seconds")]
    pub connect_timeout: Duration,
    /// How long one message may wait for its acknowledgement (librdkafka's
    /// `message.timeout.ms`); past it the try fails and the retry policy applies.
    #[serde(default = "thirty_seconds")]
    pub delivery_timeout: Duration,
    /// The record schema (contract) records must match: that of this fetch task. Default:
    /// the nearest fetch task upstream, if there is one. A record that does not match goes
    /// to `dead_letter_topic` instead, with the reason in its `updraft.error` header.
    #[serde(default)]
    pub schema_from: Option<crate::operators::contract::SchemaFrom>,
    /// Where records that break the contract go. Default `<topic>.dlq`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Fail the task, before publishing anything, when more records than this break the
    /// contract. Default: no limit; each is logged and counted.
    #[serde(default)]
    pub max_dead_letters: Option<u64>,
    /// Extra librdkafka producer properties (e.g. `security.protocol`, `compression.type`).
    /// `enable.idempotence=true` and `acks=all` are always set on top of them.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Config {
    /// Pure checks beyond the types.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if !valid_topic(&self.topic) {
            errors.push(("with.topic".into(), format!("`{}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`; at most 249)", self.topic)));
        }
        if self.partitions < 1 {
            errors.push(("with.partitions".into(), "must be at least 1".into()));
        }
        if self.replication_factor < 1 {
            errors.push((
                "with.replication_factor".into(),
                "must be at least 1".into(),
            ));
        }
        if self.delivery_timeout == Duration::ZERO || self.connect_timeout == Duration::ZERO {
            errors.push((
                "with.delivery_timeout".into(),
                "timeouts must be longer than zero".into(),
            ));
        }
        for key in ["enable.idempotence", "acks", "bootstrap.servers"] {
            if self.properties.contains_key(key) {
                errors.push((
                    format!("with.properties.{key}"),
                    "is set by the operator and cannot be overridden".into(),
                ));
            }
        }
        errors
    }
}

/// Kafka's topic name rule.
pub fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub fn default_topic() -> String {
    "users_created".into()
}
fn yes() -> bool {
    true
}
fn one() -> i32 {
    1
}
fn three() -> i32 {
    3
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
