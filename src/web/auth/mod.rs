//! Who is asking, and may they. Browsers log in with a form and get an HttpOnly session
//! cookie whose session carries a CSRF token that every state-changing request must echo;
//! API clients send a bearer token from `POST /auth/token` (Airflow 3's flow) or HTTP basic
//! auth. Passwords are argon2 hashes; session and API tokens are stored only as SHA-256.
//!
//! # Layout
//! - this file: [`CurrentUser`] (the extractor handlers take), roles, and [`require_auth`],
//!   the layer in front of every protected route: authentication, the viewer role's read-only
//!   rule and the central CSRF check.
//! - [`passwords`]: argon2 hashing and bounded verification, sign-in through the throttle,
//!   creating users.
//! - [`sessions`]: the session and login-form cookies (axum-extra's `CookieJar`), CSRF
//!   tokens and their constant-time comparison, and why this CSRF design.
//! - [`login`]: the login page, its form, logout.
//! - [`tokens`]: `/auth/token`, bearer tokens and basic auth.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;

use super::error::{is_api_path, ApiError, WebError};
use super::page::Chrome;
use super::AppState;
use crate::db::users;

pub mod login;
pub mod passwords;
pub mod sessions;
pub mod tokens;

pub use login::{login, login_page, logout, safe_next};
pub use passwords::{check_password, create_user, ensure_admin, sign_in, SignInError};
pub use sessions::{LOGIN_CSRF_COOKIE, SESSION_COOKIE};
pub use tokens::token;

/// Roles `users create` accepts: `admin` may change things, `viewer` may only read.
pub const ROLES: [&str; 2] = ["admin", "viewer"];

/// The authenticated caller, put in request extensions by [`require_auth`].
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: String,
    /// The session's CSRF token; `None` for bearer and basic auth, which browsers do not send
    /// on their own.
    pub csrf: Option<String>,
    /// The client's address, for the audit log.
    pub addr: IpAddr,
}

impl CurrentUser {
    pub fn chrome(&self) -> Chrome {
        Chrome {
            username: Some(self.username.clone()),
            csrf: self.csrf.clone().unwrap_or_default(),
            can_edit: self.role != "viewer",
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, WebError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or_else(|| WebError::Internal(anyhow::anyhow!("route is missing the auth layer")))
    }
}

/// The client's address, for the sign-in throttle (unspecified when the server was not
/// started with connection info, as in handler tests).
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

fn client_addr(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// A wait in whole seconds, rounded up, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `429` with `Retry-After` in whole seconds.
fn too_many(wait: Duration, body: impl IntoResponse) -> Response {
    let mut res = body.into_response();
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut()
        .insert(header::RETRY_AFTER, whole_seconds(wait).into());
    res
}

/// What the request's credentials come to.
enum AuthOutcome {
    User(CurrentUser),
    Missing,
    Rejected(&'static str),
}

async fn authenticate(
    st: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<AuthOutcome, SignInError> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return tokens::from_authorization(st, client, auth).await;
    }
    let Some(token) = sessions::session_token(&CookieJar::from_headers(headers)) else {
        return Ok(AuthOutcome::Missing);
    };
    Ok(
        match users::token_owner(&st.pool, &token, "session").await? {
            Some(o) => AuthOutcome::User(CurrentUser {
                id: o.user_id,
                username: o.username,
                role: o.role,
                csrf: Some(o.csrf),
                addr: client,
            }),
            None => AuthOutcome::Missing,
        },
    )
}

/// Lets authenticated requests through. API paths answer 401 JSON; pages redirect to the
/// login page and come back afterwards. Viewers may only read (and log out). Every
/// state-changing request a session cookie authenticates must carry the session's CSRF
/// token: API calls in `X-CSRF-Token`, forms in their `csrf_token` field (or the header).
pub async fn require_auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let is_api = is_api_path(req.uri().path());
    let refuse = |status: StatusCode, msg: String| -> Response {
        if is_api {
            ApiError::new(status, msg).into_response()
        } else if status == StatusCode::FORBIDDEN {
            WebError::Forbidden(msg).into_response()
        } else {
            WebError::Unavailable(msg).into_response()
        }
    };
    let client = client_addr(req.extensions());
    let user = match authenticate(&st, client, req.headers()).await {
        Ok(AuthOutcome::User(u)) => u,
        Ok(AuthOutcome::Rejected(why)) if is_api => {
            return ApiError::unauthorized(why).into_response()
        }
        Ok(AuthOutcome::Missing) if is_api => {
            return ApiError::unauthorized(
                "not authenticated; send a bearer token from POST /auth/token or basic auth",
            )
            .into_response()
        }
        Ok(_) => {
            let next_url = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let q = serde_urlencoded::to_string([("next", next_url)]).unwrap_or_default();
            return Redirect::to(&format!("/login?{q}")).into_response();
        }
        Err(SignInError::Throttled(t)) => {
            let msg = t.to_string();
            return too_many(t.retry_after, refuse(StatusCode::TOO_MANY_REQUESTS, msg));
        }
        Err(e @ SignInError::Busy) => {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(SignInError::Internal(e)) if is_api => return ApiError::internal(e).into_response(),
        Err(SignInError::Internal(e)) => return WebError::Internal(e).into_response(),
    };
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !writes {
        return pass(user, req, next).await;
    }
    // Logging out changes nothing but the caller's own session, so viewers may do it too
    // (with the CSRF token, like any other write).
    let logout = req.uri().path() == "/logout";
    if user.role == "viewer" && !logout {
        let msg = "your role (viewer) may only read; ask an admin to make this change";
        return refuse(StatusCode::FORBIDDEN, msg.into());
    }
    let Some(expected) = user.csrf.clone() else {
        return pass(user, req, next).await;
    };
    let (req, submitted) = match sessions::submitted_token(req, !is_api).await {
        Ok(found) => found,
        Err(unreadable) => return unreadable,
    };
    if !submitted.is_some_and(|s| sessions::tokens_match(&expected, &s)) {
        let msg = if is_api {
            "cookie-authenticated API writes need the X-CSRF-Token header"
        } else {
            "This form has expired or did not come from this site (CSRF token missing or wrong). \
             Reload the page and submit it again."
        };
        return refuse(StatusCode::FORBIDDEN, msg.into());
    }
    pass(user, req, next).await
}

async fn pass(user: CurrentUser, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(user);
    next.run(req).await
}
