//! updraft's own stream endpoints: replaying a sink's consumer group.

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
