//! Kafka plumbing shared by the `publish` and `sink` operators and by `updraft standalone`:
//! where the brokers are, and an embedded Kafka-protocol broker for when there are none.
//!
//! [`EmbeddedKafka`] is librdkafka's in-process mock cluster. It speaks the Kafka protocol on
//! loopback ports (produce, idempotent produce, fetch, consumer groups, offset commits,
//! metadata), so standalone runs the whole pipeline with nothing else installed and tests get
//! a fresh broker each. It keeps everything in memory and is NOT for production: it does not
//! implement CreateTopics (topics are auto-created on first use, or through
//! [`EmbeddedKafka::create_topic`]) and loses everything when the process exits.

mod embedded;
pub mod producers;

use rdkafka::ClientConfig;

pub use embedded::{create_embedded_topic, is_embedded, read_topic, EmbeddedKafka};

use crate::operators::{OperatorError, Reason};
use crate::settings::OperatorEnv;

/// Resolves the bootstrap servers for a Kafka operator. Precedence: the task's literal
/// `bootstrap_servers`, else its `kafka_conn_id` connection (which must exist), else
/// `KAFKA_BOOTSTRAP_SERVERS` (in standalone, the embedded broker). Not finding any is
/// permanent: another try would not find them either.
pub fn bootstrap_servers(
    literal: Option<&str>,
    conn_id: Option<&str>,
    env: &OperatorEnv,
) -> Result<String, OperatorError> {
    if let Some(s) = literal.filter(|s| !s.trim().is_empty()) {
        return Ok(s.trim().to_string());
    }
    if let Some(id) = conn_id {
        let conn = env.connections.get(&id.to_lowercase()).ok_or_else(|| {
            OperatorError::new(
                Reason::MissingConnection,
                format!("Kafka connection `{id}` is not defined"),
            )
            .hint(format!(
                "set AIRFLOW_CONN_{} to e.g. kafka://broker1:9092,broker2:9092, or change `kafka_conn_id`",
                id.to_uppercase()
            ))
        })?;
        return servers_from_uri(&conn.uri)
            .map_err(|e| e.hint(format!("fix AIRFLOW_CONN_{}", id.to_uppercase())));
    }
    env.kafka_bootstrap_servers.clone().ok_or_else(|| {
        OperatorError::new(Reason::MissingConnection, "no Kafka brokers configured").hint(
            "set KAFKA_BOOTSTRAP_SERVERS, or `bootstrap_servers` / `kafka_conn_id` on the task",
        )
    })
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

/// `kafka://h1:9092,h2:9092` (or a bare `h1:9092,h2:9092`) → `h1:9092,h2:9092`. Any user
/// info and path are dropped: SASL settings belong in the operator's `properties`.
pub fn servers_from_uri(uri: &str) -> Result<String, OperatorError> {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let hosts = rest.split(['/', '?']).next().unwrap_or_default().trim();
    if hosts.is_empty() {
        return Err(OperatorError::config(
            "the Kafka connection URI names no broker",
        ));
    }
    Ok(hosts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Connection;

    #[test]
    fn broker_precedence() {
        let mut env = OperatorEnv {
            kafka_bootstrap_servers: Some("env:9092".into()),
            ..Default::default()
        };
        env.connections.insert(
            "kafka_main".into(),
            Connection {
                uri: "kafka://u:pw@k1:9092,k2:9092/x".into(),
            },
        );
        assert_eq!(
            bootstrap_servers(Some("lit:1"), Some("kafka_main"), &env).unwrap(),
            "lit:1"
        );
        assert_eq!(
            bootstrap_servers(None, Some("KAFKA_MAIN"), &env).unwrap(),
            "k1:9092,k2:9092"
        );
        assert_eq!(bootstrap_servers(None, None, &env).unwrap(), "env:9092");
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
