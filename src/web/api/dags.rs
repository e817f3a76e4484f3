//! `/api/v2/dags…`, `/dagSources`, `/dagStats`, `/dagWarnings`, `/dagTags`: DAGs, their
//! details, tasks, source, versions, run counts and tags.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::models;
use super::query::{path_int, Kind, Params, Query};
use super::ApiJson;
use crate::core::RunState;
use crate::dag::Dag;
use crate::db::api::dags::{self as q, DagQuery, DAG_SORT, VERSION_SORT};
use crate::db::web as w;
use crate::web::error::ApiError;
use crate::web::AppState;

pub fn dag_not_found(dag_id: &str) -> ApiError {
    ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
}

/// Parameters of `GET /dags`.
pub fn list_params() -> Params {
    Params::new()
        .page()
        .order_by(DAG_SORT)
        .list("tags")
        .p("tags_match_mode", Kind::Str)
        .list("owners")
        .patterns("dag_id")
        .patterns("dag_display_name")
        .p("exclude_stale", Kind::Bool)
        .p("paused", Kind::Bool)
        .p("has_import_errors", Kind::Bool)
        .p("last_dag_run_state", Kind::Str)
        .list("dag_run_state")
        .ranges("dag_run_start_date", Kind::DateTime)
        .ranges("dag_run_end_date", Kind::DateTime)
        .p("bundle_name", Kind::Str)
}

fn run_state(name: &str, v: &str) -> Result<String, ApiError> {
    RunState::parse(v)
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| {
            ApiError::validation(
                &["query", name],
                "enum",
                format!("Input should be {}", RunState::names()),
                v,
            )
        })
}

pub async fn list(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &list_params())?;
    let mut states: Vec<String> = p
        .list("dag_run_state")
        .iter()
        .map(|s| run_state("dag_run_state", s))
        .collect::<Result<_, _>>()?;
    if let Some(s) = p.str("last_dag_run_state") {
        states.push(run_state("last_dag_run_state", s)?);
    }
    let tags_all = match p.str("tags_match_mode") {
        None | Some("any") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::validation(
                &["query", "tags_match_mode"],
                "literal_error",
                "Input should be 'any' or 'all'",
                other,
            ))
        }
    };
    let mut patterns = p.likes("dag_id");
    patterns.extend(p.likes("dag_display_name"));
    let mut query = DagQuery {
        match_none: false,
        tags: p.list("tags"),
        tags_match_all: tags_all,
        owners: p.list("owners"),
        patterns,
        exclude_stale: p.bool("exclude_stale")?.unwrap_or(true),
        paused: p.bool("paused")?,
        has_import_errors: p.bool("has_import_errors")?,
        last_run_states: states,
        last_run_start: p.time_range("dag_run_start_date")?,
        last_run_end: p.time_range("dag_run_end_date")?,
        sort: p.order_by(DAG_SORT, &["dag_id"])?,
        page: p.page()?,
    };
    // Every DAG is in the one bundle of the DAGs folder.
    query.match_none = p.str("bundle_name").is_some_and(|b| b != models::BUNDLE);
    let (rows, total) = q::list(&st.pool, &query).await?;
    Ok(Json(json!({
        "dags": rows.iter().map(models::dag).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

/// No query parameters.
pub fn no_params() -> Params {
    Params::new()
}

async fn dag_row(st: &AppState, dag_id: &str) -> Result<w::DagRow, ApiError> {
    w::dag_row(&st.pool, dag_id)
        .await?
        .ok_or_else(|| dag_not_found(dag_id))
}

pub async fn get(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    Ok(Json(models::dag(&dag_row(&st, &dag_id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchDag {
    is_paused: bool,
}

pub fn patch_params() -> Params {
    Params::new().list("update_mask")
}

pub async fn patch(
    State(st): State<AppState>,
    user: crate::web::auth::CurrentUser,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<PatchDag>,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &patch_params())?;
    if let Some(bad) = p.list("update_mask").iter().find(|m| *m != "is_paused") {
        return Err(ApiError::bad_request(format!(
            "Only `is_paused` field can be updated through the REST API, not `{bad}`"
        )));
    }
    if !crate::db::dags::set_paused(&st.pool, &dag_id, body.is_paused).await? {
        return Err(dag_not_found(&dag_id));
    }
    let event = if body.is_paused { "pause" } else { "unpause" };
    super::events::record_api(&st, &user, event, &dag_id, None, None, Value::Null).await;
    Ok(Json(models::dag(&dag_row(&st, &dag_id).await?)))
}

/// The DAG's current version, parsed.
async fn current_dag(
    st: &AppState,
    dag_id: &str,
) -> Result<(w::DagDetailRow, Option<Dag>), ApiError> {
    let d = w::dag_detail(&st.pool, dag_id)
        .await?
        .ok_or_else(|| dag_not_found(dag_id))?;
    let spec = crate::dag::spec::from_stored(d.spec.clone()).ok();
    Ok((d, spec))
}

pub async fn details(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let (d, spec) = current_dag(&st, &dag_id).await?;
    let latest = q::versions(
        &st.pool,
        &dag_id,
        None,
        &[crate::db::api::Sort {
            field: "id",
            desc: true,
        }],
        crate::db::api::Page {
            limit: 1,
            offset: 0,
        },
    )
    .await?
    .0
    .first()
    .map(|v| models::version_row(&dag_id, v));
    let active = d
        .dag
        .recent_states
        .iter()
        .filter(|s| s.is_unfinished())
        .count() as i64;
    Ok(Json(models::dag_details(
        &d.dag,
        spec.as_ref(),
        latest,
        active,
    )))
}

pub fn tasks_params() -> Params {
    Params::new().p("order_by", Kind::Str)
}

pub async fn tasks(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &tasks_params())?;
    let (_, spec) = current_dag(&st, &dag_id).await?;
    let dag = spec.ok_or_else(|| dag_not_found(&dag_id))?;
    let mut tasks: Vec<&crate::dag::Task> = dag.tasks.iter().collect();
    let order = p.str("order_by").unwrap_or("task_id");
    let (desc, field) = match order.strip_prefix('-') {
        Some(f) => (true, f),
        None => (false, order),
    };
    match field {
        "task_id" => tasks.sort_by(|a, b| a.task_id.cmp(&b.task_id)),
        "owner" => tasks.sort_by(|a, b| a.owner.cmp(&b.owner)),
        "retries" => tasks.sort_by_key(|t| t.retries),
        "operator_name" => tasks.sort_by(|a, b| a.uses.cmp(&b.uses)),
        other => {
            return Err(ApiError::bad_request(format!(
                "Ordering with '{other}' is disallowed or the attribute does not exist on the model"
            )))
        }
    }
    if desc {
        tasks.reverse();
    }
    Ok(Json(json!({
        "tasks": tasks.iter().map(|t| models::task(t, &dag)).collect::<Vec<_>>(),
        "total_entries": tasks.len(),
    })))
}

pub async fn task(
    State(st): State<AppState>,
    Path((dag_id, task_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let (_, spec) = current_dag(&st, &dag_id).await?;
    let dag = spec.ok_or_else(|| dag_not_found(&dag_id))?;
    let t = dag
        .task(&task_id)
        .ok_or_else(|| ApiError::not_found(format!("Task with id {task_id} not found")))?;
    Ok(Json(models::task(t, &dag)))
}

pub fn source_params() -> Params {
    Params::new().p("version_number", Kind::Int)
}

/// `GET /dagSources/{dag_id}`: JSON, or the file itself with `Accept: text/plain`.
pub async fn source(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Query::parse(raw.as_deref(), &source_params())?;
    let number = p.int("version_number")?;
    let (number, content) =
        q::source(&st.pool, &dag_id, number)
            .await?
            .ok_or_else(|| match number {
                Some(n) => ApiError::not_found(format!(
                    "The source code of the Dag {dag_id}, version_number {n} was not found"
                )),
                None => dag_not_found(&dag_id),
            })?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if accept.contains("text/plain") && !accept.contains("application/json") {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content,
        )
            .into_response());
    }
    if !(accept.contains("json") || accept.contains("*/*") || accept.contains("text/plain")) {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            "Invalid Accept header",
        ));
    }
    Ok(Json(json!({
        "content": content,
        "dag_id": dag_id,
        "dag_display_name": dag_id,
        "version_number": number,
    }))
    .into_response())
}

pub fn stats_params() -> Params {
    Params::new().list("dag_ids")
}

/// `GET /dagStats`: per DAG, how many runs are in each state (every state listed).
pub async fn stats(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &stats_params())?;
    let ids = p.list("dag_ids");
    let rows = q::run_counts(&st.pool, (!ids.is_empty()).then_some(ids.as_slice())).await?;
    let mut dags: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for (dag_id, state, count) in rows {
        if dags.last().is_none_or(|(d, _)| *d != dag_id) {
            dags.push((dag_id.clone(), Vec::new()));
        }
        if let (Some(state), Some(last)) = (state, dags.last_mut()) {
            last.1.push((state, count));
        }
    }
    const STATES: [RunState; 4] = [
        RunState::Queued,
        RunState::Running,
        RunState::Success,
        RunState::Failed,
    ];
    let out: Vec<Value> = dags
        .iter()
        .map(|(dag_id, counts)| {
            let stats: Vec<Value> = STATES
                .iter()
                .map(|s| {
                    let n = counts
                        .iter()
                        .find(|(st, _)| st == s.as_str())
                        .map_or(0, |(_, n)| *n);
                    json!({"state": s.as_str(), "count": n})
                })
                .collect();
            json!({"dag_id": dag_id, "dag_display_name": dag_id, "stats": stats})
        })
        .collect();
    Ok(Json(json!({"dags": out, "total_entries": out.len()})))
}

pub fn versions_params() -> Params {
    Params::new()
        .page()
        .order_by(VERSION_SORT)
        .p("version_number", Kind::Int)
        .p("bundle_name", Kind::Str)
}

pub async fn versions(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &versions_params())?;
    dag_row(&st, &dag_id).await?;
    let mut page = p.page()?;
    if p.str("bundle_name").is_some_and(|b| b != models::BUNDLE) {
        page.limit = 0;
    }
    let sort = p.order_by(VERSION_SORT, &["id"])?;
    let (rows, total) =
        q::versions(&st.pool, &dag_id, p.int("version_number")?, &sort, page).await?;
    let total = if page.limit == 0 && p.str("bundle_name").is_some() {
        0
    } else {
        total
    };
    Ok(Json(json!({
        "dag_versions": rows.iter().map(|v| models::version_row(&dag_id, v)).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

/// A DAG's version by its number (a path parameter), or Airflow's 422 / 404.
async fn find_version(
    st: &AppState,
    dag_id: &str,
    number: &str,
) -> Result<w::VersionRow, ApiError> {
    let n: i64 = path_int("version_number", number)?;
    q::version(&st.pool, dag_id, n).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "The DagVersion with dag_id: `{dag_id}` and version_number: `{n}` was not found"
        ))
    })
}

pub async fn version(
    State(st): State<AppState>,
    Path((dag_id, number)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let v = find_version(&st, &dag_id, &number).await?;
    Ok(Json(models::version_row(&dag_id, &v)))
}

/// `GET /dags/{dag_id}/dagVersions/{version_number}/recordSchemas` (updraft's own): the
/// record schema each fetch task of that version declares, as JSON Schema. Derived from
/// the version's stored spec, so a version's schemas never change.
pub async fn record_schemas(
    State(st): State<AppState>,
    Path((dag_id, number)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let v = find_version(&st, &dag_id, &number).await?;
    let spec = q::version_spec(&st.pool, v.id).await?;
    let dag = crate::dag::spec::from_stored(spec).map_err(ApiError::internal)?;
    let schemas: Vec<Value> = crate::dag::contracts::record_schemas(&dag)
        .into_iter()
        .map(|(task_id, schema)| json!({"task_id": task_id, "schema": schema}))
        .collect();
    Ok(Json(json!({
        "dag_id": dag_id,
        "version_number": v.number,
        "total_entries": schemas.len(),
        "schemas": schemas,
    })))
}

pub fn warnings_params() -> Params {
    Params::new()
        .page()
        .order_by(&[
            ("dag_id", ""),
            ("warning_type", ""),
            ("message", ""),
            ("timestamp", ""),
        ])
        .p("dag_id", Kind::Str)
        .p("warning_type", Kind::Str)
}

/// `GET /dagWarnings`: updraft raises none of Airflow's DAG warnings (asset conflicts,
/// unknown pools, runtime-varying values), so the list is always empty; the parameters are
/// still checked.
pub async fn warnings(RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &warnings_params())?;
    p.page()?;
    p.order_by(
        &[
            ("dag_id", ""),
            ("warning_type", ""),
            ("message", ""),
            ("timestamp", ""),
        ],
        &["dag_id"],
    )?;
    if let Some(t) = p.str("warning_type") {
        if ![
            "asset conflict",
            "non-existent pool",
            "runtime varying value",
        ]
        .contains(&t)
        {
            return Err(ApiError::validation(
                &["query", "warning_type"],
                "enum",
                "Input should be 'asset conflict', 'non-existent pool' or 'runtime varying value'",
                t,
            ));
        }
    }
    Ok(Json(json!({"dag_warnings": [], "total_entries": 0})))
}

pub fn tags_params() -> Params {
    Params::new()
        .page()
        .order_by(&[("name", "")])
        .patterns("tag_name")
}

pub async fn tags(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &tags_params())?;
    let sort = p.order_by(&[("name", "")], &["name"])?;
    let likes = p.likes("tag_name");
    if likes.len() > 1 {
        return Err(ApiError::bad_request(
            "give either tag_name_pattern or tag_name_prefix_pattern, not both",
        ));
    }
    let (names, total) = q::tags(&st.pool, likes.first(), sort[0].desc, p.page()?).await?;
    Ok(Json(json!({"tags": names, "total_entries": total})))
}
