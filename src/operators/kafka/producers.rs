//! The process's idempotent producers, kept between tries of publish tasks.
//!
//! Why: an idempotent producer cannot send until the brokers have given it a producer id, and
//! librdkafka asks for one as the producer is created; when no connection is up yet at that
//! moment (the usual case) it asks again only after 500 ms. Measured on the embedded broker,
//! that wait was up to half of a 50,000-record publish. Kept per client configuration, only
//! the first publish in a process pays it.
//!
//! A try checks a producer out (overlapping tries with the same configuration each get their
//! own) and returns it with [`Pooled::keep`] only after a publish in which every message was
//! acknowledged; a try that fails or is cancelled closes it, so a producer with a fatal error
//! or with messages still queued is never reused. At most [`CAPACITY`] are kept; one idle for
//! [`IDLE`] is closed by a sweep on the runtime (or at the next checkout), and those of an
//! embedded cluster when it stops. Closing (which can block for a moment) happens on a
//! blocking thread, never under the lock.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientConfig;

/// How long an unused producer stays open. While its brokers are down an open producer keeps
/// reconnecting (and librdkafka logs each failure), so not long.
pub const IDLE: Duration = Duration::from_secs(60);

/// How many unused producers are kept.
pub const CAPACITY: usize = 16;

/// A client configuration, sorted, as the cache key.
type Key = Vec<(String, String)>;

struct Entry {
    producer: FutureProducer,
    last_used: Instant,
}

static CACHE: LazyLock<Mutex<HashMap<Key, Entry>>> = LazyLock::new(Default::default);

/// A producer checked out for one try: back into the cache with [`Pooled::keep`], else closed.
pub struct Pooled {
    key: Key,
    producer: Option<FutureProducer>,
    /// Whether it served an earlier try (the try's log says so).
    pub reused: bool,
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

/// Closes producers off the async threads: destroying one flushes and joins its threads.
fn close(producers: Vec<FutureProducer>) {
    if producers.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(producers))),
        Err(_) => drop(producers),
    }
}

/// Takes the cached producers that match out of the cache.
fn remove_where(
    cache: &mut HashMap<Key, Entry>,
    matches: impl Fn(&Key, &Entry) -> bool,
) -> Vec<FutureProducer> {
    let keys: Vec<Key> = cache
        .iter()
        .filter(|(k, e)| matches(k, e))
        .map(|(k, _)| k.clone())
        .collect();
    keys.iter()
        .filter_map(|k| cache.remove(k))
        .map(|e| e.producer)
        .collect()
}

fn idle(_: &Key, e: &Entry) -> bool {
    e.last_used.elapsed() >= IDLE
}

/// Closes the cached producers of `servers` at once (its embedded cluster is stopping).
pub fn forget_servers(servers: &str) {
    let gone = {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        remove_where(&mut cache, |k, _| {
            k.iter()
                .any(|(name, value)| name == "bootstrap.servers" && value == servers)
        })
    };
    // Synchronously, while the cluster still answers: they close cleanly and quietly.
    drop(gone);
}

/// Closes idle producers every half [`IDLE`], on the runtime that first kept one.
fn start_sweeping() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    STARTED.call_once(|| {
        rt.spawn(async {
            loop {
                tokio::time::sleep(IDLE / 2).await;
                let gone = {
                    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
                    remove_where(&mut cache, idle)
                };
                close(gone);
            }
        });
    });
}

/// A healthy cached producer for `config`, else a new one.
pub fn take(config: &ClientConfig) -> rdkafka::error::KafkaResult<Pooled> {
    let key = key_of(config);
    let (cached, idle) = {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let cached = cache.remove(&key).map(|e| e.producer);
        (cached, remove_where(&mut cache, idle))
    };
    close(idle);
    match cached {
        Some(producer) if producer.client().fatal_error().is_none() => Ok(Pooled {
            key,
            producer: Some(producer),
            reused: true,
        }),
        broken => {
            close(broken.into_iter().collect());
            Ok(Pooled {
                key,
                producer: Some(config.create()?),
                reused: false,
            })
        }
    }
}

impl Pooled {
    pub fn producer(&self) -> &FutureProducer {
        self.producer
            .as_ref()
            .expect("a pooled producer is present until kept or dropped")
    }

    /// Every message of the try was acknowledged: the producer may serve the next one.
    pub fn keep(mut self) {
        let Some(producer) = self.producer.take() else {
            return;
        };
        let mut out = Vec::new();
        {
            let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CAPACITY && !cache.contains_key(&self.key) {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                if let Some(e) = oldest.and_then(|k| cache.remove(&k)) {
                    out.push(e.producer);
                }
            }
            let entry = Entry {
                producer,
                last_used: Instant::now(),
            };
            // An overlapping try's producer may be back first; one of the two is enough.
            if let Some(previous) = cache.insert(std::mem::take(&mut self.key), entry) {
                out.push(previous.producer);
            }
        }
        close(out);
        start_sweeping();
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        close(self.producer.take().into_iter().collect());
    }
}
