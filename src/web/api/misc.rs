//! `/api/v2/version`, `/api/v2/config`, `/api/v2/importErrors`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::dags::no_params;
use super::models;
use super::query::{path_int, Params, Query};
use crate::db::api::dags::{self as q, ImportErrorQuery, IMPORT_ERROR_SORT};
use crate::web::error::ApiError;
use crate::web::AppState;

/// `GET /api/v2/version`, without authentication, as Airflow serves it.
pub async fn version(RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    Ok(Json(
        json!({ "version": env!("CARGO_PKG_VERSION"), "git_version": null }),
    ))
}

pub fn config_params() -> Params {
    Params::new().p("section", super::query::Kind::Str)
}

/// `GET /api/v2/config` and `…/config/section/{s}/option/{o}`: Airflow answers 403 unless
/// `[api] expose_config` is set, which is its default; updraft never exposes its settings
/// over the API (`updraft config list` prints them, secrets masked).
pub async fn config(RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &config_params())?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "Your Airflow administrator chose not to expose the configuration, most likely for security reasons.",
    ))
}

pub async fn config_option(
    Path((_section, _option)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    config(RawQuery(None)).await
}

pub fn import_errors_params() -> Params {
    Params::new()
        .page()
        .order_by(IMPORT_ERROR_SORT)
        .patterns("filename")
        .p("filename", super::query::Kind::Str)
        .p("bundle_name", super::query::Kind::Str)
}

pub async fn import_errors(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Query::parse(raw.as_deref(), &import_errors_params())?;
    let mut query = ImportErrorQuery {
        id: None,
        filename: p.str("filename").map(str::to_string),
        filename_patterns: p.likes("filename"),
        sort: p.order_by(IMPORT_ERROR_SORT, &["id"])?,
        page: p.page()?,
    };
    // Every file is in the one bundle of the DAGs folder.
    if p.str("bundle_name").is_some_and(|b| b != models::BUNDLE) {
        query.filename = Some(String::new());
    }
    let (rows, total) = q::import_errors(&st.pool, &query).await?;
    Ok(Json(json!({
        "import_errors": rows.iter().map(models::import_error).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

pub async fn import_error(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    Query::parse(raw.as_deref(), &no_params())?;
    let n: i64 = path_int("import_error_id", &id)?;
    let query = ImportErrorQuery {
        id: Some(n),
        ..Default::default()
    };
    let (rows, _) = q::import_errors(&st.pool, &query).await?;
    let e = rows.first().ok_or_else(|| {
        ApiError::not_found(format!(
            "The ImportError with import_error_id: `{n}` was not found"
        ))
    })?;
    Ok(Json(models::import_error(e)))
}
