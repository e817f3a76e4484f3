//! `/api/v2/pools`: list, get, create, update and delete, in Airflow 3's shapes, with each
//! pool's slot usage (`occupied_slots` = running, as the claim counts them; `open_slots` is
//! -1 for an unlimited pool, as Airflow reports it).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::admin_common::{self as common, store_error, Params};
use super::ApiJson;
use crate::db::pools::{self as db, DeleteError, PoolSpec, PoolStats};
use crate::web::error::ApiError;
use crate::web::AppState;

pub fn response(p: &PoolStats) -> Value {
    json!({
        "name": p.pool,
        "slots": p.slots,
        "description": p.description,
        "include_deferred": p.include_deferred,
        "occupied_slots": p.occupied_slots(),
        "running_slots": p.running_slots,
        "queued_slots": p.queued_slots,
        "scheduled_slots": p.scheduled_slots,
        "open_slots": p.open_slots(),
        "deferred_slots": 0,
        "team_name": null,
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The Pool with name: `{name}` was not found"))
}

pub async fn list(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(raw)?;
    common::only(
        &p,
        &[
            "limit",
            "offset",
            "order_by",
            "pool_name_pattern",
            "pool_name_prefix_pattern",
        ],
    )?;
    let q = common::list_query(
        &p,
        "pool_name_pattern",
        "pool_name_prefix_pattern",
        db::ORDER_FIELDS,
    )?;
    let (pools, total) = db::list(&st.pool, &q).await?;
    Ok(Json(json!({
        "pools": pools.iter().map(response).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

pub async fn get(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = db::get(&st.pool, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(response(&p)))
}

fn slots(body: &Value) -> Result<Option<i32>, ApiError> {
    match body.get("slots") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "`slots` must be an integer",
                )
            })
            .and_then(|n| db::check_slots(n).map_err(store_error))
            .map(Some),
    }
}

fn include_deferred(body: &Value) -> Result<Option<bool>, ApiError> {
    match body.get("include_deferred") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`include_deferred` must be true or false",
        )),
    }
}

pub async fn create(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    common::only(&Params::parse(raw)?, &[])?;
    common::body_keys(
        &body,
        &[
            "name",
            "slots",
            "description",
            "include_deferred",
            "team_name",
        ],
    )?;
    common::no_team(&body)?;
    let name = common::opt_str(&body, "name")?
        .flatten()
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "`name` is required"))?;
    let spec = PoolSpec {
        slots: slots(&body)?.ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "`slots` is required")
        })?,
        description: common::opt_str(&body, "description")?
            .flatten()
            .unwrap_or_default(),
        include_deferred: include_deferred(&body)?.unwrap_or(false),
        name,
    };
    if !db::put(&st.pool, &spec, false).await.map_err(store_error)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("The Pool with name: `{}` already exists", spec.name),
        ));
    }
    let p = db::get(&st.pool, &spec.name)
        .await?
        .ok_or_else(|| not_found(&spec.name))?;
    Ok((StatusCode::CREATED, Json(response(&p))))
}

pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(raw)?;
    common::only(&p, &["update_mask"])?;
    common::body_keys(
        &body,
        &[
            "pool",
            "name",
            "slots",
            "description",
            "include_deferred",
            "team_name",
        ],
    )?;
    common::no_team(&body)?;
    let body_name = common::opt_str(&body, "pool")?
        .or(common::opt_str(&body, "name")?)
        .flatten();
    if body_name.is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(
            "Invalid body, pool name from request body doesn't match uri parameter",
        ));
    }
    let mask = common::update_mask(&p);
    let wants = |f: &str| mask.is_empty() || mask.iter().any(|m| m == f);
    let found = db::update(
        &st.pool,
        &name,
        if wants("slots") { slots(&body)? } else { None },
        if wants("description") {
            common::opt_str(&body, "description")?.flatten()
        } else {
            None
        }
        .as_deref(),
        if wants("include_deferred") {
            include_deferred(&body)?
        } else {
            None
        },
    )
    .await
    .map_err(store_error)?;
    if !found {
        return Err(not_found(&name));
    }
    get(State(st), Path(name)).await
}

pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    match db::delete(&st.pool, &name).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ DeleteError::Default) => Err(ApiError::bad_request(e.to_string())),
        Err(e @ DeleteError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(DeleteError::Db(e)) => Err(e.into()),
    }
}
