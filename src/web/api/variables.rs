//! `/api/v2/variables`: list, get, create, update and delete, in Airflow 3's shapes. Values
//! of variables whose key looks sensitive are answered as `***` (as Airflow redacts them),
//! and so are values under sensitive keys inside JSON values.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::admin_common::{self as common, store_error, Params};
use super::ApiJson;
use crate::core::connection::{is_sensitive_name, python_json, redact};
use crate::core::log::MASK;
use crate::db::variables::{self as db, OnConflict, Variable};
use crate::web::error::ApiError;
use crate::web::AppState;

/// The value as the API may show it.
pub fn shown_value(key: &str, value: &str) -> String {
    if is_sensitive_name(key) {
        return MASK.to_string();
    }
    match serde_json::from_str::<Value>(value) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => python_json(&redact(&v)),
        _ => value.to_string(),
    }
}

fn response(v: &Variable) -> Value {
    json!({
        "key": v.key,
        "value": shown_value(&v.key, &v.value),
        "description": v.description,
        "is_encrypted": v.is_encrypted,
        "team_name": null,
    })
}

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(format!("The Variable with key: `{key}` was not found"))
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
            "variable_key_pattern",
            "variable_key_prefix_pattern",
        ],
    )?;
    let q = common::list_query(
        &p,
        "variable_key_pattern",
        "variable_key_prefix_pattern",
        db::ORDER_FIELDS,
    )?;
    let (vars, total) = db::list(&st.pool, &st.settings.vault, &q)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "variables": vars.iter().map(response).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

pub async fn get(
    State(st): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = db::get(&st.pool, &st.settings.vault, &key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(&key))?;
    Ok(Json(response(&v)))
}

/// Airflow stores a non-string JSON value as its text (`json.dumps(value, indent=2)`).
fn value_text(body: &Value) -> Result<String, ApiError> {
    match body.get("value") {
        None => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`value` is required",
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

const BODY: &[&str] = &["key", "value", "description", "team_name"];

pub async fn create(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    common::only(&Params::parse(raw)?, &[])?;
    common::body_keys(&body, BODY)?;
    common::no_team(&body)?;
    let key = common::opt_str(&body, "key")?
        .flatten()
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "`key` is required"))?;
    let value = value_text(&body)?;
    let description = common::opt_str(&body, "description")?.flatten();
    let created = db::put(
        &st.pool,
        &st.settings.vault,
        &key,
        &value,
        description.as_deref(),
        OnConflict::Keep,
    )
    .await
    .map_err(store_error)?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("The Variable with key: `{key}` already exists"),
        ));
    }
    let v = db::get(&st.pool, &st.settings.vault, &key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(&key))?;
    Ok((StatusCode::CREATED, Json(response(&v))))
}

pub async fn patch(
    State(st): State<AppState>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(raw)?;
    common::only(&p, &["update_mask"])?;
    common::body_keys(&body, BODY)?;
    common::no_team(&body)?;
    if common::opt_str(&body, "key")?.flatten().as_deref() != Some(key.as_str()) {
        return Err(ApiError::bad_request(
            "Invalid body, key from request body doesn't match uri parameter",
        ));
    }
    let mask = common::update_mask(&p);
    if let Some(bad) = mask
        .iter()
        .find(|m| !["value", "description"].contains(&m.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "`update_mask` may name `value` and `description`, not `{bad}`"
        )));
    }
    let wants = |f: &str| mask.is_empty() || mask.iter().any(|m| m == f);
    let value = if wants("value") {
        Some(value_text(&body)?)
    } else {
        None
    };
    let description = if wants("description") {
        Some(common::opt_str(&body, "description")?.flatten())
    } else {
        None
    };
    let found = db::update(
        &st.pool,
        &st.settings.vault,
        &key,
        value.as_deref(),
        description.as_ref().map(|d| d.as_deref()),
    )
    .await
    .map_err(store_error)?;
    if !found {
        return Err(not_found(&key));
    }
    get(State(st), Path(key)).await
}

pub async fn delete(
    State(st): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    if db::delete(&st.pool, &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&key))
    }
}
