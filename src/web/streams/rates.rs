//! Messages per second: the web process samples the end offsets of the known topics every
//! [`INTERVAL`] and keeps [`WINDOW`] of samples per topic; a rate is the growth between
//! two samples over the time between them.
//!
//! Bounded: at most [`MAX_TOPICS`] topics, [`CAPACITY`] samples each; topics no DAG uses any
//! more are forgotten. Which topics are known is re-read from the DAGs only when a tiny
//! query per sample (a fingerprint of the active DAGs' versions) sees a change, or every
//! [`RELIST`]. When no DAG uses Kafka, the sampler asks no broker anything. One offset client
//! per broker set is kept between samples. The history lives in this process: each web
//! server has its own, and a restart starts it empty.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{known_topics, TopicKey};
use crate::operators::kafka::monitor::OffsetReader;
use crate::operators::OperatorEnv;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How far back the history reaches.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Samples kept per topic: a window's worth, plus the one a rate starts from.
pub const CAPACITY: usize = (WINDOW.as_secs() / INTERVAL.as_secs()) as usize + 1;
/// Topics sampled at most; more are left out of the history (and logged).
pub const MAX_TOPICS: usize = 500;
/// How often the list of known topics is read again though no DAG changed (connections,
/// which name brokers, may have).
pub const RELIST: Duration = Duration::from_secs(60);
/// How long the brokers get per request of a sample.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(3);

/// A topic's end offset (summed over its partitions) at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub end_offset: i64,
}

/// Messages per second between the previous sample and `at`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub at: DateTime<Utc>,
    pub per_second: f64,
}

/// The rates between consecutive samples. A falling end offset (a topic deleted and made
/// again) counts as no messages, not as negative ones.
pub fn rates_of(samples: &[Sample]) -> Vec<Rate> {
    samples
        .windows(2)
        .filter_map(|w| {
            let secs = (w[1].at - w[0].at).num_milliseconds() as f64 / 1000.0;
            (secs > 0.0).then(|| Rate {
                at: w[1].at,
                per_second: (w[1].end_offset - w[0].end_offset).max(0) as f64 / secs,
            })
        })
        .collect()
}

/// Every sampled topic's recent samples.
#[derive(Debug, Default)]
pub struct RateHistory {
    topics: Mutex<HashMap<TopicKey, VecDeque<Sample>>>,
}

impl RateHistory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicKey, VecDeque<Sample>>> {
        // The map is consistent after every operation, so a panicked holder left it usable.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a sample, dropping those older than the window or beyond [`CAPACITY`]. A sample
    /// not after the last one is ignored; a topic beyond [`MAX_TOPICS`] is not kept.
    pub fn record(&self, key: &TopicKey, sample: Sample) {
        let mut topics = self.lock();
        if !topics.contains_key(key) && topics.len() >= MAX_TOPICS {
            return;
        }
        let q = topics.entry(key.clone()).or_default();
        if q.back().is_some_and(|last| last.at >= sample.at) {
            return;
        }
        q.push_back(sample);
        let oldest = sample.at - chrono::Duration::seconds((WINDOW + INTERVAL).as_secs() as i64);
        while q.len() > CAPACITY || q.front().is_some_and(|s| s.at < oldest) {
            q.pop_front();
        }
    }

    /// Forgets every topic not in `keep`.
    pub fn retain(&self, keep: &BTreeSet<TopicKey>) {
        self.lock().retain(|k, _| keep.contains(k));
    }

    /// The topic's samples, oldest first.
    pub fn samples(&self, key: &TopicKey) -> Vec<Sample> {
        self.lock()
            .get(key)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The topic's rates, oldest first.
    pub fn rates(&self, key: &TopicKey) -> Vec<Rate> {
        rates_of(&self.samples(key))
    }

    /// Each sampled topic's latest rate (for the Prometheus gauge).
    pub fn latest(&self) -> Vec<(TopicKey, f64)> {
        let topics = self.lock();
        let mut out: Vec<(TopicKey, f64)> = topics
            .iter()
            .filter_map(|(k, q)| {
                let n = q.len();
                (n >= 2)
                    .then(|| rates_of(&[q[n - 2], q[n - 1]]))
                    .and_then(|r| r.first().map(|r| (k.clone(), r.per_second)))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// How many topics have samples.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The loop that fills a [`RateHistory`].
pub struct Sampler {
    pool: PgPool,
    env: Arc<OperatorEnv>,
    history: Arc<RateHistory>,
    topics: Vec<TopicKey>,
    /// When the topics were last listed, and the DAGs' fingerprint then.
    listed: Option<(Instant, (i64, i64, i64))>,
    readers: HashMap<String, Arc<OffsetReader>>,
}

impl Sampler {
    pub fn new(pool: PgPool, env: Arc<OperatorEnv>, history: Arc<RateHistory>) -> Sampler {
        Sampler {
            pool,
            env,
            history,
            topics: Vec::new(),
            listed: None,
            readers: HashMap::new(),
        }
    }

    /// Samples every [`INTERVAL`] until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.run_once() => {}
            }
        }
    }

    /// One sample of every known topic (re-reading which topics are known when the DAGs
    /// changed, and every [`RELIST`] for connections); returns how many were sampled.
    pub async fn run_once(&mut self) -> usize {
        match crate::db::dags::current_versions_fingerprint(&self.pool).await {
            Ok(now) => {
                if self
                    .listed
                    .is_none_or(|(at, then)| then != now || at.elapsed() >= RELIST)
                {
                    self.relist(now).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "the offset sampler could not read the DAGs"),
        }
        if self.topics.is_empty() {
            return 0;
        }
        let mut by_servers: HashMap<String, Vec<String>> = HashMap::new();
        for k in &self.topics {
            by_servers
                .entry(k.servers.clone())
                .or_default()
                .push(k.topic.clone());
        }
        let reads = by_servers.into_iter().map(|(servers, topics)| {
            let cached = self.readers.get(&servers).cloned();
            async move {
                let s = servers.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let reader = match cached {
                        Some(r) => r,
                        None => Arc::new(OffsetReader::new(&s)?),
                    };
                    let ends: Vec<(String, Result<i64, String>)> = topics
                        .into_iter()
                        .map(|t| {
                            let end = reader
                                .partitions(&t, SAMPLE_TIMEOUT)
                                .map(|ps| ps.iter().map(|p| p.end).sum())
                                .map_err(|e| e.to_string());
                            (t, end)
                        })
                        .collect();
                    Ok::<_, crate::operators::OperatorError>((reader, ends))
                })
                .await;
                (servers, read)
            }
        });
        let mut sampled = 0;
        for (servers, read) in futures::future::join_all(reads).await {
            let (reader, ends) = match read {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::debug!(servers = %servers, error = %e, "could not sample the topics' offsets");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(servers = %servers, error = %e, "the offset sampler's thread failed");
                    continue;
                }
            };
            let at = Utc::now();
            for (topic, end) in ends {
                match end {
                    Ok(end_offset) => {
                        let key = TopicKey {
                            servers: servers.clone(),
                            topic,
                        };
                        self.history.record(&key, Sample { at, end_offset });
                        sampled += 1;
                    }
                    Err(e) => {
                        tracing::debug!(servers = %servers, topic = %topic, error = %e, "no sample")
                    }
                }
            }
            self.readers.insert(servers, reader);
        }
        sampled
    }

    async fn relist(&mut self, fingerprint: (i64, i64, i64)) {
        let known = match known_topics(&self.pool, &self.env).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "the offset sampler could not read the DAGs; keeps its topic list");
                return;
            }
        };
        if known.len() > MAX_TOPICS {
            tracing::warn!(
                topics = known.len(),
                max = MAX_TOPICS,
                "more topics than the rate history keeps; the rest have no messages/s"
            );
        }
        self.listed = Some((Instant::now(), fingerprint));
        let keep: BTreeSet<TopicKey> = known.into_keys().take(MAX_TOPICS).collect();
        self.history.retain(&keep);
        self.readers
            .retain(|servers, _| keep.iter().any(|k| &k.servers == servers));
        self.topics = keep.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str) -> TopicKey {
        TopicKey {
            servers: "k:9092".into(),
            topic: t.into(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn rates_are_growth_over_time_and_never_negative() {
        let s = |secs, end_offset| Sample {
            at: at(secs),
            end_offset,
        };
        let r = rates_of(&[s(0, 100), s(5, 150), s(10, 150), s(15, 20)]);
        let per: Vec<f64> = r.iter().map(|r| r.per_second).collect();
        assert_eq!(per, vec![10.0, 0.0, 0.0]);
        assert_eq!(r[0].at, at(5));
        assert!(rates_of(&[s(0, 1)]).is_empty());
    }

    #[test]
    fn the_history_is_bounded_by_window_and_capacity() {
        let h = RateHistory::default();
        let k = key("t");
        for i in 0..(CAPACITY as i64 * 2) {
            h.record(
                &k,
                Sample {
                    at: at(i * INTERVAL.as_secs() as i64),
                    end_offset: i,
                },
            );
        }
        let s = h.samples(&k);
        assert_eq!(s.len(), CAPACITY);
        assert_eq!(s.last().unwrap().end_offset, CAPACITY as i64 * 2 - 1);
        // A sample after a long gap leaves only itself.
        h.record(
            &k,
            Sample {
                at: at(100_000),
                end_offset: 0,
            },
        );
        assert_eq!(h.samples(&k).len(), 1);
        // Out-of-order samples are ignored.
        h.record(
            &k,
            Sample {
                at: at(99_000),
                end_offset: 5,
            },
        );
        assert_eq!(h.samples(&k).len(), 1);
    }

    #[test]
    fn topics_are_bounded_and_forgotten_when_unused() {
        let h = RateHistory::default();
        for i in 0..MAX_TOPICS + 5 {
            h.record(
                &key(&format!("t{i}")),
                Sample {
                    at: at(0),
                    end_offset: 0,
                },
            );
        }
        assert_eq!(h.len(), MAX_TOPICS);
        h.retain(&[key("t1")].into_iter().collect());
        assert_eq!(h.len(), 1);
        h.record(
            &key("t1"),
            Sample {
                at: at(5),
                end_offset: 50,
            },
        );
        assert_eq!(h.latest(), vec![(key("t1"), 10.0)]);
    }
}
