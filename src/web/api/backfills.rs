//! `/api/v2/backfills` in Airflow 3's shapes: create (and its dry run), list by DAG, get,
//! pause, unpause, cancel.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::dags::{dag_not_found, no_params};
use super::query::{Kind, Params, Query};
use super::ApiJson;
use crate::core::ReprocessBehavior;
use crate::db::backfill::{self as db, BackfillError, BackfillRequest, BackfillRow, Steer};
use crate::web::auth::CurrentUser;
use crate::web::error::ApiError;
use crate::web::AppState;

/// Airflow's `BackfillPostBody`.
#[derive(Deserialize)]
pub struct BackfillBody {
    dag_id: String,
    from_date: DateTime<Utc>,
    to_date: DateTime<Utc>,
    #[serde(default)]
    run_backwards: bool,
    #[serde(default)]
    dag_run_conf: Option<Value>,
    #[serde(default)]
    reprocess_behavior: Option<ReprocessBehavior>,
    #[serde(default)]
    max_active_runs: Option<i32>,
    /// Accepted and ignored: runs always use the DAG's current version.
    #[serde(default)]
    #[allow(dead_code)]
    run_on_latest_version: Option<bool>,
}

impl BackfillBody {
    fn request(&self, user: &CurrentUser) -> BackfillRequest {
        BackfillRequest {
            dag_id: self.dag_id.clone(),
            from_date: self.from_date,
            to_date: self.to_date,
            run_backwards: self.run_backwards,
            dag_run_conf: self.dag_run_conf.clone().unwrap_or_else(|| json!({})),
            reprocess_behavior: self.reprocess_behavior.unwrap_or(ReprocessBehavior::None),
            max_active_runs: self.max_active_runs.unwrap_or(10),
            user: Some(user.username.clone()),
        }
    }
}

/// Airflow's `BackfillResponse`, with updraft's progress counts beside it.
pub fn backfill(b: &BackfillRow) -> Value {
    json!({
        "id": b.id,
        "dag_id": b.dag_id,
        "dag_display_name": b.dag_id,
        "from_date": b.from_date,
        "to_date": b.to_date,
        "dag_run_conf": b.dag_run_conf,
        "is_paused": b.is_paused,
        "reprocess_behavior": b.reprocess_behavior,
        "max_active_runs": b.max_active_runs,
        "run_backwards": b.run_backwards,
        "created_at": b.created_at,
        "completed_at": b.completed_at,
        "updated_at": b.updated_at,
        "triggering_user_name": b.triggering_user_name,
        "total_runs": b.total_runs,
        "finished_runs": b.finished_runs,
        "failed_runs": b.failed_runs,
        "skipped_dates": b.skipped_dates,
    })
}

fn error(e: BackfillError) -> ApiError {
    match e {
        BackfillError::DagNotFound(d) => dag_not_found(&d),
        e @ BackfillError::Invalid(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        e @ BackfillError::AlreadyRunning(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        BackfillError::Db(e) => e.into(),
        BackfillError::Other(e) => ApiError::internal(e),
    }
}

/// `POST /backfills`.
pub async fn create(
    State(st): State<AppState>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<BackfillBody>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let req = b.request(&user);
    let row = db::create(&st.pool, &req, st.settings.create_cron_data_intervals)
        .await
        .map_err(error)?;
    let extra = json!({"backfill_id": row.id, "from_date": row.from_date, "to_date": row.to_date,
                       "reprocess_behavior": row.reprocess_behavior, "runs": row.total_runs});
    super::events::record_api(&st, &user, "backfill", &row.dag_id, None, None, extra).await;
    Ok(Json(backfill(&row)))
}

/// `POST /backfills/dry_run`: the logical dates that would run.
pub async fn dry_run(
    State(st): State<AppState>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
    ApiJson(b): ApiJson<BackfillBody>,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let plan = db::plan(
        &st.pool,
        &b.request(&user),
        st.settings.create_cron_data_intervals,
    )
    .await
    .map_err(error)?;
    let dates: Vec<Value> = plan
        .iter()
        .filter(|d| d.plan.runs())
        .map(|d| json!({"logical_date": d.run.logical_date, "partition_date": null, "partition_key": null}))
        .collect();
    Ok(Json(
        json!({"total_entries": dates.len(), "backfills": dates}),
    ))
}

pub fn list_params() -> Params {
    Params::new()
        .page()
        .order_by(&[("id", "id")])
        .p("dag_id", Kind::Str)
}

/// `GET /backfills?dag_id=`: newest first.
pub async fn list(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &list_params())?;
    p.order_by(&[("id", "id")], &["id"])?;
    let page = p.page()?;
    let (rows, total) = db::list(&st.pool, p.str("dag_id"), page.limit, page.offset).await?;
    Ok(Json(json!({
        "backfills": rows.iter().map(backfill).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Backfill with id {id} not found"))
}

async fn find(st: &AppState, id: &str) -> Result<BackfillRow, ApiError> {
    let n: i64 = id.parse().map_err(|_| not_found(id))?;
    db::get(&st.pool, n).await?.ok_or_else(|| not_found(id))
}

/// `GET /backfills/{backfill_id}`.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    Ok(Json(backfill(&find(&st, &id).await?)))
}

async fn steer(
    st: &AppState,
    user: &CurrentUser,
    id: &str,
    how: Steer,
) -> Result<Json<Value>, ApiError> {
    let b = find(st, id).await?;
    match db::steer(&st.pool, b.id, how).await? {
        None => return Err(not_found(id)),
        Some(false) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Backfill {id} is already completed"),
            ))
        }
        Some(true) => {}
    }
    let event = match how {
        Steer::Pause => "backfill_pause",
        Steer::Unpause => "backfill_unpause",
        Steer::Cancel => "backfill_cancel",
    };
    super::events::record_api(
        st,
        user,
        event,
        &b.dag_id,
        None,
        None,
        json!({"backfill_id": b.id}),
    )
    .await;
    Ok(Json(backfill(&find(st, id).await?)))
}

pub async fn pause(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    steer(&st, &user, &id, Steer::Pause).await
}

pub async fn unpause(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    steer(&st, &user, &id, Steer::Unpause).await
}

pub async fn cancel(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    steer(&st, &user, &id, Steer::Cancel).await
}
