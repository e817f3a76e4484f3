//! The audit log over the API: `GET /eventLogs` and `GET /eventLogs/{id}` in Airflow 3's
//! shape, and [`record_api`], which every changing API handler calls after its change.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::query::{Kind, Params, Query};
use crate::db::events::{self, Event, EventQuery, EventRow};
use crate::web::auth::CurrentUser;
use crate::web::error::ApiError;
use crate::web::AppState;

/// Records a change made through the API. The change has happened: a failure to record it
/// is logged, not answered as an error.
pub async fn record_api(
    st: &AppState,
    user: &CurrentUser,
    event: &str,
    dag_id: &str,
    run_id: Option<&str>,
    task_id: Option<&str>,
    extra: Value,
) {
    record(
        st,
        user,
        "api",
        event,
        (Some(dag_id), run_id, task_id),
        extra,
    )
    .await
}

/// Records a change made by `user` from `source` (`api` or `ui`).
pub async fn record(
    st: &AppState,
    user: &CurrentUser,
    source: &str,
    event: &str,
    (dag_id, run_id, task_id): (Option<&str>, Option<&str>, Option<&str>),
    extra: Value,
) {
    let e = Event {
        event,
        owner: Some(&user.username),
        dag_id,
        run_id,
        task_id,
        source,
        remote_addr: Some(user.addr.to_string()),
        extra,
    };
    if let Err(err) = events::record(&st.pool, &e).await {
        tracing::warn!(error = %err, event, "could not write the audit log");
    }
}

/// Airflow's `EventLogResponse`.
pub fn event_log(e: &EventRow) -> Value {
    let mut extra = e.extra.clone();
    if let Value::Object(m) = &mut extra {
        m.insert("source".into(), json!(e.source));
        if let Some(a) = &e.remote_addr {
            m.insert("remote_addr".into(), json!(a));
        }
    }
    json!({
        "event_log_id": e.id,
        "when": e.at,
        "dag_id": e.dag_id,
        "dag_display_name": e.dag_id,
        "task_id": e.task_id,
        "task_display_name": e.task_id,
        "run_id": e.run_id,
        "map_index": null,
        "try_number": null,
        "event": e.event,
        "logical_date": null,
        "owner": e.owner,
        // Airflow sends `extra` as a string of JSON.
        "extra": extra.to_string(),
    })
}

/// The orders `GET /eventLogs` takes: all by the entry's id, which follows its time.
const SORT: &[(&str, &str)] = &[
    ("id", "id"),
    ("event_log_id", "id"),
    ("when", "id"),
    ("dttm", "id"),
];

/// Parameters of `GET /eventLogs`.
pub fn list_params() -> Params {
    Params::new()
        .page()
        .order_by(SORT)
        .p("dag_id", Kind::Str)
        .p("task_id", Kind::Str)
        .p("run_id", Kind::Str)
        .p("owner", Kind::Str)
        .p("event", Kind::Str)
        .p("excluded_events", Kind::StrList)
        .p("included_events", Kind::StrList)
        .p("before", Kind::DateTime)
        .p("after", Kind::DateTime)
}

/// `GET /eventLogs`: oldest first, as Airflow's; `order_by=-id` for newest first.
pub async fn list(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &list_params())?;
    let order = p.list("order_by");
    // Oldest first, as Airflow, unless `-` asks for descending.
    let ascending = order.first().is_none_or(|o| !o.starts_with('-'));
    p.order_by(
        &[("id", "id"), ("event_log_id", "id"), ("when", "id")],
        &["id"],
    )?;
    let mut included = p.list("included_events");
    if let Some(e) = p.str("event") {
        included.push(e.to_string());
    }
    let q = EventQuery {
        dag_id: p.str("dag_id").map(str::to_string),
        run_id: p.str("run_id").map(str::to_string),
        task_id: p.str("task_id").map(str::to_string),
        owner: p.str("owner").map(str::to_string),
        events: included,
        excluded_events: p.list("excluded_events"),
        before: p.datetime("before")?,
        after: p.datetime("after")?,
        ascending,
        page: p.page()?,
    };
    let (rows, total) = events::list(&st.pool, &q).await?;
    Ok(Json(json!({
        "event_logs": rows.iter().map(event_log).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

/// `GET /eventLogs/{event_log_id}`.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &Params::new())?;
    let not_found = || ApiError::not_found(format!("The Event Log with id: `{id}` not found"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    let row = events::get(&st.pool, n).await?.ok_or_else(not_found)?;
    Ok(Json(event_log(&row)))
}
