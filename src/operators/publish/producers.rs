//! The process's idempotent producers, kept between tries of publish tasks.
//!
//! Why: an idempotent producer cannot send until the brokers have given it a producer id, and
//! librdkafka asks for one as the producer is created; when no connection is up yet at that
//! moment (the usual case) it asks again only after 500 ms. Measured on the embedded broker,
//! that wait was up to half of a 50,000-record publish. Kept per client configuration, only
//! the first publish in a process pays it.
//!
//! A producer returns to the cache only through [`Pooled::keep`], after a publish in which every
//! message was acknowledged; a try that fails or is cancelled drops it, so a producer with a
//! fatal error or with messages still queued is never reused. One idle for [`IDLE`] is closed
//! at the next `take`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientConfig;

/// How long an unused producer stays open.
pub const IDLE: Duration = Duration::from_secs(300);

/// A client configuration, sorted, as the cache key.
type Key = Vec<(String, String)>;

struct Entry {
    producer: FutureProducer,
    last_used: Instant,
}

static CACHE: LazyLock<Mutex<HashMap<Key, Entry>>> = LazyLock::new(Default::default);

/// A producer for one try: back into the cache with [`Pooled::keep`], or dropped from it.
pub struct Pooled {
    key: Key,
    producer: FutureProducer,
    /// Whether it came from the cache (the try's log says so).
    pub reused: bool,
    kept: bool,
}

fn key_of(config: &ClientConfig) -> Key {
    let mut key: Key = config
        .config_map()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    key.sort();
    key
}

/// The cached producer for `config` if it is healthy, else a new one.
pub fn take(config: &ClientConfig) -> rdkafka::error::KafkaResult<Pooled> {
    let key = key_of(config);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|_, e| e.last_used.elapsed() < IDLE);
    if let Some(entry) = cache.get_mut(&key) {
        if entry.producer.client().fatal_error().is_none() {
            entry.last_used = Instant::now();
            return Ok(Pooled {
                key,
                producer: entry.producer.clone(),
                reused: true,
                kept: false,
            });
        }
        cache.remove(&key);
    }
    let producer: FutureProducer = config.create()?;
    cache.insert(
        key.clone(),
        Entry {
            producer: producer.clone(),
            last_used: Instant::now(),
        },
    );
    Ok(Pooled {
        key,
        producer,
        reused: false,
        kept: false,
    })
}

impl Pooled {
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Every message of the try was acknowledged: the producer may serve the next one.
    pub fn keep(mut self) {
        self.kept = true;
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(
            std::mem::take(&mut self.key),
            Entry {
                producer: self.producer.clone(),
                last_used: Instant::now(),
            },
        );
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Forget this producer, not one another try has put in its place since.
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let same = cache.get(&self.key).is_some_and(|e| {
            e.producer.client().native_ptr() == self.producer.client().native_ptr()
        });
        if same {
            cache.remove(&self.key);
        }
    }
}
