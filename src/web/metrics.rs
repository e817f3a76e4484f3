//! `/health` (database reachable, scheduler heartbeat age), Prometheus metrics at `/metrics`,
//! and the layer that times every request.
//!
//! The exposition is written by `prometheus-client`, the Prometheus organisation's Rust
//! client, in the classic text format (0.0.4) that every Prometheus version scrapes. Why this
//! crate rather than `metrics` with `metrics-exporter-prometheus`: that pair records into one
//! global recorder per process, while each [`AppState`] here has its own registry (tests and
//! the benchmark run several servers in one process, each counting its own requests); and
//! the run, task and hand-off figures are computed by Postgres at scrape time, which a
//! prometheus-client `Collector` encodes as they come (a histogram from buckets Postgres
//! already counted), where the `metrics` facade only takes single observations.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::error::ApiError;
use super::AppState;
use crate::core::{RunState, TaskState};
use crate::db::web::{self as q, StateCounts};

/// A scheduler whose last heartbeat is older than this is reported unhealthy.
pub const SCHEDULER_HEALTHY_SECS: f64 = 30.0;
/// Upper bounds of the request-latency buckets, in seconds.
const REQUEST_BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Methods counted under their own name; anything else is `other`, so a client inventing
/// methods cannot grow the label set without bound (routes are patterns, already bounded).
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// Request latency per (method, route), in memory, in this server's own registry.
pub struct HttpMetrics {
    registry: Registry,
    latency: LatencyFamily,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let latency: LatencyFamily =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BOUNDS));
        let mut registry = Registry::default();
        registry.register(
            "updraft_http_request_duration_seconds",
            "Time to answer HTTP requests (to the first byte)",
            latency.clone(),
        );
        HttpMetrics { registry, latency }
    }
}

impl HttpMetrics {
    pub fn observe(&self, method: &Method, route: &str, secs: f64) {
        let method = if METHODS.contains(method) {
            method.as_str()
        } else {
            "other"
        };
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
        };
        self.latency.get_or_create(&labels).observe(secs);
    }
}

/// Times each request by its route pattern (not the raw path, so labels stay few).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let started = Instant::now();
    let res = next.run(req).await;
    st.metrics
        .observe(&method, &route, started.elapsed().as_secs_f64());
    res
}

/// Postgres's counts at scrape time: runs and task instances by state, the queue depth and
/// the hand-off latency histogram of the last hour.
#[derive(Debug)]
struct Snapshot(StateCounts);

impl Snapshot {
    fn count(rows: &[(String, i64)], state: &str) -> i64 {
        rows.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let mut runs = encoder.encode_descriptor(
            "updraft_dag_runs",
            "Runs by state.",
            None,
            MetricType::Gauge,
        )?;
        for state in RunState::ALL {
            let n = ConstGauge::new(Self::count(&c.runs, state.as_str()));
            n.encode(runs.encode_family(&[("state", state.as_str())])?)?;
        }
        let mut tasks = encoder.encode_descriptor(
            "updraft_task_instances",
            "Task instances by state.",
            None,
            MetricType::Gauge,
        )?;
        for state in TaskState::ALL {
            let n = ConstGauge::new(Self::count(&c.tasks, state.as_str()));
            n.encode(tasks.encode_family(&[("state", state.as_str())])?)?;
        }
        let queued = Self::count(&c.tasks, TaskState::Queued.as_str());
        ConstGauge::new(queued).encode(encoder.encode_descriptor(
            "updraft_queue_depth",
            "Task instances queued and waiting for a worker.",
            None,
            MetricType::Gauge,
        )?)?;
        // Postgres counts cumulatively per bound; the encoder wants each bucket's own count.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = c
            .handoff_buckets
            .iter()
            .map(|(bound, cumulative)| {
                let own = (cumulative - below).max(0) as u64;
                below = *cumulative;
                (*bound, own)
            })
            .collect();
        encoder
            .encode_descriptor(
                "updraft_task_handoff_seconds",
                "Time from a task being queued to a worker starting it (tasks started in the last hour).",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                c.handoff_sum,
                c.handoff_count.max(0) as u64,
                &buckets,
                None,
            )
    }
}

/// Airflow 3's `HealthInfoResponse` shape, plus the heartbeat age in seconds. 503 when the
/// database cannot be reached.
pub async fn health(State(st): State<AppState>) -> Response {
    match q::scheduler_heartbeat(&st.pool).await {
        Ok(hb) => {
            let (latest, age) = match hb {
                Some((at, age)) => (Some(at.to_rfc3339()), Some(age)),
                None => (None, None),
            };
            let scheduler = if age.is_some_and(|a| a < SCHEDULER_HEALTHY_SECS) {
                "healthy"
            } else {
                "unhealthy"
            };
            Json(serde_json::json!({
                "metadatabase": {"status": "healthy"},
                "scheduler": {"status": scheduler, "latest_scheduler_heartbeat": latest, "heartbeat_age_seconds": age},
                "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
                "dag_processor": null,
            }))
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "metadatabase": {"status": "unhealthy"},
                    "scheduler": {"status": null, "latest_scheduler_heartbeat": null},
                    "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
                    "dag_processor": null,
                })),
            )
                .into_response()
        }
    }
}

/// How long a scrape waits for the brokers, per topic; a topic whose brokers do not answer
/// is left out of that scrape.
const KAFKA_SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The topics the DAGs use at scrape time: end offsets per partition, committed offset and
/// lag per sink group, and messages/s from the sampler.
#[derive(Debug, Default)]
struct Streams {
    /// (topic, partition, end offset)
    ends: Vec<(String, String, i64)>,
    /// (topic, partition, group, lag)
    lags: Vec<(String, String, String, i64)>,
    /// (topic, partition, group, committed offset), where the group has committed one.
    committed: Vec<(String, String, String, i64)>,
    /// (topic, messages per second over the last sample interval)
    rates: Vec<(String, f64)>,
}

impl Streams {
    fn of(
        views: Vec<super::streams::TopicView>,
        rates: Vec<(super::streams::TopicKey, f64)>,
    ) -> Streams {
        let mut s = Streams {
            rates: rates.into_iter().map(|(k, r)| (k.topic, r)).collect(),
            ..Default::default()
        };
        for v in views {
            let Ok(o) = v.offsets else { continue };
            for p in &o.partitions {
                s.ends
                    .push((o.topic.clone(), p.partition.to_string(), p.end));
            }
            for (g, parts) in &o.groups {
                for p in parts {
                    s.lags
                        .push((o.topic.clone(), p.partition.to_string(), g.clone(), p.lag));
                    if let Some(c) = p.committed {
                        s.committed
                            .push((o.topic.clone(), p.partition.to_string(), g.clone(), c));
                    }
                }
            }
        }
        s
    }
}

impl Collector for Streams {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut ends = encoder.encode_descriptor(
            "updraft_stream_end_offset",
            "The end offset of each partition of the topics the DAGs use.",
            None,
            MetricType::Gauge,
        )?;
        for (t, p, end) in &self.ends {
            ConstGauge::new(*end)
                .encode(ends.encode_family(&[("topic", t.as_str()), ("partition", p.as_str())])?)?;
        }
        let mut lags = encoder.encode_descriptor(
            "updraft_stream_lag",
            "Messages a sink's consumer group has yet to commit, per topic and partition.",
            None,
            MetricType::Gauge,
        )?;
        for (t, p, g, lag) in &self.lags {
            ConstGauge::new(*lag).encode(lags.encode_family(&[
                ("topic", t.as_str()),
                ("partition", p.as_str()),
                ("group", g.as_str()),
            ])?)?;
        }
        let mut committed = encoder.encode_descriptor(
            "updraft_stream_committed_offset",
            "The offset a sink's consumer group has committed, per topic and partition.",
            None,
            MetricType::Gauge,
        )?;
        for (t, p, g, c) in &self.committed {
            ConstGauge::new(*c).encode(committed.encode_family(&[
                ("topic", t.as_str()),
                ("partition", p.as_str()),
                ("group", g.as_str()),
            ])?)?;
        }
        let mut rates = encoder.encode_descriptor(
            "updraft_stream_messages_per_second",
            "Messages per second written to each topic the DAGs use, between the web server's last two samples of its end offsets.",
            None,
            MetricType::Gauge,
        )?;
        for (t, r) in &self.rates {
            ConstGauge::new(*r).encode(rates.encode_family(&[("topic", t.as_str())])?)?;
        }
        Ok(())
    }
}

pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let counts = q::state_counts(&st.pool).await?;
    let views =
        super::streams::topic_views(&st.pool, &st.settings.operator_env, KAFKA_SCRAPE_TIMEOUT)
            .await?;
    let streams = Streams::of(views, st.rates.latest());
    let mut scrape = Registry::default();
    scrape.register_collector(Box::new(Snapshot(counts)));
    scrape.register_collector(Box::new(streams));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &scrape)
        .and_then(|()| prometheus_text::encode(&mut out, &st.metrics.registry))
        .map_err(|e| ApiError::internal(anyhow::anyhow!("encoding the metrics failed: {e}")))?;
    Ok(([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(counts: StateCounts, http: &HttpMetrics) -> String {
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(Snapshot(counts)));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &scrape).unwrap();
        prometheus_text::encode(&mut out, &http.registry).unwrap();
        out
    }

    #[test]
    fn the_exposition_keeps_every_name_label_and_bucket() {
        let counts = StateCounts {
            runs: vec![("running".into(), 2)],
            tasks: vec![("queued".into(), 3), ("success".into(), 5)],
            handoff_buckets: vec![(0.01, 1), (0.025, 1), (0.05, 4)],
            handoff_count: 6,
            handoff_sum: 1.5,
        };
        let http = HttpMetrics::default();
        http.observe(&Method::GET, "/health", 0.002);
        http.observe(&Method::from_bytes(b"BREW").unwrap(), "unmatched", 3.0);
        let out = render(counts, &http);
        for line in [
            "# TYPE updraft_dag_runs gauge",
            "updraft_dag_runs{state=\"running\"} 2",
            "updraft_dag_runs{state=\"failed\"} 0",
            "updraft_task_instances{state=\"queued\"} 3",
            "updraft_task_instances{state=\"upstream_failed\"} 0",
            "updraft_queue_depth 3",
            "# TYPE updraft_task_handoff_seconds histogram",
            "updraft_task_handoff_seconds_bucket{le=\"0.01\"} 1",
            "updraft_task_handoff_seconds_bucket{le=\"0.025\"} 1",
            "updraft_task_handoff_seconds_bucket{le=\"0.05\"} 4",
            "updraft_task_handoff_seconds_bucket{le=\"+Inf\"} 6",
            "updraft_task_handoff_seconds_sum 1.5",
            "updraft_task_handoff_seconds_count 6",
            "# HELP updraft_http_request_duration_seconds Time to answer HTTP requests (to the first byte).",
            "updraft_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.0025\"} 1",
            "updraft_http_request_duration_seconds_bucket{method=\"GET\",route=\"/health\",le=\"0.001\"} 0",
            "updraft_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} 1",
            "updraft_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
        }
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("updraft_task_instances{"))
                .count(),
            TaskState::ALL.len()
        );
    }
}
