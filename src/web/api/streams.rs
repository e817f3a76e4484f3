//! updraft's own stream endpoints: the topics the DAGs use with their offsets and consumer
//! lag (also the Prometheus gauges), one topic with its messages/s history, the latest
//! messages of a partition, and replaying a sink's consumer group.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::{path_int, Kind, Params, Query};
use super::ApiJson;
use crate::dag::streams::TopicUse;
use crate::operators::kafka::browse::{self, BrowseError, Format, PageRequest, Record};
use crate::operators::sink::replay::{replay as reset, ReplayTo};
use crate::web::auth::CurrentUser;
use crate::web::error::ApiError;
use crate::web::streams::{self as monitor, Lookup, TopicKey, TopicView};
use crate::web::AppState;

/// How long the brokers get to answer each request of a replay or a view.
pub const KAFKA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Messages per page unless `limit` says otherwise.
pub const DEFAULT_MESSAGES: i64 = 20;

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
    user: CurrentUser,
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
    let extra =
        json!({"group": target.group, "topic": target.topic, "to": body.to, "partitions": resets});
    super::events::record_api(&st, &user, "replay", &dag_id, None, Some(&task_id), extra).await;
    Ok(Json(json!({
        "dag_id": dag_id,
        "task_id": task_id,
        "group": target.group,
        "topic": target.topic,
        "partitions": resets,
    })))
}

/// A topic as the API shows it: its tasks, offsets and groups (or the brokers' error).
fn topic_json(v: TopicView) -> Value {
    let mut t = json!({"topic": v.key.topic, "bootstrap_servers": v.key.servers, "tasks": v.uses});
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
}

/// `GET /streams/topics`: the topics the DAGs publish to and consume from, per partition
/// the offsets, per consumer group the committed offsets and lag.
pub async fn topics(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &Params::new())?;
    let views = monitor::topic_views(&st.pool, &st.settings.operator_env, KAFKA_TIMEOUT).await?;
    let topics: Vec<Value> = views.into_iter().map(topic_json).collect();
    Ok(Json(
        json!({"total_entries": topics.len(), "topics": topics}),
    ))
}

pub fn topic_params() -> Params {
    Params::new().p("servers", Kind::Str)
}

pub fn messages_params() -> Params {
    topic_params().p("before", Kind::Int).p("limit", Kind::Int)
}

/// The known topic `topic` (on `servers`, which must be given when the name is used on
/// several broker sets).
async fn lookup(
    st: &AppState,
    topic: &str,
    servers: Option<&str>,
) -> Result<(TopicKey, Vec<TopicUse>), ApiError> {
    let known = monitor::known_topics(&st.pool, &st.settings.operator_env).await?;
    match monitor::find(known, topic, servers) {
        Lookup::Found(k, uses) => Ok((k, uses)),
        Lookup::Ambiguous(all) => Err(ApiError::bad_request(format!(
            "topic `{topic}` is used on several broker sets; pass `servers`, one of: {}",
            all.join(" | ")
        ))),
        Lookup::Unknown => Err(ApiError::not_found(format!(
            "no active DAG publishes to or consumes from topic `{topic}`{}",
            servers.map(|s| format!(" on {s}")).unwrap_or_default()
        ))),
    }
}

/// `GET /streams/topics/{topic}`: one topic as in the list, plus its end-offset samples and
/// messages/s over the last minutes (sampled by this web server, oldest first).
pub async fn topic(
    State(st): State<AppState>,
    Path(topic): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), &topic_params())?;
    let (key, uses) = lookup(&st, &topic, q.str("servers")).await?;
    let samples = st.rates.samples(&key);
    let rates = crate::web::streams::rates::rates_of(&samples);
    let mut t = topic_json(monitor::view(key, uses, KAFKA_TIMEOUT).await);
    t["sample_interval_seconds"] = json!(crate::web::streams::rates::INTERVAL.as_secs());
    t["samples"] = json!(samples);
    t["rates"] = json!(rates);
    Ok(Json(t))
}

/// A message as the API sends it: a JSON value as JSON, anything else as text.
fn record_json(r: &Record) -> Value {
    let (value, format, size, truncated) = match &r.value {
        Some(v) => {
            let value = match v.format {
                Format::Json if !v.truncated => {
                    serde_json::from_str(&v.text).unwrap_or_else(|_| json!(v.text))
                }
                _ => json!(v.text),
            };
            (value, json!(v.format), v.size, v.truncated)
        }
        None => (Value::Null, Value::Null, 0, false),
    };
    json!({"partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
           "key": r.key.as_ref().map(|k| &k.text), "value": value, "format": format,
           "size": size, "truncated": truncated})
}

/// `GET /streams/topics/{topic}/partitions/{partition}/messages`: the latest `limit`
/// messages (default 20, at most 100) before offset `before` (default: the end), newest
/// first. Read without joining a group or committing anything.
pub async fn messages(
    State(st): State<AppState>,
    Path((topic, partition)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(raw.as_deref(), &messages_params())?;
    let partition: i32 = path_int("partition", &partition)?;
    if partition < 0 {
        return Err(ApiError::validation(
            &["path", "partition"],
            "greater_than_equal",
            "Input should be greater than or equal to 0",
            &partition.to_string(),
        ));
    }
    let limit = q.int("limit")?.unwrap_or(DEFAULT_MESSAGES);
    let max = browse::MAX_PAGE as i64;
    if !(1..=max).contains(&limit) {
        return Err(ApiError::validation(
            &["query", "limit"],
            if limit < 1 {
                "greater_than_equal"
            } else {
                "less_than_equal"
            },
            format!("Input should be between 1 and {max}"),
            &limit.to_string(),
        ));
    }
    let before = q.int("before")?;
    if let Some(b) = before.filter(|b| *b < 0) {
        return Err(ApiError::validation(
            &["query", "before"],
            "greater_than_equal",
            "Input should be greater than or equal to 0",
            &b.to_string(),
        ));
    }
    let (key, _) = lookup(&st, &topic, q.str("servers")).await?;
    let page = browse::page(PageRequest {
        servers: key.servers,
        topic: key.topic,
        partition,
        before,
        limit: limit as usize,
        timeout: KAFKA_TIMEOUT,
    })
    .await
    .map_err(|e| match e {
        BrowseError::NoTopic(_) | BrowseError::NoPartition { .. } => {
            ApiError::not_found(e.to_string())
        }
        BrowseError::Kafka(e) => ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()),
    })?;
    let messages: Vec<Value> = page.messages.iter().map(record_json).collect();
    Ok(Json(json!({
        "topic": page.topic,
        "partition": page.partition,
        "low_offset": page.low,
        "end_offset": page.end,
        "first_offset": page.first,
        "before": page.before,
        "older_before": page.older(),
        "total_entries": messages.len(),
        "messages": messages,
    })))
}
