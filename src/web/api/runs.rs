//! `/api/v2/dags/{dag_id}/dagRuns...`: trigger, list and get runs, their task instances and
//! a task's log for one try.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{models, ApiJson, Params, MAX_LIMIT};
use crate::dag::Dag;
use crate::db::runs::{self as db_runs, RunRow, TriggerError, TriggerRequest};
use crate::db::web::{self as q, RunOrder, VersionInfo};
use crate::web::error::ApiError;
use crate::web::AppState;

/// Lines per log page when the client does not ask for the full content.
pub const LOG_PAGE: i64 = 1000;
/// Upper bound for `full_content=true`, so one request cannot pull a gigabyte.
pub const LOG_FULL_MAX: i64 = 100_000;

async fn versions(st: &AppState, runs: &[RunRow]) -> Result<HashMap<i64, VersionInfo>, ApiError> {
    let mut ids: Vec<i64> = runs.iter().map(|r| r.version_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(q::version_infos(&st.pool, &ids)
        .await?
        .into_iter()
        .map(|v| (v.id, v))
        .collect())
}

fn run_not_found(dag_id: &str, run_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
    ))
}

async fn find_run(st: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, ApiError> {
    db_runs::get(&st.pool, dag_id, run_id)
        .await?
        .ok_or_else(|| run_not_found(dag_id, run_id))
}

/// `GET /dags/{dag_id}/dagRuns` (`~` for every DAG). Oldest first unless `order_by=-id`.
pub async fn list(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(raw)?;
    let order = match p.get("order_by") {
        None | Some("id" | "run_after" | "logical_date" | "start_date") => RunOrder::OldestFirst,
        Some("-id" | "-run_after" | "-logical_date" | "-start_date") => RunOrder::NewestFirst,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "cannot order by `{other}`; use id, run_after, logical_date or start_date, with `-` for descending"
            )))
        }
    };
    let dag = (dag_id != "~").then_some(dag_id.as_str());
    if let Some(d) = dag {
        if q::dag_row(&st.pool, d).await?.is_none() {
            return Err(ApiError::not_found(format!(
                "The Dag with ID: `{d}` was not found"
            )));
        }
    }
    let (runs, total) = q::list_runs(
        &st.pool,
        dag,
        order,
        p.int("limit", 50, MAX_LIMIT)?,
        p.int("offset", 0, i64::MAX)?,
    )
    .await?;
    let vs = versions(&st, &runs).await?;
    Ok(Json(json!({
        "dag_runs": runs.iter().map(|r| models::run(r, &vs)).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

pub async fn get(
    State(st): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = find_run(&st, &dag_id, &run_id).await?;
    let vs = versions(&st, std::slice::from_ref(&run)).await?;
    Ok(Json(models::run(&run, &vs)))
}

/// Airflow 3's `TriggerDAGRunPostBody`. Unknown fields are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TriggerBody {
    dag_run_id: Option<String>,
    logical_date: Option<DateTime<Utc>>,
    conf: Option<Value>,
    note: Option<String>,
}

pub async fn trigger(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    ApiJson(body): ApiJson<TriggerBody>,
) -> Result<Json<Value>, ApiError> {
    let req = TriggerRequest {
        conf: body.conf,
        logical_date: body.logical_date,
        run_id: body.dag_run_id,
        note: body.note,
    };
    let run = match db_runs::trigger(&st.pool, &dag_id, req).await {
        Ok(run) => run,
        Err(TriggerError::DagNotFound(_)) => {
            return Err(ApiError::not_found(format!(
                "The Dag with ID: `{dag_id}` was not found"
            )))
        }
        Err(e @ TriggerError::DuplicateRunId(_)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(
            e @ (TriggerError::ConfNotObject(_)
            | TriggerError::ReservedRunId
            | TriggerError::InvalidRunId(_)),
        ) => return Err(ApiError::bad_request(e.to_string())),
        Err(TriggerError::Db(e)) => return Err(e.into()),
    };
    let vs = versions(&st, std::slice::from_ref(&run)).await?;
    Ok(Json(models::run(&run, &vs)))
}

async fn run_dag(st: &AppState, run: &RunRow) -> Result<Option<Dag>, ApiError> {
    Ok(q::version_spec(&st.pool, run.version_id)
        .await?
        .and_then(|s| crate::dag::spec::from_stored(s).ok()))
}

pub async fn task_instances(
    State(st): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let run = find_run(&st, &dag_id, &run_id).await?;
    let tis = db_runs::task_states(&st.pool, run.id).await?;
    let dag = run_dag(&st, &run).await?;
    let vs = versions(&st, std::slice::from_ref(&run)).await?;
    let v = vs.get(&run.version_id);
    Ok(Json(json!({
        "task_instances": tis.iter().map(|ti| models::task_instance(&run, ti, dag.as_ref(), v)).collect::<Vec<_>>(),
        "total_entries": tis.len(),
    })))
}

/// `GET .../logs/{try_number}`: `{content: [{event, timestamp, stream}], continuation_token}`.
/// Pass the token back as `token` for the next page; it is null once the try is over and
/// every line was returned. `Accept: text/plain` gets the lines as text.
pub async fn logs(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id, try_raw)): Path<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw)?;
    let try_number: i32 = try_raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("try_number must be an integer, got `{try_raw}`"),
        )
    })?;
    let ti = q::task_instance(&st.pool, &dag_id, &run_id, &task_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "TaskInstance `{task_id}` of run `{run_id}` (Dag `{dag_id}`) was not found"
            ))
        })?;
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(ApiError::not_found(format!(
            "try {try_number} of `{task_id}` does not exist; tries so far: {}",
            ti.try_number
        )));
    }
    let after = match p.get("token") {
        None | Some("") => 0,
        Some(t) => t.parse::<i64>().map_err(|_| {
            ApiError::bad_request("`token` must be a continuation_token from an earlier response")
        })?,
    };
    let limit = if p.bool("full_content")? == Some(true) {
        LOG_FULL_MAX
    } else {
        LOG_PAGE
    };
    let lines = crate::db::logs::page(&st.pool, ti.id, try_number, after, limit).await?;
    let last = lines.last().map(|l| l.id).unwrap_or(after);
    let more =
        lines.len() as i64 == limit || (ti.state.is_unfinished() && try_number == ti.try_number);
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    if wants_text {
        let text: String = lines
            .iter()
            .map(|l| format!("[{}] {}\n", l.at.to_rfc3339(), l.line))
            .collect();
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let content: Vec<Value> = lines
        .iter()
        .map(|l| json!({"event": l.line, "timestamp": l.at, "stream": l.stream}))
        .collect();
    Ok(Json(json!({
        "content": content,
        "continuation_token": more.then(|| last.to_string()),
    }))
    .into_response())
}
