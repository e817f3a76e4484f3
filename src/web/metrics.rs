//! `/health` (database reachable, scheduler heartbeat age), Prometheus text at `/metrics`,
//! and the layer that times every request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use super::AppState;
use crate::db::web as q;

/// A scheduler whose last heartbeat is older than this is reported unhealthy.
pub const SCHEDULER_HEALTHY_SECS: f64 = 30.0;
const BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

/// Request latency per (method, route), in memory.
#[derive(Default)]
pub struct HttpMetrics {
    by_route: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, secs: f64) {
        let Ok(mut map) = self.by_route.lock() else {
            return;
        };
        let h = map
            .entry((method.to_string(), route.to_string()))
            .or_default();
        for (i, b) in BOUNDS.iter().enumerate() {
            if secs <= *b {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn render(&self, out: &mut String) {
        let Ok(map) = self.by_route.lock() else {
            return;
        };
        out.push_str("# HELP updraft_http_request_duration_seconds Time to answer HTTP requests (to the first byte).\n");
        out.push_str("# TYPE updraft_http_request_duration_seconds histogram\n");
        for ((method, route), h) in map.iter() {
            let labels = format!(
                "method=\"{method}\",route=\"{}\"",
                route.replace('\\', "\\\\").replace('"', "\\\"")
            );
            for (b, n) in BOUNDS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "updraft_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "updraft_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "updraft_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "updraft_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

/// Times each request by its route pattern (not the raw path, so labels stay few).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    st.metrics
        .observe(&method, &route, started.elapsed().as_secs_f64());
    res
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

pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let c = q::state_counts(&st.pool).await?;
    let mut out = String::new();
    out.push_str("# HELP updraft_dag_runs Runs by state.\n# TYPE updraft_dag_runs gauge\n");
    for state in ["queued", "running", "success", "failed"] {
        let n = c
            .runs
            .iter()
            .find(|(s, _)| s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let _ = writeln!(out, "updraft_dag_runs{{state=\"{state}\"}} {n}");
    }
    out.push_str("# HELP updraft_task_instances Task instances by state.\n# TYPE updraft_task_instances gauge\n");
    let states = [
        "none",
        "scheduled",
        "queued",
        "running",
        "success",
        "failed",
        "up_for_retry",
        "upstream_failed",
        "skipped",
    ];
    for state in states {
        let n = c
            .tasks
            .iter()
            .find(|(s, _)| s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let _ = writeln!(out, "updraft_task_instances{{state=\"{state}\"}} {n}");
    }
    let queued = c
        .tasks
        .iter()
        .find(|(s, _)| s == "queued")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    out.push_str("# HELP updraft_queue_depth Task instances queued and waiting for a worker.\n# TYPE updraft_queue_depth gauge\n");
    let _ = writeln!(out, "updraft_queue_depth {queued}");
    out.push_str(
        "# HELP updraft_task_handoff_seconds Time from a task being queued to a worker starting it (tasks started in the last hour).\n\
         # TYPE updraft_task_handoff_seconds histogram\n",
    );
    for (b, n) in &c.handoff_buckets {
        let _ = writeln!(out, "updraft_task_handoff_seconds_bucket{{le=\"{b}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "updraft_task_handoff_seconds_bucket{{le=\"+Inf\"}} {}",
        c.handoff_count
    );
    let _ = writeln!(out, "updraft_task_handoff_seconds_sum {}", c.handoff_sum);
    let _ = writeln!(
        out,
        "updraft_task_handoff_seconds_count {}",
        c.handoff_count
    );
    st.metrics.render(&mut out);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response())
}
