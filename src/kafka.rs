//! Kafka plumbing shared by the `publish` and `sink` operators and by `updraft standalone`:
//! where the brokers are, and an embedded Kafka-protocol broker for when there are none.
//!
//! [`EmbeddedKafka`] is librdkafka's in-process mock cluster. It speaks the Kafka protocol on
//! loopback ports (produce, idempotent produce, fetch, consumer groups, offset commits,
//! metadata), so standalone runs the whole pipeline with nothing else installed and tests get
//! a fresh broker each. It keeps everything in memory and is NOT for production: it does not
//! implement CreateTopics (topics are auto-created on first use, or through
//! [`EmbeddedKafka::create_topic`]) and loses everything when the process exits.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

use crate::operators::context::OperatorEnv;

/// Resolves the bootstrap servers for a Kafka operator. Precedence: the task's literal
/// `bootstrap_servers`, else its `kafka_conn_id` connection (which must exist), else
/// `KAFKA_BOOTSTRAP_SERVERS` (in standalone, the embedded broker).
pub fn bootstrap_servers(
    literal: Option<&str>,
    conn_id: Option<&str>,
    env: &OperatorEnv,
) -> anyhow::Result<String> {
    if let Some(s) = literal.filter(|s| !s.trim().is_empty()) {
        return Ok(s.trim().to_string());
    }
    if let Some(id) = conn_id {
        let conn = env.connections.get(&id.to_lowercase()).ok_or_else(|| {
            anyhow::anyhow!(
                "Kafka connection `{id}` is not defined; set AIRFLOW_CONN_{} to e.g. kafka://broker1:9092,broker2:9092",
                id.to_uppercase()
            )
        })?;
        return servers_from_uri(&conn.uri);
    }
    env.kafka_bootstrap_servers.clone().ok_or_else(|| {
        anyhow::anyhow!("no Kafka brokers configured: set KAFKA_BOOTSTRAP_SERVERS, or `bootstrap_servers` / `kafka_conn_id` on the task")
    })
}

/// `kafka://h1:9092,h2:9092` (or a bare `h1:9092,h2:9092`) → `h1:9092,h2:9092`. Any user
/// info and path are dropped: SASL settings belong in the operator's `properties`.
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

pub fn servers_from_uri(uri: &str) -> anyhow::Result<String> {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let hosts = rest.split(['/', '?']).next().unwrap_or_default().trim();
    if hosts.is_empty() {
        anyhow::bail!("the Kafka connection URI names no broker");
    }
    Ok(hosts.to_string())
}

/// What `updraft standalone` does for the pipeline when nothing is configured: without
/// `KAFKA_BOOTSTRAP_SERVERS`, start an [`EmbeddedKafka`] and point the operators at it; without
/// any sink target, sink into standalone's own database. Each default is logged loudly, as
/// neither is for production. Keep the returned broker alive as long as the engine runs.
pub fn standalone_defaults(
    env: &mut OperatorEnv,
    database_url: &str,
) -> anyhow::Result<Option<EmbeddedKafka>> {
    let mut kafka = None;
    if env.kafka_bootstrap_servers.is_none() {
        let embedded = EmbeddedKafka::start(3)?;
        tracing::warn!(
            bootstrap_servers = %embedded.bootstrap_servers(),
            "no KAFKA_BOOTSTRAP_SERVERS: started an embedded in-memory Kafka-protocol broker (librdkafka's mock \
             cluster); messages are lost when this process exits. NOT FOR PRODUCTION"
        );
        env.kafka_bootstrap_servers = Some(embedded.bootstrap_servers());
        kafka = Some(embedded);
    }
    let has_target = env
        .connections
        .contains_key(crate::operators::sink::DEFAULT_CONN_ID)
        || env.cassandra_contact_points.is_some()
        || env.sink_postgres_url.is_some();
    if !has_target {
        tracing::warn!(
            database = %crate::operators::context::mask_uri(database_url),
            "no sink target (AIRFLOW_CONN_SINK_DEFAULT, CASSANDRA_CONTACT_POINTS, SINK_POSTGRES_URL): the sink \
             writes to standalone's own Postgres, schema spark_streams. NOT FOR PRODUCTION"
        );
        env.sink_postgres_url = Some(database_url.to_string());
    }
    Ok(kafka)
}

/// librdkafka's in-process mock cluster, owned for as long as this value lives.
///
/// librdkafka ties a mock cluster to a client handle; we create a private producer handle that
/// owns it (as `rdkafka::mocking::MockCluster::new` does), and destroy the cluster before the
/// handle. Unlike `MockCluster`, this type is `Send + Sync`, so it can live in an `Arc` for
/// the whole process or be shared by test tasks.
pub struct EmbeddedKafka {
    cluster: NonNull<rdsys::rd_kafka_mock_cluster_t>,
    bootstrap: String,
    // Must outlive `cluster`; dropped after `Drop::drop` destroyed the cluster.
    _owner: BaseProducer,
}

// SAFETY: librdkafka's mock cluster API is thread-safe: every `rd_kafka_mock_*` call either
// takes the cluster's lock or posts an operation to the cluster's own thread. The pointer
// stays valid until `Drop`, which runs once, and `_owner` (a thread-safe client) outlives it.
unsafe impl Send for EmbeddedKafka {}
unsafe impl Sync for EmbeddedKafka {}

impl EmbeddedKafka {
    /// Starts a one-broker cluster. `partitions` is the partition count of topics it creates
    /// itself; the default topic `users_created` is created up front with that count.
    pub fn start(partitions: i32) -> anyhow::Result<EmbeddedKafka> {
        Self::start_with_brokers(1, partitions)
    }

    /// Starts a cluster of `brokers` brokers (ids 1..=brokers).
    pub fn start_with_brokers(brokers: i32, partitions: i32) -> anyhow::Result<EmbeddedKafka> {
        let owner: BaseProducer =
            ClientConfig::new()
                .set("log_level", "3")
                .create()
                .map_err(|e| {
                    anyhow::anyhow!("could not create the embedded Kafka's client handle: {e}")
                })?;
        // SAFETY: `native_ptr` is a live handle; the cluster is destroyed in `Drop` before it.
        let raw = unsafe { rdsys::rd_kafka_mock_cluster_new(owner.client().native_ptr(), brokers) };
        let cluster = NonNull::new(raw)
            .ok_or_else(|| anyhow::anyhow!("librdkafka could not start its mock cluster"))?;
        // SAFETY: the cluster is live; the returned string is owned by it and copied at once.
        let bootstrap =
            unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(cluster.as_ptr())) }
                .to_string_lossy()
                .into_owned();
        let kafka = EmbeddedKafka {
            cluster,
            bootstrap,
            _owner: owner,
        };
        // Consumer groups form at once instead of after the default 3 s delay.
        // SAFETY: the cluster is live.
        unsafe { rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(kafka.cluster.as_ptr(), 0) };
        kafka.create_topic("users_created", partitions)?;
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(kafka.bootstrap.clone(), Live(kafka.cluster));
        Ok(kafka)
    }

    /// The `host:port` list clients connect to.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap.clone()
    }

    /// Creates a topic (the mock cluster has no CreateTopics API). Existing topics are kept.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        create_mock_topic(self.cluster, topic, partitions)
    }

    /// Takes a broker down (its connections are closed and refused), for failure tests.
    pub fn broker_down(&self, broker_id: i32) {
        // SAFETY: the cluster is live.
        unsafe { rdsys::rd_kafka_mock_broker_set_down(self.cluster.as_ptr(), broker_id) };
    }

    /// Brings a broker back up.
    pub fn broker_up(&self, broker_id: i32) {
        // SAFETY: the cluster is live.
        unsafe { rdsys::rd_kafka_mock_broker_set_up(self.cluster.as_ptr(), broker_id) };
    }

    /// Makes the next `errors.len()` requests of one API fail with these errors, in order.
    pub fn push_request_errors(
        &self,
        api: rdkafka::types::RDKafkaApiKey,
        errors: &[rdkafka::types::RDKafkaRespErr],
    ) {
        // SAFETY: the cluster is live; librdkafka copies the array.
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.cluster.as_ptr(),
                api as i16,
                errors.len(),
                errors.as_ptr(),
            )
        };
    }

    /// Forgets errors pushed for one API.
    pub fn clear_request_errors(&self, api: rdkafka::types::RDKafkaApiKey) {
        // SAFETY: the cluster is live.
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.cluster.as_ptr(), api as i16) };
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // Kept producers would otherwise keep reconnecting to the vanished ports.
        crate::operators::publish::forget_servers(&self.bootstrap);
        // Out of the registry first: a lookup holds its lock while it uses the cluster.
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(&self.bootstrap);
        // SAFETY: created in `start_with_brokers`, destroyed exactly once, before `_owner`.
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.cluster.as_ptr()) };
    }
}

/// A live cluster's pointer, in the registry.
struct Live(NonNull<rdsys::rd_kafka_mock_cluster_t>);

// SAFETY: see `EmbeddedKafka`; an entry is removed (under the lock) before its cluster is
// destroyed, and only used under the lock.
unsafe impl Send for Live {}

/// The embedded clusters of this process, by bootstrap string.
static LIVE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Live>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether `servers` is an embedded cluster of this process.
pub fn is_embedded(servers: &str) -> bool {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(servers)
}

/// Creates `topic` if `servers` is an embedded cluster of this process, which has no
/// CreateTopics API (a client's request would wait out its timeout). `None`: not embedded.
pub fn create_embedded_topic(
    servers: &str,
    topic: &str,
    partitions: i32,
) -> Option<anyhow::Result<()>> {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    let cluster = live.get(servers)?;
    Some(create_mock_topic(cluster.0, topic, partitions))
}

fn create_mock_topic(
    cluster: NonNull<rdsys::rd_kafka_mock_cluster_t>,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let name = CString::new(topic)?;
    // SAFETY: the caller guarantees the cluster is live; librdkafka copies the name.
    let err = unsafe {
        rdsys::rd_kafka_mock_topic_create(cluster.as_ptr(), name.as_ptr(), partitions.max(1), 1)
    };
    match err {
        rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        | rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS => Ok(()),
        other => anyhow::bail!("could not create topic `{topic}` on the embedded Kafka: {other:?}"),
    }
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}

/// One message as [`read_topic`] returns it: partition, key, payload.
pub type RawMessage = (i32, Option<Vec<u8>>, Vec<u8>);

/// Reads a whole topic, every partition from its start to its end as of now, and returns
/// `(partition, key, payload)` per message. For tests, the bench and `dags test`; the `sink`
/// operator is the production consumer.
pub fn read_topic(
    servers: &str,
    topic: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Vec<RawMessage>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "updraft-read-topic")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        remaining += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last_error = None;
    while remaining > 0 && std::time::Instant::now() < deadline {
        if let Some(msg) = consumer.poll(std::time::Duration::from_millis(100)) {
            // Errors here are librdkafka's transient reports (e.g. "all brokers down" while
            // it swaps the bootstrap connection for the broker's own): it retries by itself.
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            out.push((
                msg.partition(),
                msg.key().map(<[u8]>::to_vec),
                msg.payload().unwrap_or_default().to_vec(),
            ));
            remaining -= 1;
        }
    }
    if remaining > 0 {
        anyhow::bail!(
            "read {} messages of topic `{topic}` but {remaining} more did not arrive in time{}",
            out.len(),
            last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::context::Connection;

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
    }

    #[test]
    fn standalone_defaults_fill_only_what_is_missing() {
        let mut env = OperatorEnv::default();
        let kafka = standalone_defaults(&mut env, "postgres://u:pw@h/db").unwrap();
        assert_eq!(
            env.kafka_bootstrap_servers,
            kafka.as_ref().map(|k| k.bootstrap_servers())
        );
        assert_eq!(
            env.sink_postgres_url.as_deref(),
            Some("postgres://u:pw@h/db")
        );
        let mut env = OperatorEnv {
            kafka_bootstrap_servers: Some("k:9092".into()),
            cassandra_contact_points: Some("c:9042".into()),
            ..Default::default()
        };
        assert!(standalone_defaults(&mut env, "postgres://h/db")
            .unwrap()
            .is_none());
        assert_eq!(env.kafka_bootstrap_servers.as_deref(), Some("k:9092"));
        assert_eq!(env.sink_postgres_url, None);
    }

    #[test]
    fn embedded_kafka_starts_and_stops() {
        let k = EmbeddedKafka::start(3).unwrap();
        assert!(
            k.bootstrap_servers().contains("127.0.0.1:"),
            "{}",
            k.bootstrap_servers()
        );
        k.create_topic("other", 2).unwrap();
        drop(k);
    }
}
