//! The two error types of the web layer: [`WebError`] renders `error.html` for pages,
//! [`ApiError`] answers JSON `{detail, status, title}` like Airflow's API. Internal causes are
//! logged in full and never shown.

use askama::Template;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::page::Chrome;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// 413: the request body is over the server's limit.
    #[error("{0}")]
    TooLarge(String),
    /// 503: the server is too busy for this right now; trying again later may work.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::Internal(e.into())
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub title: String,
    pub message: String,
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// When an error is Postgres refusing a value the request brought (a NUL byte in text, a
/// number or date out of range, a key too long for an index): what to tell the caller, who
/// can fix it. Such errors are the request's fault, so they are a 400, not a 500. A safety net
/// behind the checks at the door (`guard`, run ids, validation), for values that reach the
/// database through a body.
pub fn bad_input(e: &anyhow::Error) -> Option<String> {
    let db = e
        .chain()
        .find_map(|c| match c.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(db)) => Some(db),
            _ => None,
        })?;
    let code = db.code()?;
    let why = match code.as_ref() {
        "22021" | "22P05" => "a value contains a NUL byte or a character that cannot be stored",
        "54000" => "a value is too long",
        c if c.starts_with("22") => "a value is out of range or malformed",
        _ => return None,
    };
    tracing::warn!(error = %db, code = %code, "request refused: the database rejected a value");
    Some(format!("the request cannot be stored: {why}"))
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let bad = match &self {
            WebError::Internal(e) => bad_input(e),
            _ => None,
        };
        let err = match bad {
            Some(message) => WebError::BadRequest(message),
            None => self,
        };
        let status = err.status();
        let message = match &err {
            WebError::Internal(e) => {
                tracing::error!(error = ?e, "page failed");
                "Something went wrong on the server. It has been logged; try again, and if it keeps \
                 happening check the server log."
                    .to_string()
            }
            other => other.to_string(),
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(),
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error page failed to render");
                (status, page.message).into_response()
            }
        }
    }
}

/// A JSON API error: `{"detail": ..., "status": ..., "title": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// FastAPI's request validation errors (`[{type, loc, msg, input}]`), sent as `detail`
    /// instead of the text, as Airflow's 422s are.
    pub errors: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            errors: None,
        }
    }
    /// A 422 for one bad input, shaped like FastAPI's: `loc` is e.g. `["query", "limit"]`,
    /// `kind` FastAPI's error type (`int_parsing`, `greater_than_equal`, ...).
    pub fn validation(loc: &[&str], kind: &str, msg: impl Into<String>, input: &str) -> Self {
        let msg = msg.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: format!("{}: {msg}", loc.join(".")),
            errors: Some(serde_json::json!([{
                "type": kind, "loc": loc, "msg": msg, "input": input,
            }])),
        }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    /// 413: the body is over the server's limit of `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, body_too_large(limit))
    }
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        let e = e.into();
        if let Some(message) = bad_input(&e) {
            return Self::bad_request(message);
        }
        tracing::error!(error = ?e, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error; the cause is in the server log",
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = match self.errors {
            Some(errors) => errors,
            None => serde_json::Value::String(self.detail),
        };
        let body = serde_json::json!({
            "detail": detail,
            "status": self.status.as_u16(),
            "title": self.status.canonical_reason().unwrap_or("Error"),
        });
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

/// Paths whose callers are programs and get [`ApiError`] JSON; people get [`WebError`] pages.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || matches!(path, "/auth/token" | "/metrics" | "/health")
}

/// What a caller whose request body was over the limit is told.
pub fn body_too_large(limit: usize) -> String {
    let size = if limit >= 1 << 20 && limit % (1 << 20) == 0 {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit % (1 << 10) == 0 {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    };
    format!("The request body is larger than this server accepts ({size}); send less at once.")
}

/// A known path asked with a method it does not have: JSON under `/api`, as Airflow answers.
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path().starts_with("/auth/") {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "Method Not Allowed: {method} is not supported on {}",
                uri.path()
            ),
        )
        .into_response()
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response()
    }
}

/// Unknown paths: JSON under `/api`, the error page elsewhere.
pub async fn not_found(uri: Uri) -> Response {
    if is_api_path(uri.path()) {
        ApiError::not_found(format!("no API endpoint at {}", uri.path())).into_response()
    } else {
        WebError::NotFound(format!(
            "There is no page at {}. Start again from the DAG list.",
            uri.path()
        ))
        .into_response()
    }
}
