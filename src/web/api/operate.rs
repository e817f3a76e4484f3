//! Operating runs through the API, in Airflow 3's shapes: clear task instances (of a DAG,
//! or of one run), mark a task instance (and its dry run) or a run, notes, delete a run.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::dags::{dag_not_found, no_params};
use super::query::{Kind, Params, Query};
use super::runs::find_run;
use super::{models, ti_models, ApiJson};
use crate::core::{RunState, TaskState};
use crate::db::api::task_instances as q;
use crate::db::operate::{self, ClearRequest, MarkRequest, RunFilter, RunMark, Tasks};
use crate::db::runs::RunRow;
use crate::db::web as w;
use crate::web::auth::CurrentUser;
use crate::web::error::ApiError;
use crate::web::AppState;

/// Airflow's `ClearTaskInstancesBody` (its defaults: a dry run of the failed tasks).
#[derive(Deserialize)]
#[serde(default)]
pub struct ClearBody {
    dag_run_id: Option<String>,
    dry_run: bool,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    only_failed: bool,
    only_running: bool,
    include_upstream: bool,
    include_downstream: bool,
    include_future: bool,
    include_past: bool,
    /// Accepted: updraft always brings cleared runs back to running.
    #[allow(dead_code)]
    reset_dag_runs: bool,
    /// Task ids, or `[task_id, map_index]` pairs (updraft's map index is always -1).
    task_ids: Option<Vec<Value>>,
    note: Option<String>,
    /// Accepted and ignored: a run always stays on the version it started with.
    #[allow(dead_code)]
    run_on_latest_version: Option<bool>,
    #[allow(dead_code)]
    prevent_running_task: bool,
}

impl Default for ClearBody {
    fn default() -> Self {
        ClearBody {
            dag_run_id: None,
            dry_run: true,
            start_date: None,
            end_date: None,
            only_failed: true,
            only_running: false,
            include_upstream: false,
            include_downstream: false,
            include_future: false,
            include_past: false,
            reset_dag_runs: true,
            task_ids: None,
            note: None,
            run_on_latest_version: None,
            prevent_running_task: false,
        }
    }
}

fn task_ids(v: &[Value]) -> Result<Vec<String>, ApiError> {
    v.iter()
        .map(|t| match t {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.first() {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(ApiError::bad_request(
                    "task_ids: [task_id, map_index] pairs start with the task id",
                )),
            },
            _ => Err(ApiError::bad_request(
                "task_ids: a task id or a [task_id, map_index] pair",
            )),
        })
        .collect()
}

/// Task instances as Airflow's `TaskInstanceCollectionResponse`.
async fn collection(st: &AppState, ids: &[i64]) -> Result<Value, ApiError> {
    let rows = q::by_ids(&st.pool, ids).await?;
    Ok(json!({
        "task_instances": rows.iter().map(ti_models::task_instance).collect::<Vec<_>>(),
        "total_entries": rows.len(),
    }))
}

async fn run_json(st: &AppState, dag_id: &str, run_id: &str) -> Result<Value, ApiError> {
    let run = find_run(st, dag_id, run_id).await?;
    let vs = w::version_infos(&st.pool, &[run.version_id])
        .await?
        .into_iter()
        .map(|v| (v.id, v))
        .collect();
    Ok(models::run(&run, &vs))
}

/// `POST /dags/{dag_id}/clearTaskInstances`.
pub async fn clear_task_instances(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<ClearBody>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    if w::dag_row(&st.pool, &dag_id).await?.is_none() {
        return Err(dag_not_found(&dag_id));
    }
    let mut runs = RunFilter {
        run_id: b.dag_run_id.clone(),
        start: b.start_date,
        end: b.end_date,
    };
    if let Some(run_id) = &b.dag_run_id {
        let run = find_run(&st, &dag_id, run_id).await?;
        if b.include_past || b.include_future {
            // The run and every earlier (past) and/or later (future) one.
            runs.run_id = None;
            runs.start = (!b.include_past).then_some(run.logical_date);
            runs.end = (!b.include_future).then_some(run.logical_date);
        }
    }
    let req = ClearRequest {
        dag_id: dag_id.clone(),
        runs,
        tasks: match &b.task_ids {
            Some(ids) => Tasks::Ids(task_ids(ids)?),
            None => Tasks::All,
        },
        include_upstream: b.include_upstream,
        include_downstream: b.include_downstream,
        only_failed: b.only_failed,
        only_running: b.only_running,
        dry_run: b.dry_run,
    };
    let cleared = operate::clear(&st.pool, &req)
        .await
        .map_err(ApiError::internal)?;
    if !b.dry_run {
        if let Some(note) = &b.note {
            operate::set_ti_notes(&st.pool, &cleared.ti_ids, Some(note)).await?;
        }
        let extra = json!({"dag_run_id": b.dag_run_id, "task_ids": req_tasks(&req.tasks),
                           "cleared": cleared.ti_ids.len(), "only_failed": b.only_failed,
                           "include_downstream": b.include_downstream, "include_upstream": b.include_upstream});
        super::events::record_api(
            &st,
            &user,
            "clear",
            &dag_id,
            b.dag_run_id.as_deref(),
            None,
            extra,
        )
        .await;
    }
    Ok(Json(collection(&st, &cleared.ti_ids).await?))
}

fn req_tasks(t: &Tasks) -> Value {
    match t {
        Tasks::All => Value::Null,
        Tasks::Ids(ids) => json!(ids),
        Tasks::Regex(re) => json!(re.as_str()),
    }
}

/// Airflow's `DAGRunClearBody`.
#[derive(Deserialize)]
#[serde(default)]
pub struct RunClearBody {
    dry_run: bool,
    only_failed: bool,
    note: Option<String>,
    #[allow(dead_code)]
    only_new: bool,
    #[allow(dead_code)]
    run_on_latest_version: Option<bool>,
}

impl Default for RunClearBody {
    fn default() -> Self {
        RunClearBody {
            dry_run: true,
            only_failed: false,
            note: None,
            only_new: false,
            run_on_latest_version: None,
        }
    }
}

/// `POST /dags/{dag_id}/dagRuns/{dag_run_id}/clear`: the task instances (dry run) or the run.
pub async fn clear_run(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<RunClearBody>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let run = find_run(&st, &dag_id, &run_id).await?;
    let req = ClearRequest {
        dag_id: dag_id.clone(),
        runs: RunFilter {
            run_id: Some(run_id.clone()),
            ..Default::default()
        },
        tasks: Tasks::All,
        include_upstream: false,
        include_downstream: false,
        only_failed: b.only_failed,
        only_running: false,
        dry_run: b.dry_run,
    };
    let cleared = operate::clear(&st.pool, &req)
        .await
        .map_err(ApiError::internal)?;
    if b.dry_run {
        return Ok(Json(collection(&st, &cleared.ti_ids).await?));
    }
    if let Some(note) = &b.note {
        operate::set_run_note(&st.pool, run.id, Some(note)).await?;
    }
    let extra = json!({"only_failed": b.only_failed, "cleared": cleared.ti_ids.len()});
    super::events::record_api(&st, &user, "clear", &dag_id, Some(&run_id), None, extra).await;
    Ok(Json(run_json(&st, &dag_id, &run_id).await?))
}

/// Query parameters of the PATCH endpoints.
pub fn patch_params() -> Params {
    Params::new().list("update_mask").p("map_index", Kind::Int)
}

/// Which fields a PATCH sets: those in `update_mask`, else those in the body.
fn masked(p: &Query, field: &str, present: bool) -> bool {
    let mask = p.list("update_mask");
    if mask.is_empty() {
        present
    } else {
        mask.iter().any(|m| m == field)
    }
}

/// Airflow's `PatchTaskInstanceBody`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PatchTiBody {
    new_state: Option<String>,
    note: Option<String>,
    include_upstream: bool,
    include_downstream: bool,
    include_future: bool,
    include_past: bool,
}

fn markable(s: Option<&str>) -> Result<Option<TaskState>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    TaskState::parse(s)
        .filter(|t| operate::MARKABLE.contains(t))
        .map(Some)
        .ok_or_else(|| {
            ApiError::validation(
                &["body", "new_state"],
                "enum",
                "Input should be 'success', 'failed' or 'skipped'",
                s,
            )
        })
}

async fn patch_ti_inner(
    st: &AppState,
    user: &CurrentUser,
    (dag_id, run_id, task_id): (String, String, String),
    raw: Option<String>,
    b: PatchTiBody,
    dry_run: bool,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &patch_params())?;
    if b.include_future || b.include_past {
        return Err(ApiError::bad_request(
            "include_future and include_past are not supported: mark the task in each run",
        ));
    }
    let run: RunRow = find_run(st, &dag_id, &run_id).await?;
    let ti = q::get(&st.pool, &dag_id, &run_id, &task_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `-1` was not found"
            ))
        })?;
    let new_state = if masked(&p, "new_state", b.new_state.is_some()) {
        markable(b.new_state.as_deref())?
    } else {
        None
    };
    let set_note = masked(&p, "note", b.note.is_some());
    let mut ids = vec![ti.id];
    if let Some(state) = new_state {
        let req = MarkRequest {
            run_pk: run.id,
            version_id: run.version_id,
            task_ids: vec![task_id.clone()],
            state,
            include_upstream: b.include_upstream,
            include_downstream: b.include_downstream,
            dry_run,
        };
        let applied = operate::mark_tasks(&st.pool, &req)
            .await
            .map_err(ApiError::internal)?;
        ids = applied.ti_ids;
        if !ids.contains(&ti.id) && !dry_run {
            ids.insert(0, ti.id);
        }
    }
    if !dry_run {
        if set_note {
            operate::set_ti_notes(&st.pool, &[ti.id], b.note.as_deref()).await?;
        }
        let extra = json!({"new_state": new_state, "note": set_note.then_some(&b.note),
                           "include_upstream": b.include_upstream, "include_downstream": b.include_downstream});
        let event = if new_state.is_some() { "mark" } else { "note" };
        super::events::record_api(
            st,
            user,
            event,
            &dag_id,
            Some(&run_id),
            Some(&task_id),
            extra,
        )
        .await;
    }
    Ok(Json(collection(st, &ids).await?))
}

/// `PATCH …/taskInstances/{task_id}`: set its state (with upstream/downstream) and/or note.
pub async fn patch_ti(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(path): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<PatchTiBody>,
) -> Result<Json<Value>, ApiError> {
    patch_ti_inner(&st, &user, path, raw, b, false).await
}

/// `PATCH …/taskInstances/{task_id}/dry_run`: the task instances a patch would change.
pub async fn patch_ti_dry_run(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(path): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<PatchTiBody>,
) -> Result<Json<Value>, ApiError> {
    patch_ti_inner(&st, &user, path, raw, b, true).await
}

/// Airflow's `DAGRunPatchBody`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PatchRunBody {
    state: Option<String>,
    note: Option<String>,
}

/// `PATCH /dags/{dag_id}/dagRuns/{dag_run_id}`: mark the run (success, failed, queued) and/or
/// set its note.
pub async fn patch_run(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<PatchRunBody>,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &Params::new().list("update_mask"))?;
    let run = find_run(&st, &dag_id, &run_id).await?;
    let state = if masked(&p, "state", b.state.is_some()) {
        let s = b.state.as_deref().unwrap_or("");
        Some(
            RunState::parse(s)
                .filter(|r| *r != RunState::Running)
                .ok_or_else(|| {
                    ApiError::validation(
                        &["body", "state"],
                        "enum",
                        "Input should be 'queued', 'success' or 'failed'",
                        s,
                    )
                })?,
        )
    } else {
        None
    };
    if let Some(state) = state {
        let m = RunMark {
            run_pk: run.id,
            version_id: run.version_id,
            state,
            dry_run: false,
        };
        operate::mark_run(&st.pool, m)
            .await
            .map_err(ApiError::internal)?;
    }
    let set_note = masked(&p, "note", b.note.is_some());
    if set_note {
        operate::set_run_note(&st.pool, run.id, b.note.as_deref()).await?;
    }
    let extra = json!({"state": state, "note": set_note.then_some(&b.note)});
    let event = if state.is_some() { "mark" } else { "note" };
    super::events::record_api(&st, &user, event, &dag_id, Some(&run_id), None, extra).await;
    Ok(Json(run_json(&st, &dag_id, &run_id).await?))
}

/// `DELETE /dags/{dag_id}/dagRuns/{dag_run_id}`: the run with its task instances, logs and
/// XComs.
pub async fn delete_run(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let run = find_run(&st, &dag_id, &run_id).await?;
    operate::delete_run(&st.pool, run.id).await?;
    super::events::record_api(
        &st,
        &user,
        "delete",
        &dag_id,
        Some(&run_id),
        None,
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
