//! `/api/v2/dags/{dag_id}/dagRuns…`: list runs (with Airflow's filters), the batch list,
//! get one, trigger, and `wait` for a run to finish.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::dags::{dag_not_found, no_params};
use super::models;
use super::query::{parse_datetime, Kind, Params, Query, MAX_LIMIT};
use super::ApiJson;
use crate::core::{RunState, RunType};
use crate::db::api::runs::{self as q, RunQuery, RUN_SORT};
use crate::db::api::{Page, Range, Sort, TimeRange};
use crate::db::runs::{self as db_runs, RunRow, TriggerError, TriggerRequest};
use crate::db::web::{self as w, VersionInfo};
use crate::web::error::ApiError;
use crate::web::AppState;

async fn versions(st: &AppState, runs: &[RunRow]) -> Result<HashMap<i64, VersionInfo>, ApiError> {
    let mut ids: Vec<i64> = runs.iter().map(|r| r.version_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(w::version_infos(&st.pool, &ids)
        .await?
        .into_iter()
        .map(|v| (v.id, v))
        .collect())
}

pub fn run_not_found(dag_id: &str, run_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
    ))
}

pub async fn find_run(st: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, ApiError> {
    db_runs::get(&st.pool, dag_id, run_id)
        .await?
        .ok_or_else(|| run_not_found(dag_id, run_id))
}

async fn collection(st: &AppState, runs: Vec<RunRow>, total: i64) -> Result<Json<Value>, ApiError> {
    let vs = versions(st, &runs).await?;
    Ok(Json(json!({
        "dag_runs": runs.iter().map(|r| models::run(r, &vs)).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

/// Parameters of `GET /dags/{dag_id}/dagRuns`.
pub fn list_params() -> Params {
    Params::new()
        .page()
        .order_by(RUN_SORT)
        .list("state")
        .list("run_type")
        .p("dag_version", Kind::IntList)
        .patterns("run_id")
        .patterns("dag_id")
        .ranges("logical_date", Kind::DateTime)
        .ranges("run_after", Kind::DateTime)
        .ranges("start_date", Kind::DateTime)
        .ranges("end_date", Kind::DateTime)
        .ranges("duration", Kind::Number)
        .p("conf_contains", Kind::Str)
}

fn states(values: &[String], loc: &[&str]) -> Result<Vec<String>, ApiError> {
    values
        .iter()
        .map(|v| {
            RunState::parse(v)
                .map(|s| s.as_str().to_string())
                .ok_or_else(|| {
                    ApiError::validation(
                        loc,
                        "enum",
                        format!("Input should be {}", RunState::names()),
                        v,
                    )
                })
        })
        .collect()
}

fn run_types(values: &[String]) -> Result<Vec<String>, ApiError> {
    values
        .iter()
        .map(|v| {
            RunType::parse(v)
                .map(|t| t.as_str().to_string())
                .ok_or_else(|| {
                    ApiError::validation(
                        &["query", "run_type"],
                        "enum",
                        format!("Input should be {}", RunType::names()),
                        v,
                    )
                })
        })
        .collect()
}

/// `GET /dags/{dag_id}/dagRuns` (`~` for every DAG).
pub async fn list(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &list_params())?;
    let dag = (dag_id != "~").then_some(dag_id.clone());
    if let Some(d) = &dag {
        if w::dag_row(&st.pool, d).await?.is_none() {
            return Err(dag_not_found(d));
        }
    }
    let query = RunQuery {
        dag_ids: dag.map(|d| vec![d]),
        states: states(&p.list("state"), &["query", "state"])?,
        run_types: run_types(&p.list("run_type"))?,
        run_id_patterns: p.likes("run_id"),
        dag_id_patterns: p.likes("dag_id"),
        logical_date: p.time_range("logical_date")?,
        run_after: p.time_range("run_after")?,
        start_date: p.time_range("start_date")?,
        end_date: p.time_range("end_date")?,
        duration: p.num_range("duration")?,
        conf_contains: p.str("conf_contains").map(str::to_string),
        dag_versions: p.ints("dag_version")?,
        sort: p.order_by(RUN_SORT, &["id"])?,
        page: p.page()?,
    };
    let (runs, total) = q::list(&st.pool, &query).await?;
    collection(&st, runs, total).await
}

/// Airflow's `DAGRunsBatchBody`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunsBatch {
    order_by: Option<String>,
    page_offset: Option<i64>,
    page_limit: Option<i64>,
    dag_ids: Option<Vec<String>>,
    states: Option<Vec<Option<String>>>,
    run_after_gte: Option<String>,
    run_after_gt: Option<String>,
    run_after_lte: Option<String>,
    run_after_lt: Option<String>,
    logical_date_gte: Option<String>,
    logical_date_gt: Option<String>,
    logical_date_lte: Option<String>,
    logical_date_lt: Option<String>,
    start_date_gte: Option<String>,
    start_date_gt: Option<String>,
    start_date_lte: Option<String>,
    start_date_lt: Option<String>,
    end_date_gte: Option<String>,
    end_date_gt: Option<String>,
    end_date_lte: Option<String>,
    end_date_lt: Option<String>,
    duration_gte: Option<f64>,
    duration_gt: Option<f64>,
    duration_lte: Option<f64>,
    duration_lt: Option<f64>,
    conf_contains: Option<String>,
}

/// A date field of a batch body.
fn body_date(name: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.as_deref()
        .map(|s| parse_datetime(name, s).map_err(|e| body_error(e, name, s)))
        .transpose()
}

fn body_error(_: ApiError, name: &str, input: &str) -> ApiError {
    ApiError::validation(
        &["body", name],
        "datetime_from_date_parsing",
        "Input should be a valid datetime",
        input,
    )
}

/// A single `order_by` of a batch body.
pub fn body_sort(
    order_by: Option<&str>,
    fields: &[(&'static str, &str)],
    default: &'static str,
) -> Result<Vec<Sort>, ApiError> {
    let o = order_by.unwrap_or(default);
    let (desc, name) = match o.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, o),
    };
    let field = fields
        .iter()
        .map(|(f, _)| *f)
        .find(|f| *f == name)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Ordering with '{name}' is disallowed or the attribute does not exist on the model"
            ))
        })?;
    Ok(vec![Sort { field, desc }])
}

pub fn body_page(offset: Option<i64>, limit: Option<i64>) -> Result<Page, ApiError> {
    for (name, v) in [("page_offset", offset), ("page_limit", limit)] {
        if v.is_some_and(|n| n < 0) {
            return Err(ApiError::validation(
                &["body", name],
                "greater_than_equal",
                "Input should be greater than or equal to 0",
                &v.unwrap_or_default().to_string(),
            ));
        }
    }
    Ok(Page {
        limit: limit.unwrap_or(100).min(MAX_LIMIT),
        offset: offset.unwrap_or(0),
    })
}

/// `POST /dags/~/dagRuns/list`: the run list with a JSON body (only `~` as the DAG).
pub async fn batch(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<RunsBatch>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    if dag_id != "~" {
        return Err(ApiError::validation(
            &["path", "dag_id"],
            "literal_error",
            "Input should be '~'",
            &dag_id,
        ));
    }
    let range = |gte: &Option<String>,
                 gt: &Option<String>,
                 lte: &Option<String>,
                 lt: &Option<String>,
                 f: &str|
     -> Result<TimeRange, ApiError> {
        Ok(Range {
            gte: body_date(&format!("{f}_gte"), gte)?,
            gt: body_date(&format!("{f}_gt"), gt)?,
            lte: body_date(&format!("{f}_lte"), lte)?,
            lt: body_date(&format!("{f}_lt"), lt)?,
        })
    };
    let state_names: Vec<String> = b
        .states
        .clone()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let query = RunQuery {
        dag_ids: b.dag_ids.clone(),
        states: states(&state_names, &["body", "states"])?,
        run_types: Vec::new(),
        run_id_patterns: Vec::new(),
        dag_id_patterns: Vec::new(),
        logical_date: range(
            &b.logical_date_gte,
            &b.logical_date_gt,
            &b.logical_date_lte,
            &b.logical_date_lt,
            "logical_date",
        )?,
        run_after: range(
            &b.run_after_gte,
            &b.run_after_gt,
            &b.run_after_lte,
            &b.run_after_lt,
            "run_after",
        )?,
        start_date: range(
            &b.start_date_gte,
            &b.start_date_gt,
            &b.start_date_lte,
            &b.start_date_lt,
            "start_date",
        )?,
        end_date: range(
            &b.end_date_gte,
            &b.end_date_gt,
            &b.end_date_lte,
            &b.end_date_lt,
            "end_date",
        )?,
        duration: Range {
            gte: b.duration_gte,
            gt: b.duration_gt,
            lte: b.duration_lte,
            lt: b.duration_lt,
        },
        conf_contains: b.conf_contains.clone(),
        dag_versions: Vec::new(),
        sort: body_sort(b.order_by.as_deref(), RUN_SORT, "id")?,
        page: body_page(b.page_offset, b.page_limit)?,
    };
    let (runs, total) = q::list(&st.pool, &query).await?;
    collection(&st, runs, total).await
}

pub async fn get(
    State(st): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let run = find_run(&st, &dag_id, &run_id).await?;
    let vs = versions(&st, std::slice::from_ref(&run)).await?;
    Ok(Json(models::run(&run, &vs)))
}

/// Airflow 3's `TriggerDAGRunPostBody`. Fields updraft has no use for are accepted and
/// ignored (Airflow's clients send them all, mostly null).
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
    user: crate::web::auth::CurrentUser,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<TriggerBody>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let req = TriggerRequest {
        conf: body.conf,
        logical_date: body.logical_date,
        run_id: body.dag_run_id,
        note: body.note,
    };
    let run = match db_runs::trigger(&st.pool, &dag_id, req).await {
        Ok(run) => run,
        Err(TriggerError::DagNotFound(_)) => return Err(dag_not_found(&dag_id)),
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
    let extra = Value::Null;
    super::events::record_api(
        &st,
        &user,
        "trigger",
        &dag_id,
        Some(&run.run_id),
        None,
        extra,
    )
    .await;
    let vs = versions(&st, std::slice::from_ref(&run)).await?;
    Ok(Json(models::run(&run, &vs)))
}

pub fn wait_params() -> Params {
    Params::new().p("interval", Kind::Number).list("result")
}

/// `GET …/dagRuns/{run_id}/wait?interval=s[&result=task]`: NDJSON, one `{"state": …}` line
/// per poll while the run is unfinished, then the final state with the `return_value`
/// XComs of the `result` tasks.
pub async fn wait(
    State(st): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Query::parse(raw.as_deref(), &wait_params())?;
    let interval = match p.number("interval")? {
        None => {
            return Err(ApiError::validation(
                &["query", "interval"],
                "missing",
                "Field required",
                "",
            ))
        }
        Some(i) if i <= 0.0 || !i.is_finite() => {
            return Err(ApiError::validation(
                &["query", "interval"],
                "greater_than",
                "Input should be greater than 0",
                &i.to_string(),
            ))
        }
        Some(i) => Duration::from_secs_f64(i.min(3600.0)),
    };
    let results = p.list("result");
    let first = find_run(&st, &dag_id, &run_id).await?;
    let pool = st.pool.clone();
    let shutdown = st.shutdown.clone();
    let stream = futures::stream::unfold(Some(first), move |run| {
        let (pool, shutdown, results) = (pool.clone(), shutdown.clone(), results.clone());
        async move {
            let run = run?;
            if run.state.is_finished() {
                let mut out = json!({"state": run.state});
                if !results.is_empty() {
                    let xcoms = crate::db::templates::xcoms(
                        &pool,
                        &run.dag_id,
                        &run.run_id,
                        &results,
                        "return_value",
                        None,
                    )
                    .await
                    .unwrap_or_default();
                    let mut map = serde_json::Map::new();
                    let mut sorted = results.clone();
                    sorted.sort();
                    for t in sorted {
                        if let Some((_, v)) = xcoms.iter().find(|(task, _)| *task == t) {
                            map.insert(t, v.clone());
                        }
                    }
                    out["results"] = Value::Object(map);
                }
                return Some((Ok::<_, std::io::Error>(format!("{out}\n")), None));
            }
            let line = format!("{}\n", json!({"state": run.state}));
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return Some((Ok(line), None)),
            }
            let next = db_runs::get(&pool, &run.dag_id, &run.run_id)
                .await
                .ok()
                .flatten();
            Some((Ok(line), next))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
