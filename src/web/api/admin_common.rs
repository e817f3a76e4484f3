//! What the variables, connections and pools endpoints share: query parameter checks
//! (unknown names are a 400 naming them, an empty value is absent), Airflow's paging
//! (`limit` default 50, capped at 100), `order_by`, and how store errors answer.

use axum::http::StatusCode;

use crate::db::listing::{ListQuery, OrderError, StoreError};
use crate::web::error::ApiError;

/// Query parameters, repeatable (`tags=a&tags=b`, as Airflow's clients send lists).
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string; an empty value (`limit=`) counts as absent, as everywhere in
    /// the API.
    pub fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
            .map(|pairs| Params(pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect()))
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
}

/// Refuses query parameters outside `allowed`, naming them.
pub fn only(p: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = p.names().filter(|n| !allowed.contains(n)).collect();
    unknown.sort_unstable();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "unsupported query parameter(s): {}; this endpoint takes {}",
        unknown.join(", "),
        allowed.join(", ")
    )))
}

/// A parameter's value; an empty one counts as absent.
pub fn text<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).filter(|v| !v.is_empty())
}

fn int(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match text(p, name) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("query parameter `{name}` must be a whole number ≥ 0, got `{v}`"),
            )
        }),
    }
}

/// The list query of `pattern`, `prefix`, `order_by`, `limit` (50 by default, at most 100, as
/// Airflow caps it) and `offset`.
pub fn list_query(
    p: &Params,
    pattern: &str,
    prefix: &str,
    order_fields: &[(&str, &'static str)],
) -> Result<ListQuery, ApiError> {
    let limit = int(p, "limit", 50)?.min(100);
    let offset = int(p, "offset", 0)?;
    let order: Vec<String> = p
        .all("order_by")
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    ListQuery::new(text(p, pattern), text(p, prefix), limit, offset)
        .order_by(&order, order_fields)
        .map_err(|e: OrderError| ApiError::bad_request(e.to_string()))
}

/// `update_mask` values (repeatable, or comma-separated); empty: every field given.
pub fn update_mask(p: &Params) -> Vec<String> {
    p.all("update_mask")
        .iter()
        .flat_map(|m| m.split(','))
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Invalid input is 422 (as Airflow's validation); a secret that cannot be stored without a
/// key is 400 with what to set; a stored secret that cannot be read is a 500 that says why
/// (it names the key setting, never a value).
pub fn store_error(e: StoreError) -> ApiError {
    use crate::core::fernet::VaultError;
    match e {
        StoreError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        StoreError::Vault(v @ VaultError::NoKeyToStore { .. }) => {
            ApiError::bad_request(v.to_string())
        }
        StoreError::Vault(v) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, v.to_string()),
        StoreError::Db(e) => ApiError::internal(e),
    }
}

/// Checks that a JSON body has only `allowed` keys (Airflow's bodies forbid extras: 422).
pub fn body_keys(body: &serde_json::Value, allowed: &[&str]) -> Result<(), ApiError> {
    let map = body.as_object().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the request body must be a JSON object",
        )
    })?;
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "unknown field `{k}` in the request body; fields are {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

/// An optional string field of a body: absent → `None`, null → `Some(None)`.
pub fn opt_str(body: &serde_json::Value, key: &str) -> Result<Option<Option<String>>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(serde_json::Value::Null) => Ok(Some(None)),
        Some(serde_json::Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{key}` must be a string, got {other}"),
        )),
    }
}

/// `team_name` is accepted only as null (updraft has no multi-team mode, like Airflow's
/// default).
pub fn no_team(body: &serde_json::Value) -> Result<(), ApiError> {
    match body.get("team_name") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "team_name cannot be set when multi_team mode is disabled",
        )),
    }
}
