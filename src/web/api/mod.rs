//! The JSON API under `/api/v2`, shaped like Airflow 3's public REST API so its clients
//! (`apache-airflow-client`, `airflowctl`) work. Only the fields updraft has are meaningful;
//! fields Airflow requires but updraft has no notion of get fixed values (see `models`).
//!
//! Conventions every handler follows (see [`query`] for the parser they share):
//! - a query parameter the endpoint does not implement is a 400 naming it; an empty value
//!   is absent; malformed values are FastAPI-shaped 422s;
//! - errors are `{"detail": ...}` with Airflow's texts where Airflow has one (404s name the
//!   missing DAG, run or task instance); a wrong method is a JSON 405;
//! - every route is listed, with its parameters and responses, in [`openapi`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;

mod admin_common;
pub mod backfills;
pub mod connections;
pub mod dags;
pub mod events;
pub mod misc;
pub mod models;
pub mod openapi;
mod openapi_admin;
mod openapi_operate;
mod openapi_schemas;
pub mod operate;
pub mod pools;
pub mod query;
pub mod runs;
pub mod streams;
pub mod task_instances;
pub mod ti_models;
pub mod variables;

const RUN: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}";
const TI: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}";

/// Routes that need authentication.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/dags", get(dags::list))
        .route("/api/v2/dags/{dag_id}", get(dags::get).patch(dags::patch))
        .route("/api/v2/dags/{dag_id}/details", get(dags::details))
        .route("/api/v2/dags/{dag_id}/tasks", get(dags::tasks))
        .route("/api/v2/dags/{dag_id}/tasks/{task_id}", get(dags::task))
        .route(
            "/api/v2/dags/{dag_id}/tasks/{task_id}/replay",
            post(streams::replay),
        )
        .route("/api/v2/dags/{dag_id}/dagVersions", get(dags::versions))
        .route(
            "/api/v2/dags/{dag_id}/dagVersions/{version_number}",
            get(dags::version),
        )
        .route(
            "/api/v2/dags/{dag_id}/dagVersions/{version_number}/recordSchemas",
            get(dags::record_schemas),
        )
        .route("/api/v2/streams/topics", get(streams::topics))
        .route("/api/v2/streams/topics/{topic}", get(streams::topic))
        .route(
            "/api/v2/streams/topics/{topic}/partitions/{partition}/messages",
            get(streams::messages),
        )
        .route("/api/v2/dagSources/{dag_id}", get(dags::source))
        .route("/api/v2/dagStats", get(dags::stats))
        .route("/api/v2/dagWarnings", get(dags::warnings))
        .route("/api/v2/dagTags", get(dags::tags))
        .route(
            "/api/v2/dags/{dag_id}/dagRuns",
            get(runs::list).post(runs::trigger),
        )
        .route("/api/v2/dags/{dag_id}/dagRuns/list", post(runs::batch))
        .route(
            "/api/v2/dags/{dag_id}/clearTaskInstances",
            post(operate::clear_task_instances),
        )
        .route(
            RUN,
            get(runs::get)
                .patch(operate::patch_run)
                .delete(operate::delete_run),
        )
        .route(&format!("{RUN}/clear"), post(operate::clear_run))
        .route(&format!("{RUN}/wait"), get(runs::wait))
        .route(&format!("{RUN}/taskInstances"), get(task_instances::list))
        .route(
            &format!("{RUN}/taskInstances/list"),
            post(task_instances::batch),
        )
        .route(TI, get(task_instances::get).patch(operate::patch_ti))
        .route(&format!("{TI}/dry_run"), patch(operate::patch_ti_dry_run))
        .route(&format!("{TI}/tries"), get(task_instances::tries))
        .route(
            &format!("{TI}/tries/{{task_try_number}}"),
            get(task_instances::try_detail),
        )
        .route(
            &format!("{TI}/logs/{{try_number}}"),
            get(task_instances::logs),
        )
        .route(&format!("{TI}/xcomEntries"), get(task_instances::xcoms))
        .route(
            &format!("{TI}/xcomEntries/{{xcom_key}}"),
            get(task_instances::xcom),
        )
        .route(
            "/api/v2/backfills",
            get(backfills::list).post(backfills::create),
        )
        .route("/api/v2/backfills/dry_run", post(backfills::dry_run))
        .route("/api/v2/backfills/{backfill_id}", get(backfills::get))
        .route(
            "/api/v2/backfills/{backfill_id}/pause",
            put(backfills::pause),
        )
        .route(
            "/api/v2/backfills/{backfill_id}/unpause",
            put(backfills::unpause),
        )
        .route(
            "/api/v2/backfills/{backfill_id}/cancel",
            put(backfills::cancel),
        )
        .route("/api/v2/eventLogs", get(events::list))
        .route("/api/v2/eventLogs/{event_log_id}", get(events::get))
        .route("/api/v2/importErrors", get(misc::import_errors))
        .route(
            "/api/v2/importErrors/{import_error_id}",
            get(misc::import_error),
        )
        .route("/api/v2/config", get(misc::config))
        .route(
            "/api/v2/config/section/{section}/option/{option}",
            get(misc::config_option),
        )
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
}

/// Routes Airflow serves without authentication.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/api/v2/version", get(misc::version))
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
