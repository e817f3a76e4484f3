//! Kafka plumbing shared by the `publish` and `sink` operators and by `updraft standalone`:
//! where the brokers are, and an embedded Kafka-protocol broker for when there are none.
//!
//! [`EmbeddedKafka`] is librdkafka's in-process mock cluster. It speaks the Kafka protocol on
//! loopback ports (produce, idempotent produce, fetch, consumer groups, offset commits,
//! metadata), so standalone runs the whole pipeline with nothing else installed and tests get
//! a fresh broker each. It keeps everything in memory and is NOT for production: it does not
//! implement CreateTopics (topics are auto-created on first use, or through
//! [`EmbeddedKafka::create_topic`]) and loses everything when the process exits.

pub mod browse;
mod embedded;
pub mod monitor;
pub mod producers;

use rdkafka::ClientConfig;

pub use embedded::{create_embedded_topic, is_embedded, read_topic, EmbeddedKafka};

use crate::operators::{OperatorError, Reason};
use crate::settings::OperatorEnv;

/// The connection Kafka operators use when `kafka_conn_id` is not given, if it is defined
/// (Airflow's Kafka provider's default id), so brokers can be changed from the UI.
pub const DEFAULT_CONN_ID: &str = "kafka_default";

/// Resolves the bootstrap servers for a Kafka operator. Precedence: the task's literal
/// `bootstrap_servers`, else its `kafka_conn_id` connection (which must exist), else the
/// `kafka_default` connection if defined, else `KAFKA_BOOTSTRAP_SERVERS` (in standalone, the
/// embedded broker). Connections are read at each try, so a change applies at the next one.
pub fn bootstrap_servers(
    literal: Option<&str>,
    conn_id: Option<&str>,
    env: &OperatorEnv,
) -> Result<String, OperatorError> {
    if let Some(s) = literal.filter(|s| !s.trim().is_empty()) {
        return Ok(s.trim().to_string());
    }
    if let Some(id) = conn_id {
        return servers_of(env.connection(id)?);
    }
    if env.has_connection(DEFAULT_CONN_ID) {
        return servers_of(env.connection(DEFAULT_CONN_ID)?);
    }
    env.kafka_bootstrap_servers.clone().ok_or_else(|| {
        OperatorError::new(Reason::MissingConnection, "no Kafka brokers configured").hint(
            "set KAFKA_BOOTSTRAP_SERVERS, or `bootstrap_servers` / `kafka_conn_id` on the task",
        )
    })
}

/// The configuration of an idempotent producer whose every message must reach all in-sync
/// replicas (`acks=all`), logging errors only: what the dead-letter producers use (publish
/// tasks add the DAG's properties and timeouts to the same two guarantees).
pub fn idempotent_producer(servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("log_level", "3");
    config
}

/// Sets each `(key, value)` on `config` unless the DAG's `properties` already set that key.
pub fn set_defaults(
    config: &mut ClientConfig,
    properties: &std::collections::BTreeMap<String, String>,
    defaults: &[(&str, &str)],
) {
    for (k, v) in defaults {
        if !properties.contains_key(*k) {
            config.set(*k, *v);
        }
    }
}

/// The brokers of a Kafka connection: its extra's `bootstrap.servers` (as Airflow's Kafka
/// provider keeps them), else its host (a list `h1:9092,h2:9092`, or one host with `port`).
/// User info and schema are not used: SASL settings belong in the operator's `properties`.
pub fn servers_of(conn: &crate::settings::Connection) -> Result<String, OperatorError> {
    let from_extra = conn
        .extra_dejson()
        .get("bootstrap.servers")
        .and_then(|v| v.as_str().map(str::to_string));
    match from_extra.or_else(|| conn.host_port()) {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(OperatorError::config(format!("the Kafka connection `{}` names no broker: set its host (`broker:9092` or `b1:9092,b2:9092`) or `bootstrap.servers` in its extra", conn.conn_id))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_precedence() {
        let mut env = OperatorEnv {
            kafka_bootstrap_servers: Some("env:9092".into()),
            ..Default::default()
        };
        env.set_env_connection("kafka_main", "kafka://u:pw@k1:9092,k2:9092/x");
        assert_eq!(
            bootstrap_servers(Some("lit:1"), Some("kafka_main"), &env).unwrap(),
            "lit:1"
        );
        assert_eq!(
            bootstrap_servers(None, Some("KAFKA_MAIN"), &env).unwrap(),
            "k1:9092,k2:9092"
        );
        assert_eq!(bootstrap_servers(None, None, &env).unwrap(), "env:9092");
        env.set_env_connection(
            "kafka_default",
            r#"{"conn_type": "kafka", "extra": {"bootstrap.servers": "d1:9092"}}"#,
        );
        assert_eq!(bootstrap_servers(None, None, &env).unwrap(), "d1:9092");
        let err = bootstrap_servers(None, Some("nope"), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AIRFLOW_CONN_NOPE"), "{err}");
        let err = bootstrap_servers(None, None, &OperatorEnv::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("KAFKA_BOOTSTRAP_SERVERS"), "{err}");
        let err = bootstrap_servers(None, None, &OperatorEnv::default()).unwrap_err();
        assert_eq!(err.reason(), Reason::MissingConnection);
        assert!(!err.is_transient());
    }
}
