//! updraft's own stream endpoints: the topics the DAGs use with their offsets and consumer
//! lag (also the Prometheus gauges), and replaying a sink's consumer group.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::{Params, Query};
use super::ApiJson;
use crate::operators::sink::replay::{replay as reset, ReplayTo};
use crate::web::error::ApiError;
use crate::web::AppState;

/// How long the brokers get to answer each request of a replay.
const KAFKA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The body of a replay request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// `beginning`, `offset` or `timestamp`.
    to: String,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
    /// Only these partitions; default: all.
    #[serde(default)]
    partitions: Option<Vec<i32>>,
}

fn unprocessable(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg)
}

/// `POST /dags/{dag_id}/tasks/{task_id}/replay`: moves the sink task's consumer group to the
/// beginning, an offset or a time, so its next try reads from there (rows are upserts, so
/// nothing is duplicated). The group must have no active member: pause a continuous DAG
/// first (409 otherwise).
pub async fn replay(
    State(st): State<AppState>,
    Path((dag_id, task_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &Params::new())?;
    let to = match (body.to.as_str(), body.offset, body.timestamp) {
        ("beginning", None, None) => ReplayTo::Beginning,
        ("offset", Some(o), None) if o >= 0 => ReplayTo::Offset(o),
        ("timestamp", None, Some(t)) => ReplayTo::Timestamp(t),
        _ => {
            return Err(unprocessable(
                "`to` is `beginning`, `offset` (with `offset` >= 0) or `timestamp` (with `timestamp`, RFC 3339), and nothing else",
            ))
        }
    };
    let dag = crate::db::dags::current_spec(&st.pool, &dag_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("The DAG `{dag_id}` was not found")))?;
    let target = crate::dag::streams::sink_group(&dag, &task_id, &st.settings.operator_env)
        .map_err(ApiError::bad_request)?;
    let resets = reset(&target, to, body.partitions, KAFKA_TIMEOUT)
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(json!({
        "dag_id": dag_id,
        "task_id": task_id,
        "group": target.group,
        "topic": target.topic,
        "partitions": resets,
    })))
}

/// A topic some DAG uses, on some brokers, with what the brokers say about it.
pub struct TopicView {
    pub uses: Vec<crate::dag::streams::TopicUse>,
    pub offsets: Result<crate::operators::kafka::monitor::TopicOffsets, String>,
}

/// Every topic the active DAGs' publish and sink tasks use (by brokers and name), with its
/// partitions' offsets and each sink group's committed offsets and lag.
pub async fn topic_views(
    st: &AppState,
    timeout: std::time::Duration,
) -> Result<Vec<TopicView>, ApiError> {
    let dags = crate::db::dags::current_specs(&st.pool).await?;
    let mut by_topic: std::collections::BTreeMap<(String, String), Vec<_>> = Default::default();
    for d in &dags {
        for u in crate::dag::streams::topic_uses(d, &st.settings.operator_env) {
            by_topic
                .entry((u.servers.clone(), u.topic.clone()))
                .or_default()
                .push(u);
        }
    }
    let mut out = Vec::with_capacity(by_topic.len());
    for ((servers, topic), uses) in by_topic {
        let mut groups: Vec<String> = uses.iter().filter_map(|u| u.group.clone()).collect();
        groups.sort();
        groups.dedup();
        let offsets =
            crate::operators::kafka::monitor::topic_offsets(&servers, &topic, &groups, timeout)
                .await
                .map_err(|e| e.to_string());
        out.push(TopicView { uses, offsets });
    }
    Ok(out)
}

/// `GET /streams/topics`: the topics the DAGs publish to and consume from, per partition
/// the offsets, per consumer group the committed offsets and lag.
pub async fn topics(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &Params::new())?;
    let views = topic_views(&st, KAFKA_TIMEOUT).await?;
    let topics: Vec<Value> = views
        .into_iter()
        .map(|v| {
            let topic = v.uses[0].topic.clone();
            let mut t = json!({"topic": topic, "tasks": v.uses});
            match v.offsets {
                Ok(o) => {
                    t["exists"] = json!(o.exists);
                    t["end_offset"] = json!(o.partitions.iter().map(|p| p.end).sum::<i64>());
                    t["partitions"] = json!(o.partitions);
                    t["groups"] = o
                        .groups
                        .into_iter()
                        .map(|(g, parts)| {
                            json!({"group": g, "lag": parts.iter().map(|p| p.lag).sum::<i64>(), "partitions": parts})
                        })
                        .collect();
                }
                Err(e) => t["error"] = json!(e),
            }
            t
        })
        .collect();
    Ok(Json(
        json!({"total_entries": topics.len(), "topics": topics}),
    ))
}
