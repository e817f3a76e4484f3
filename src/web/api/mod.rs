//! The JSON API under `/api/v2`, shaped like Airflow 3's public REST API so its clients
//! (e.g. `apache-airflow-client`) work. Only the fields updraft has are meaningful; fields
//! Airflow requires but updraft has no notion of get fixed values (see `models`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::AppState;
use crate::db::web::{self as q, DagFilter};

mod admin_common;
pub mod connections;
pub mod models;
pub mod openapi;
mod openapi_admin;
pub mod pools;
pub mod runs;
pub mod variables;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/dags", get(list_dags))
        .route("/api/v2/dags/{dag_id}", get(get_dag).patch(patch_dag))
        .route(
            "/api/v2/dags/{dag_id}/dagRuns",
            get(runs::list).post(runs::trigger),
        )
        .route("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", get(runs::get))
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
            get(runs::task_instances),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
            get(runs::logs),
        )
        .route("/api/v2/importErrors", get(import_errors))
        .route(
            "/api/v2/variables",
            get(variables::list).post(variables::create),
        )
        .route(
            "/api/v2/variables/{*key}",
            get(variables::get)
                .patch(variables::patch)
                .delete(variables::delete),
        )
        .route(
            "/api/v2/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/api/v2/connections/test",
            axum::routing::post(connections::test),
        )
        .route(
            "/api/v2/connections/{connection_id}",
            get(connections::get)
                .patch(connections::patch)
                .delete(connections::delete),
        )
        .route("/api/v2/pools", get(pools::list).post(pools::create))
        .route(
            "/api/v2/pools/{*name}",
            get(pools::get).patch(pools::patch).delete(pools::delete),
        )
        .route("/api/v2/version", get(version))
}

/// A JSON body whose rejections are API errors: malformed JSON → 400, wrong shape → 422,
/// over the body limit → 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::too_large(state.settings.max_body_bytes))
            }
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                format!("request body has the wrong shape: {}", e.body_text()),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "request body is not valid JSON: {}",
                e.body_text()
            ))),
        }
    }
}

/// Query parameters, repeatable (`tags=a&tags=b`, as Airflow's clients send lists).
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
            .map(Params)
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Every parameter name given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn int(&self, name: &str, default: i64, max: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (0..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "query parameter `{name}` must be an integer from 0 to {max}, got `{v}`"
                    ),
                )),
            },
        }
    }
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true" | "True" | "1") => Ok(Some(true)),
            Some("false" | "False" | "0") => Ok(Some(false)),
            Some(v) => Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                format!("query parameter `{name}` must be true or false, got `{v}`"),
            )),
        }
    }
}

pub const MAX_LIMIT: i64 = 1000;

async fn list_dags(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Params::parse(raw)?;
    let filter = DagFilter {
        tags: p.all("tags"),
        text: p.get("dag_id_pattern").map(str::to_string),
        paused: p.bool("paused")?,
        only_active: p.bool("exclude_stale")?.unwrap_or(true),
        limit: p.int("limit", 50, MAX_LIMIT)?,
        offset: p.int("offset", 0, i64::MAX)?,
    };
    let (rows, total) = q::list_dags(&st.pool, &filter).await?;
    Ok(Json(serde_json::json!({
        "dags": rows.iter().map(models::dag).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

fn dag_not_found(dag_id: &str) -> ApiError {
    ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
}

async fn get_dag(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = q::dag_row(&st.pool, &dag_id)
        .await?
        .ok_or_else(|| dag_not_found(&dag_id))?;
    Ok(Json(models::dag(&row)))
}

#[derive(Deserialize)]
struct PatchDag {
    is_paused: bool,
}

async fn patch_dag(
    State(st): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<PatchDag>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Params::parse(raw)?;
    if let Some(mask) = p.get("update_mask") {
        if mask != "is_paused" {
            return Err(ApiError::bad_request(format!(
                "only `is_paused` can be updated, not `{mask}`"
            )));
        }
    }
    if !crate::db::dags::set_paused(&st.pool, &dag_id, body.is_paused).await? {
        return Err(dag_not_found(&dag_id));
    }
    get_dag(State(st), Path(dag_id)).await
}

async fn import_errors(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = Params::parse(raw)?;
    let (rows, total) = q::import_errors(
        &st.pool,
        p.int("limit", 50, MAX_LIMIT)?,
        p.int("offset", 0, i64::MAX)?,
    )
    .await?;
    Ok(Json(serde_json::json!({
        "import_errors": rows.iter().map(models::import_error).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "git_version": null }))
}
