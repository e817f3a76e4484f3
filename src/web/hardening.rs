//! What every request and response passes through, built from tower-http's layers:
//!
//! - **Security headers** on every response (pages, JSON, static files, errors, 404s):
//!   [`CONTENT_SECURITY_POLICY`], `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
//!   and `Referrer-Policy: same-origin`. They are set only where a handler has not set its
//!   own, so one response could relax them knowingly; none does.
//! - **A body limit** ([`crate::web::WebSettings::max_body_bytes`], 1 MiB by default): a
//!   larger body is refused with 413 before a handler buffers it, whether the client
//!   announced its length or streamed it.
//! - **A timeout** ([`crate::web::WebSettings::request_timeout`]) on producing a response's
//!   head: a handler stuck on a slow database answers 503 instead of holding the connection.
//!   Bodies are not timed, so the log tail (server-sent events) and the log download stream
//!   for as long as they need: their handlers return the head at once.
//! - **Refusals in our words**: tower-http and axum answer 413 and the timeout with a bare
//!   status or a line of plain text; [`explain_refusals`] turns those into the JSON error API
//!   clients parse or the error page people read.

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::error::{body_too_large, is_api_path, ApiError, WebError};
use super::AppState;

/// The pages load only their own script and stylesheet (`/static/app.js`, `/static/app.css`),
/// fetch and stream from this origin, post forms to it, and may not be framed. No inline
/// script or style is allowed, so markup injected into a page cannot run or restyle it; the
/// templates have none (the run page's timeline bars are SVG attributes, not `style`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The status a timed-out request is answered with: the server, not the client, was slow.
const TIMEOUT_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// The body limit and the timeout, around every route (inside the request metrics, so timed
/// out requests are still counted).
pub fn limits(router: Router<AppState>, st: &AppState) -> Router<AppState> {
    router
        .layer(RequestBodyLimitLayer::new(st.settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            TIMEOUT_STATUS,
            st.settings.request_timeout,
        ))
}

/// The outermost layers: refusals explained, then the security headers on everything.
pub fn outer(router: Router<AppState>, st: &AppState) -> Router<AppState> {
    let headers = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ];
    let mut router = router.layer(middleware::from_fn_with_state(st.clone(), explain_refusals));
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router
}

/// The security header names [`outer`] sets, for tests.
pub const SECURITY_HEADERS: [HeaderName; 4] = [
    header::CONTENT_SECURITY_POLICY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::X_FRAME_OPTIONS,
    header::REFERRER_POLICY,
];

/// Rewrites the bare 413 and timeout answers of the layers below into an [`ApiError`] for
/// API paths or a [`WebError`] page. Responses that are already ours (JSON or HTML) pass.
pub async fn explain_refusals(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let api = is_api_path(&path);
    let res = next.run(req).await;
    let ours = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if ours {
        return res;
    }
    let message = match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(st.settings.max_body_bytes),
        TIMEOUT_STATUS => format!(
            "The server did not answer within {} s and gave up on this request. Try again; \
             if it keeps happening, check the server log.",
            st.settings.request_timeout.as_secs_f64()
        ),
        _ => return res,
    };
    if res.status() == TIMEOUT_STATUS {
        tracing::warn!(%path, timeout = ?st.settings.request_timeout, "request timed out");
    }
    match (api, res.status()) {
        (true, status) => ApiError::new(status, message).into_response(),
        (false, StatusCode::PAYLOAD_TOO_LARGE) => WebError::TooLarge(message).into_response(),
        (false, _) => WebError::Unavailable(message).into_response(),
    }
}
