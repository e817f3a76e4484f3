//! `/api/v2/connections`: list, get, create, update, delete and test, in Airflow 3's shapes.
//! A password is never answered (`***` when one is set), nor are values under sensitive keys
//! of the extra. An update that sends `***` back (as a form that never showed the password
//! does) keeps the stored value. Testing is off unless `core.test_connection` is set, as in
//! Airflow, since a test reaches out from the server.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::admin_common::{self as common, store_error, Params};
use super::ApiJson;
use crate::core::connection::{python_json, redact, Connection};
use crate::core::log::MASK;
use crate::db::connections::{self as db, OnConflict, StoredConnection};
use crate::web::error::ApiError;
use crate::web::AppState;

/// The extra as the API and UI may show it: values under sensitive keys as `***`.
pub fn shown_extra(extra: Option<&str>) -> Option<String> {
    let e = extra?;
    Some(match serde_json::from_str::<Value>(e) {
        Ok(v) => python_json(&redact(&v)),
        Err(_) => MASK.to_string(),
    })
}

pub fn response(c: &Connection) -> Value {
    json!({
        "connection_id": c.conn_id,
        "conn_type": c.conn_type,
        "description": c.description,
        "host": c.host,
        "login": c.login,
        "schema": c.schema,
        "port": c.port,
        "password": c.password.as_ref().map(|_| MASK),
        "extra": shown_extra(c.extra.as_deref()),
        "team_name": null,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "The Connection with connection_id: `{id}` was not found"
    ))
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
            "connection_id_pattern",
            "connection_id_prefix_pattern",
        ],
    )?;
    let q = common::list_query(
        &p,
        "connection_id_pattern",
        "connection_id_prefix_pattern",
        db::ORDER_FIELDS,
    )?;
    let (conns, total) = db::list(&st.pool, &st.settings.vault, &q)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({
        "connections": conns.iter().map(|c| response(&c.conn)).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

async fn stored(st: &AppState, id: &str) -> Result<Option<StoredConnection>, ApiError> {
    db::get(&st.pool, &st.settings.vault, id)
        .await
        .map_err(store_error)
}

pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = stored(&st, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(response(&c.conn)))
}

const BODY: &[&str] = &[
    "connection_id",
    "conn_type",
    "description",
    "host",
    "login",
    "schema",
    "port",
    "password",
    "extra",
    "team_name",
];

/// A connection from a body (Airflow's `ConnectionBody`), every field as given.
fn from_body(body: &Value) -> Result<Connection, ApiError> {
    common::body_keys(body, BODY)?;
    common::no_team(body)?;
    let s = |k: &str| common::opt_str(body, k).map(Option::flatten);
    let port = match body.get("port") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "`port` must be an integer",
                    )
                })?,
        ),
    };
    let conn = Connection {
        conn_id: s("connection_id")?.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`connection_id` is required",
            )
        })?,
        conn_type: s("conn_type")?.ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "`conn_type` is required")
        })?,
        description: s("description")?,
        host: s("host")?,
        schema: s("schema")?,
        login: s("login")?,
        password: s("password")?,
        port,
        extra: s("extra")?.filter(|e| !e.is_empty()),
    };
    conn.validate()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(conn)
}

/// Keeps stored secrets where `new` sends back what the API showed: a `***` password, or
/// `***` under a sensitive key of the extra.
pub fn keep_masked(new: &mut Connection, old: &Connection) {
    if new.password.as_deref() == Some(MASK) {
        new.password = old.password.clone();
    }
    let (Some(extra), Some(old_extra)) = (&new.extra, &old.extra) else {
        return;
    };
    let (Ok(Value::Object(mut m)), Ok(Value::Object(o))) = (
        serde_json::from_str::<Value>(extra),
        serde_json::from_str::<Value>(old_extra),
    ) else {
        return;
    };
    let mut changed = false;
    for (k, v) in m.iter_mut() {
        if v.as_str() == Some(MASK) {
            if let Some(orig) = o.get(k) {
                *v = orig.clone();
                changed = true;
            }
        }
    }
    if changed {
        new.extra = Some(Value::Object(m).to_string());
    }
}

pub async fn create(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    common::only(&Params::parse(raw)?, &[])?;
    let conn = from_body(&body)?;
    let created = db::put(&st.pool, &st.settings.vault, &conn, OnConflict::Keep)
        .await
        .map_err(store_error)?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "The Connection with connection_id: `{}` already exists",
                conn.conn_id
            ),
        ));
    }
    Ok((StatusCode::CREATED, Json(response(&conn))))
}

pub async fn patch(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(raw)?;
    common::only(&p, &["update_mask"])?;
    let mut new = from_body(&body)?;
    if new.conn_id != id {
        return Err(ApiError::bad_request(
            "The connection_id in the request body does not match the URL parameter",
        ));
    }
    let old = stored(&st, &id).await?.ok_or_else(|| not_found(&id))?.conn;
    let mask = common::update_mask(&p);
    if let Some(bad) = mask
        .iter()
        .find(|m| !BODY.contains(&m.as_str()) || *m == "connection_id")
    {
        return Err(ApiError::bad_request(format!(
            "`update_mask` cannot name `{bad}`"
        )));
    }
    if !mask.is_empty() {
        // Only the named fields change; the rest stay as stored.
        let keep = |f: &str| !mask.iter().any(|m| m == f);
        let mut merged = old.clone();
        if !keep("conn_type") {
            merged.conn_type = new.conn_type.clone();
        }
        if !keep("description") {
            merged.description = new.description.clone();
        }
        if !keep("host") {
            merged.host = new.host.clone();
        }
        if !keep("login") {
            merged.login = new.login.clone();
        }
        if !keep("schema") {
            merged.schema = new.schema.clone();
        }
        if !keep("port") {
            merged.port = new.port;
        }
        if !keep("password") {
            merged.password = new.password.clone();
        }
        if !keep("extra") {
            merged.extra = new.extra.clone();
        }
        new = merged;
    }
    keep_masked(&mut new, &old);
    db::put(&st.pool, &st.settings.vault, &new, OnConflict::Overwrite)
        .await
        .map_err(store_error)?;
    Ok(Json(response(&new)))
}

pub async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if db::delete(&st.pool, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// `POST /api/v2/connections/test`: 403 unless enabled. A body for a stored connection that
/// leaves the password out (or sends `***`) is tested with the stored secrets, but only
/// against the stored host and port, as Airflow does.
pub async fn test(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    common::only(&Params::parse(raw)?, &[])?;
    if !st.settings.test_connection {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Testing connections is disabled in updraft's configuration. Set UPDRAFT_TEST_CONNECTION=true (core.test_connection) to enable it.",
        ));
    }
    let mut conn = from_body(&body)?;
    if let Some(old) = stored(&st, &conn.conn_id).await? {
        let supplied = conn.password.as_deref().is_some_and(|p| p != MASK);
        let same_place = conn.host == old.conn.host && conn.port == old.conn.port;
        if !same_place && !supplied && old.conn.password.is_some() {
            return Err(ApiError::bad_request(
                "The host or port to test differs from the stored connection. Include the credentials to test in the request body.",
            ));
        }
        if same_place && conn.password.is_none() {
            conn.password = old.conn.password.clone();
        }
        keep_masked(&mut conn, &old.conn);
    }
    let (status, message) = match crate::operators::conn_test::test_connection(&conn).await {
        Ok(m) => (true, m),
        Err(m) => (false, m),
    };
    Ok(Json(json!({"status": status, "message": message})))
}
