//! `/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances…`: lists (with Airflow's
//! filters, `~` for any DAG or run), the batch list, one task instance, its tries, its log,
//! and its XCom entries.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::dags::{dag_not_found, no_params};
use super::query::{parse_datetime, path_int, Kind, Params, Query};
use super::runs::{body_page, body_sort, find_run};
use super::ti_models::{self as m, XComValue};
use super::ApiJson;
use crate::core::TaskState;
use crate::db::api::task_instances::{self as q, TiApiRow, TiQuery, XComQuery, TI_SORT, XCOM_SORT};
use crate::db::api::{Range, TimeRange};
use crate::web::error::ApiError;
use crate::web::AppState;

/// Lines per log page when the client does not ask for the full content.
pub const LOG_PAGE: i64 = 1000;
/// Upper bound for `full_content=true`, so one request cannot pull a gigabyte.
pub const LOG_FULL_MAX: i64 = 100_000;

fn ti_not_found(dag_id: &str, run_id: &str, task_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "The Task Instance with dag_id: `{dag_id}`, dag_run_id: `{run_id}`, task_id: `{task_id}` and map_index: `-1` was not found"
    ))
}

/// Airflow's task instance state names → updraft's (`none`/`no_status` for no state yet).
fn ti_states(values: &[String], loc: &[&str]) -> Result<Vec<String>, ApiError> {
    values
        .iter()
        .map(|v| {
            let s = if v == "no_status" { "none" } else { v.as_str() };
            TaskState::parse(s)
                .map(|t| t.as_str().to_string())
                .ok_or_else(|| {
                    ApiError::validation(
                        loc,
                        "enum",
                        format!("Input should be {}", TaskState::names()),
                        v,
                    )
                })
        })
        .collect()
}

/// Parameters of `GET …/taskInstances`.
pub fn list_params() -> Params {
    Params::new()
        .page()
        .order_by(TI_SORT)
        .p("task_id", Kind::Str)
        .list("state")
        .list("pool")
        .list("queue")
        .list("operator")
        .p("try_number", Kind::IntList)
        .p("map_index", Kind::IntList)
        .p("version_number", Kind::IntList)
        .patterns("task_display_name")
        .patterns("dag_id")
        .patterns("run_id")
        .patterns("pool_name")
        .patterns("queue_name")
        .patterns("operator_name")
        .ranges("logical_date", Kind::DateTime)
        .ranges("run_after", Kind::DateTime)
        .ranges("start_date", Kind::DateTime)
        .ranges("end_date", Kind::DateTime)
        .ranges("duration", Kind::Number)
}

async fn check_dag_and_run(st: &AppState, dag_id: &str, run_id: &str) -> Result<(), ApiError> {
    if dag_id != "~" && crate::db::web::dag_row(&st.pool, dag_id).await?.is_none() {
        return Err(dag_not_found(dag_id));
    }
    if dag_id != "~" && run_id != "~" {
        find_run(st, dag_id, run_id).await?;
    }
    Ok(())
}

fn collection(rows: &[TiApiRow], total: i64) -> Json<Value> {
    Json(json!({
        "task_instances": rows.iter().map(m::task_instance).collect::<Vec<_>>(),
        "total_entries": total,
    }))
}

/// `GET /dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`, `~` for any DAG or run.
pub async fn list(
    State(st): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &list_params())?;
    check_dag_and_run(&st, &dag_id, &run_id).await?;
    let any = |v: &str| (v != "~").then(|| vec![v.to_string()]);
    let try_numbers = p
        .ints("try_number")?
        .into_iter()
        .map(|n| n as i32)
        .collect();
    let query = TiQuery {
        dag_ids: any(&dag_id),
        run_ids: any(&run_id),
        task_ids: p
            .str("task_id")
            .map(|t| vec![t.to_string()])
            .unwrap_or_default(),
        states: ti_states(&p.list("state"), &["query", "state"])?,
        pools: p.list("pool"),
        queues: p.list("queue"),
        operators: p.list("operator"),
        try_numbers,
        map_indexes: p.ints("map_index")?,
        version_numbers: p.ints("version_number")?,
        task_patterns: p.likes("task_display_name"),
        dag_id_patterns: p.likes("dag_id"),
        run_id_patterns: p.likes("run_id"),
        pool_patterns: p.likes("pool_name"),
        queue_patterns: p.likes("queue_name"),
        operator_patterns: p.likes("operator_name"),
        logical_date: p.time_range("logical_date")?,
        run_after: p.time_range("run_after")?,
        start_date: p.time_range("start_date")?,
        end_date: p.time_range("end_date")?,
        duration: p.num_range("duration")?,
        sort: p.order_by(TI_SORT, &["map_index"])?,
        page: p.page()?,
    };
    let (rows, total) = q::list(&st.pool, &query).await?;
    Ok(collection(&rows, total))
}

/// Airflow's `TaskInstancesBatchBody`.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TiBatch {
    dag_ids: Option<Vec<String>>,
    dag_run_ids: Option<Vec<String>>,
    task_ids: Option<Vec<String>>,
    state: Option<Vec<Option<String>>>,
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
    pool: Option<Vec<String>>,
    queue: Option<Vec<String>>,
    executor: Option<Vec<String>>,
    page_offset: Option<i64>,
    page_limit: Option<i64>,
    order_by: Option<String>,
}

fn date(name: &str, v: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.as_deref()
        .map(|s| {
            parse_datetime(name, s).map_err(|_| {
                ApiError::validation(
                    &["body", name],
                    "datetime_from_date_parsing",
                    "Input should be a valid datetime",
                    s,
                )
            })
        })
        .transpose()
}

fn range(f: &str, v: [&Option<String>; 4]) -> Result<TimeRange, ApiError> {
    Ok(Range {
        gte: date(&format!("{f}_gte"), v[0])?,
        gt: date(&format!("{f}_gt"), v[1])?,
        lte: date(&format!("{f}_lte"), v[2])?,
        lt: date(&format!("{f}_lt"), v[3])?,
    })
}

/// `POST /dags/~/dagRuns/~/taskInstances/list`.
pub async fn batch(
    State(st): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<TiBatch>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    for (name, v) in [("dag_id", &dag_id), ("dag_run_id", &run_id)] {
        if v != "~" {
            return Err(ApiError::validation(
                &["path", name],
                "literal_error",
                "Input should be '~'",
                v,
            ));
        }
    }
    // updraft has one executor (its workers) and Airflow names none for it: asking for an
    // executor matches nothing.
    if b.executor.as_ref().is_some_and(|e| !e.is_empty()) {
        return Ok(collection(&[], 0));
    }
    let states: Vec<String> = b
        .state
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.unwrap_or_else(|| "none".into()))
        .collect();
    let query = TiQuery {
        dag_ids: b.dag_ids.clone(),
        run_ids: b.dag_run_ids.clone(),
        task_ids: b.task_ids.clone().unwrap_or_default(),
        states: ti_states(&states, &["body", "state"])?,
        pools: b.pool.clone().unwrap_or_default(),
        queues: b.queue.clone().unwrap_or_default(),
        logical_date: range(
            "logical_date",
            [
                &b.logical_date_gte,
                &b.logical_date_gt,
                &b.logical_date_lte,
                &b.logical_date_lt,
            ],
        )?,
        run_after: range(
            "run_after",
            [
                &b.run_after_gte,
                &b.run_after_gt,
                &b.run_after_lte,
                &b.run_after_lt,
            ],
        )?,
        start_date: range(
            "start_date",
            [
                &b.start_date_gte,
                &b.start_date_gt,
                &b.start_date_lte,
                &b.start_date_lt,
            ],
        )?,
        end_date: range(
            "end_date",
            [
                &b.end_date_gte,
                &b.end_date_gt,
                &b.end_date_lte,
                &b.end_date_lt,
            ],
        )?,
        duration: Range {
            gte: b.duration_gte,
            gt: b.duration_gt,
            lte: b.duration_lte,
            lt: b.duration_lt,
        },
        sort: body_sort(b.order_by.as_deref(), TI_SORT, "map_index")?,
        page: body_page(b.page_offset, b.page_limit)?,
        ..Default::default()
    };
    let (rows, total) = q::list(&st.pool, &query).await?;
    Ok(collection(&rows, total))
}

async fn find_ti(
    st: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiApiRow, ApiError> {
    q::get(&st.pool, dag_id, run_id, task_id)
        .await?
        .ok_or_else(|| ti_not_found(dag_id, run_id, task_id))
}

pub async fn get(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    Ok(Json(m::task_instance(
        &find_ti(&st, &dag_id, &run_id, &task_id).await?,
    )))
}

pub fn map_index_params() -> Params {
    Params::new().p("map_index", Kind::Int)
}

fn check_map_index(p: &Query) -> Result<(), ApiError> {
    match p.int("map_index")? {
        None | Some(-1) => Ok(()),
        Some(_) => Err(ApiError::not_found(
            "updraft has no mapped tasks: the only map_index is -1",
        )),
    }
}

/// `GET …/taskInstances/{task_id}/tries`: every try so far, oldest first.
pub async fn tries(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &map_index_params())?;
    check_map_index(&p)?;
    let ti = find_ti(&st, &dag_id, &run_id, &task_id).await?;
    let logs = q::tries(&st.pool, ti.id).await?;
    let out: Vec<Value> = (1..=ti.try_number)
        .map(|n| m::task_try(&ti, n, logs.iter().find(|l| l.try_number == n)))
        .collect();
    Ok(Json(
        json!({"task_instances": out, "total_entries": out.len()}),
    ))
}

pub async fn try_detail(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id, try_raw)): Path<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &map_index_params())?;
    check_map_index(&p)?;
    let n = path_int("task_try_number", &try_raw)?;
    let ti = find_ti(&st, &dag_id, &run_id, &task_id).await?;
    if n < 1 || n > ti.try_number {
        return Err(ApiError::not_found(format!(
            "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}`, try_number: `{n}` and map_index: `-1` was not found"
        )));
    }
    let logs = q::tries(&st.pool, ti.id).await?;
    Ok(Json(m::task_try(
        &ti,
        n,
        logs.iter().find(|l| l.try_number == n),
    )))
}

pub fn log_params() -> Params {
    Params::new()
        .p("token", Kind::Str)
        .p("full_content", Kind::Bool)
        .p("map_index", Kind::Int)
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
    let p = Query::parse(raw.as_deref(), &log_params())?;
    check_map_index(&p)?;
    let try_number = path_int("try_number", &try_raw)?;
    let ti = find_ti(&st, &dag_id, &run_id, &task_id).await?;
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(ApiError::not_found(format!(
            "try {try_number} of `{task_id}` does not exist; tries so far: {}",
            ti.try_number
        )));
    }
    let after = match p.str("token") {
        None => 0,
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

/// Parameters of `GET …/xcomEntries`.
pub fn xcoms_params() -> Params {
    Params::new()
        .page()
        .order_by(XCOM_SORT)
        .p("xcom_key", Kind::Str)
        .p("map_index", Kind::Int)
        .p("map_index_filter", Kind::Int)
        .patterns("xcom_key")
        .patterns("dag_display_name")
        .patterns("run_id")
        .patterns("task_id")
        .ranges("logical_date", Kind::DateTime)
        .ranges("run_after", Kind::DateTime)
}

/// `GET /dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries`, `~` for
/// any DAG, run or task.
pub async fn xcoms(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &xcoms_params())?;
    check_dag_and_run(&st, &dag_id, &run_id).await?;
    let one = |v: &str| (v != "~").then(|| v.to_string());
    let map_indexes: Vec<i64> = [p.int("map_index")?, p.int("map_index_filter")?]
        .into_iter()
        .flatten()
        .collect();
    let query = XComQuery {
        dag_id: one(&dag_id),
        run_id: one(&run_id),
        task_id: one(&task_id),
        key: p.str("xcom_key").map(str::to_string),
        key_patterns: p.likes("xcom_key"),
        dag_id_patterns: p.likes("dag_display_name"),
        run_id_patterns: p.likes("run_id"),
        task_id_patterns: p.likes("task_id"),
        logical_date: p.time_range("logical_date")?,
        run_after: p.time_range("run_after")?,
        map_indexes,
        sort: if p.list("order_by").is_empty() {
            Vec::new()
        } else {
            p.order_by(XCOM_SORT, &[])?
        },
        page: p.page()?,
    };
    let (rows, total) = q::xcoms(&st.pool, &query).await?;
    Ok(Json(json!({
        "xcom_entries": rows.iter().map(|x| m::xcom(x, XComValue::Omit)).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

pub fn xcom_params() -> Params {
    Params::new()
        .p("map_index", Kind::Int)
        .p("deserialize", Kind::Bool)
        .p("stringify", Kind::Bool)
}

/// One XCom entry with its value (`stringify=true`: as Python's `str()`).
pub async fn xcom(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id, key)): Path<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &xcom_params())?;
    let not_found = || ApiError::not_found(format!("XCom entry with key: `{key}` not found"));
    if p.int("map_index")?.is_some_and(|i| i != -1) {
        return Err(not_found());
    }
    let query = XComQuery {
        dag_id: Some(dag_id),
        run_id: Some(run_id),
        task_id: Some(task_id),
        key: Some(key.clone()),
        page: crate::db::api::Page {
            limit: 1,
            offset: 0,
        },
        ..Default::default()
    };
    let (rows, _) = q::xcoms(&st.pool, &query).await?;
    let x = rows.first().ok_or_else(not_found)?;
    let how = if p.bool("stringify")? == Some(true) {
        XComValue::Stringify
    } else {
        XComValue::Native
    };
    Ok(Json(m::xcom(x, how)))
}
