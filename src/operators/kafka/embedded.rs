//! The embedded broker: librdkafka's in-process mock cluster, for `standalone` without a
//! Kafka and for tests.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use rdkafka::bindings as rdsys;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

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
        super::producers::forget_servers(&self.bootstrap);
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
