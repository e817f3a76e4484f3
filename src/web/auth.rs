//! Who is asking. Browsers log in with a form and get an HttpOnly session cookie (each session
//! carries a CSRF token that every form post must echo); API clients send a bearer token from
//! `POST /auth/token` (Airflow 3's flow) or HTTP basic auth. Passwords are argon2 hashes.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use base64::Engine;
use rand::{Rng, RngCore};
use serde::Deserialize;
use sqlx::PgPool;

use super::error::{ApiError, WebError};
pub use super::hashing::PasswordChecksBusy;
use super::page::{render, Chrome};
use super::throttle::Throttled;
use super::AppState;
use crate::db::users;

pub const SESSION_COOKIE: &str = "updraft_session";
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
}

impl CurrentUser {
    /// Fails unless the form echoed this session's CSRF token.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), WebError> {
        match (&self.csrf, submitted) {
            (None, _) => Ok(()),
            (Some(expected), Some(got)) if !got.is_empty() && constant_time_eq(expected, got) => Ok(()),
            _ => Err(WebError::Forbidden(
                "This form has expired or did not come from this site (CSRF token missing or wrong). \
                 Reload the page and submit it again."
                    .into(),
            )),
        }
    }

    pub fn chrome(&self) -> Chrome {
        Chrome {
            username: Some(self.username.clone()),
            csrf: self.csrf.clone().unwrap_or_default(),
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

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A random 256-bit secret, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new argon2id hash of `password`, computed in the bounded hashing pool (`hashing`).
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    super::hashing::global().hash(password).await
}

/// Verified against when the username is unknown, so unknown users take as long as wrong
/// passwords and the timing does not tell which usernames exist. Same parameters as
/// `Argon2::default()` (checked by a unit test); no password matches it (random output).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$udB+FAFHr3EjU15G4nP5NQ$vhT1bc9HzviHcUjWAldwblvuZJf5paq7L7NrCkg3kt8";

fn is_busy(e: &anyhow::Error) -> bool {
    e.is::<PasswordChecksBusy>()
}

/// The user if the password is theirs. Unknown usernames cost one verification too (against
/// [`DUMMY_HASH`]). Fails with [`PasswordChecksBusy`] when too many checks are queued.
pub async fn check_password(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> anyhow::Result<Option<users::User>> {
    check_password_in(super::hashing::global(), pool, username, password).await
}

/// [`check_password`] in the given hashing pool (the web server's own).
async fn check_password_in(
    hashing: &super::hashing::HashPool,
    pool: &PgPool,
    username: &str,
    password: &str,
) -> anyhow::Result<Option<users::User>> {
    let found = users::credentials(pool, username).await?;
    let hash = found.as_ref().map_or(DUMMY_HASH, |(_, hash)| hash.as_str());
    let matches = hashing.verify(password, hash).await?;
    Ok(found.filter(|_| matches).map(|(user, _)| user))
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

/// A password check through the throttle: refused with [`Throttled`] while this client has to
/// wait for this username, and it opens the throttle again when the password is right.
pub async fn sign_in(
    st: &AppState,
    client: IpAddr,
    username: &str,
    password: &str,
) -> anyhow::Result<Option<users::User>> {
    st.logins.attempt(client, username)?;
    let user = check_password_in(&st.hashing, &st.pool, username, password).await?;
    if user.is_some() {
        st.logins.succeeded(client, username);
    }
    Ok(user)
}

fn throttled(e: &anyhow::Error) -> Option<Duration> {
    e.downcast_ref::<Throttled>().map(|t| t.retry_after)
}

/// A wait in whole seconds, rounded up, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `429` with `Retry-After` in whole seconds.
fn too_many(wait: Duration, body: impl IntoResponse) -> Response {
    let mut res = body.into_response();
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    if let Ok(v) = header::HeaderValue::from_str(&whole_seconds(wait).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// Creates a user, or sets a new password and role for an existing one (for `updraft users
/// create`, also how a lost `admin` password is reset). Resetting ends that user's sessions
/// and API tokens. Returns true when the user was created. Fails if the role is unknown.
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    password: &str,
    role: &str,
) -> anyhow::Result<bool> {
    if username.trim().is_empty() || username.len() > 100 {
        anyhow::bail!("the username must be 1 to 100 characters");
    }
    if password.len() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    if !ROLES.contains(&role) {
        anyhow::bail!("unknown role `{role}`; use one of: {}", ROLES.join(", "));
    }
    let hash = hash_password(password).await?;
    Ok(users::upsert_user(pool, username, &hash, role).await?)
}

/// On first start, creates `admin` with a generated password, writes
/// `{"admin": "<password>"}` to `password_file` readable only by this user (like Airflow
/// standalone's `simple_auth_manager_passwords.json.generated`) and returns the password so
/// the caller prints it once. Returns None when `admin` already exists.
pub async fn ensure_admin(pool: &PgPool, password_file: &Path) -> anyhow::Result<Option<String>> {
    if users::user_exists(pool, "admin").await? {
        return Ok(None);
    }
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    let hash = hash_password(&password).await?;
    if !users::insert_user(pool, "admin", &hash, "admin").await? {
        return Ok(None); // another process created it first
    }
    let body = serde_json::to_string_pretty(&serde_json::json!({ "admin": password }))?;
    let write = || -> std::io::Result<()> {
        if let Some(dir) = password_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(password_file)?;
        f.write_all(body.as_bytes())
    };
    write().map_err(|e| {
        anyhow::anyhow!(
            "created user `admin` but could not store its password in {}: {e}; \
             set a new one with `updraft users create --username admin`",
            password_file.display()
        )
    })?;
    Ok(Some(password))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

enum AuthOutcome {
    User(CurrentUser),
    Missing,
    Rejected(&'static str),
}

async fn authenticate(
    st: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
) -> anyhow::Result<AuthOutcome> {
    let pool = &st.pool;
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(token) = auth.strip_prefix("Bearer ") {
            return Ok(match users::token_owner(pool, token.trim(), "api").await? {
                Some(o) => AuthOutcome::User(CurrentUser {
                    id: o.user_id,
                    username: o.username,
                    role: o.role,
                    csrf: None,
                }),
                None => AuthOutcome::Rejected(
                    "the bearer token is unknown or expired; get a new one from POST /auth/token",
                ),
            });
        }
        if let Some(b64) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok();
            let pair = decoded
                .as_deref()
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|s| s.split_once(':'));
            let Some((username, password)) = pair else {
                return Ok(AuthOutcome::Rejected("malformed basic auth header"));
            };
            return Ok(match sign_in(st, client, username, password).await? {
                Some(u) => AuthOutcome::User(CurrentUser {
                    id: u.id,
                    username: u.username,
                    role: u.role,
                    csrf: None,
                }),
                None => AuthOutcome::Rejected("wrong username or password"),
            });
        }
        return Ok(AuthOutcome::Rejected(
            "unsupported Authorization scheme; use Bearer or Basic",
        ));
    }
    if let Some(token) = cookie_value(headers, SESSION_COOKIE) {
        if let Some(o) = users::token_owner(pool, token, "session").await? {
            return Ok(AuthOutcome::User(CurrentUser {
                id: o.user_id,
                username: o.username,
                role: o.role,
                csrf: Some(o.csrf),
            }));
        }
    }
    Ok(AuthOutcome::Missing)
}

/// Lets authenticated requests through. API paths answer 401 JSON; pages redirect to the
/// login page and come back afterwards. Cookie-authenticated API writes must carry the
/// session's CSRF token in `X-CSRF-Token`; viewers may only read (and log out).
pub async fn require_auth(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let is_api = req.uri().path().starts_with("/api/") || req.uri().path() == "/metrics";
    let client = client_addr(req.extensions());
    let outcome = match authenticate(&st, client, req.headers()).await {
        Ok(o) => o,
        Err(e) if throttled(&e).is_some() => {
            let wait = throttled(&e).unwrap_or_default();
            return if is_api {
                too_many(
                    wait,
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
                )
            } else {
                too_many(wait, WebError::Unavailable(e.to_string()))
            };
        }
        Err(e) if is_busy(&e) && is_api => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
        Err(e) if is_busy(&e) => return WebError::Unavailable(e.to_string()).into_response(),
        Err(e) if is_api => return ApiError::internal(e).into_response(),
        Err(e) => return WebError::Internal(e).into_response(),
    };
    let user = match outcome {
        AuthOutcome::User(u) => u,
        AuthOutcome::Rejected(why) if is_api => return ApiError::unauthorized(why).into_response(),
        AuthOutcome::Missing if is_api => {
            return ApiError::unauthorized(
                "not authenticated; send a bearer token from POST /auth/token or basic auth",
            )
            .into_response()
        }
        _ => {
            let next_url = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let q = serde_urlencoded::to_string([("next", next_url)]).unwrap_or_default();
            return Redirect::to(&format!("/login?{q}")).into_response();
        }
    };
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Logging out changes nothing but the caller's own session, so viewers may do it too
    // (the handler still checks the CSRF token).
    let logout = req.uri().path() == "/logout";
    if writes && user.role == "viewer" && !logout {
        let msg = "your role (viewer) may only read; ask an admin to make this change";
        return if is_api {
            ApiError::new(StatusCode::FORBIDDEN, msg).into_response()
        } else {
            WebError::Forbidden(msg.into()).into_response()
        };
    }
    if writes && is_api {
        if let Some(expected) = &user.csrf {
            let got = req
                .headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if got.is_none_or(|g| !constant_time_eq(expected, g)) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cookie-authenticated API writes need the X-CSRF-Token header",
                )
                .into_response();
            }
        }
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub next: String,
    pub username: String,
    pub error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `next` if it is a same-site path to send people back to after a form, or None.
///
/// Browsers are lenient with `Location`: they drop tabs and newlines and read a backslash as
/// `/`, so `/<TAB>/evil.example` or `/<BACKSLASH>evil.example` become `//evil.example`, another
/// site. Only a path that starts with exactly one `/` (the next character is neither `/` nor a
/// backslash) and has no backslash, whitespace or control character anywhere is accepted.
pub fn safe_next(next: &str) -> Option<&str> {
    let mut chars = next.chars();
    let same_site = chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    same_site.then_some(next)
}

/// Where the login form sends people afterwards: a [`safe_next`] path or the DAG list.
fn login_next(next: Option<&str>) -> String {
    next.and_then(safe_next).unwrap_or("/dags").to_string()
}

/// The login form is protected by a double-submit token: a cookie scoped to `/login` and
/// the same value in a hidden field, so another site cannot log people into its account.
pub const LOGIN_CSRF_COOKIE: &str = "updraft_login_csrf";

fn login_form(
    st: &AppState,
    next: String,
    username: String,
    error: Option<String>,
    token: Option<&str>,
) -> Result<Response, WebError> {
    let token = token.map(str::to_string).unwrap_or_else(random_token);
    let page = LoginPage {
        chrome: Chrome {
            username: None,
            csrf: token.clone(),
        },
        next,
        username,
        error,
    };
    let mut res = render(&page)?;
    let secure = if st.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    );
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

pub async fn login_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let existing = cookie_value(&headers, LOGIN_CSRF_COOKIE).filter(|t| t.len() == 64);
    login_form(
        &st,
        login_next(q.next.as_deref()),
        String::new(),
        None,
        existing,
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
    csrf_token: String,
}

pub async fn login(
    State(st): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, WebError> {
    let next = login_next(f.next.as_deref());
    let expected = cookie_value(&headers, LOGIN_CSRF_COOKIE).filter(|t| t.len() == 64);
    if !expected.is_some_and(|e| constant_time_eq(e, &f.csrf_token)) {
        let error =
            "The login form expired or did not come from this site. Enter your password again.";
        let mut res = login_form(&st, next, f.username, Some(error.into()), None)?;
        *res.status_mut() = StatusCode::FORBIDDEN;
        return Ok(res);
    }
    let checked = match sign_in(&st, client, &f.username, &f.password).await {
        Err(e) if is_busy(&e) => {
            let error = "The server is busy checking other sign-ins. Try again in a few seconds.";
            let mut res = login_form(&st, next, f.username, Some(error.into()), expected)?;
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(res);
        }
        Err(e) if throttled(&e).is_some() => {
            let wait = throttled(&e).unwrap_or_default();
            let secs = whole_seconds(wait);
            let error = format!(
                "Too many sign-in attempts for this user. Wait {secs} second{}, then try again.",
                if secs == 1 { "" } else { "s" }
            );
            let res = login_form(&st, next, f.username, Some(error), expected)?;
            return Ok(too_many(wait, res));
        }
        other => other?,
    };
    let Some(user) = checked else {
        let error = "Wrong username or password. Check both and try again.";
        let mut res = login_form(&st, next, f.username, Some(error.into()), expected)?;
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    };
    let token = random_token();
    let ttl = st.settings.session_ttl.as_secs() as i64;
    users::insert_token(&st.pool, &token, user.id, "session", &random_token(), ttl).await?;
    let secure = if st.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{secure}");
    let clear = format!("{LOGIN_CSRF_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((
        axum::response::AppendHeaders([(header::SET_COOKIE, cookie), (header::SET_COOKIE, clear)]),
        Redirect::to(&next),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

pub async fn logout(
    State(st): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    user.check_csrf(f.csrf_token.as_deref())?;
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
        users::delete_token(&st.pool, token).await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

#[derive(Deserialize)]
pub struct TokenBody {
    username: String,
    password: String,
}

/// `POST /auth/token` `{username, password}` → `201 {"access_token": ...}`, as Airflow 3.
pub async fn token(
    State(st): State<AppState>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!("expected JSON {{\"username\", \"password\"}}: {e}"))
    })?;
    let checked = match sign_in(&st, client, &body.username, &body.password).await {
        Err(e) if is_busy(&e) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
            ))
        }
        Err(e) if throttled(&e).is_some() => {
            let wait = throttled(&e).unwrap_or_default();
            return Ok(too_many(
                wait,
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            ));
        }
        other => other?,
    };
    let Some(user) = checked else {
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    let token = random_token();
    let ttl = st.settings.token_ttl.as_secs() as i64;
    users::insert_token(&st.pool, &token, user.id, "api", "", ttl).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "access_token": token, "token_type": "bearer", "expires_in": ttl }),
        ),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    use argon2::Argon2;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = argon2::Params::try_from(&dummy).unwrap();
        let default = Argon2::default();
        let cost = |p: &argon2::Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(cost(&params), cost(default.params()));
        assert_eq!(dummy.algorithm, argon2::Algorithm::default().ident());
        assert!(default.verify_password(b"password", &dummy).is_err());
    }

    #[test]
    fn safe_next_keeps_only_same_site_paths() {
        for ok in ["/", "/dags", "/dags/etl?x=1#y", "/a//b"] {
            assert_eq!(safe_next(ok), Some(ok));
        }
        for bad in [
            "",
            "dags",
            "//evil",
            "/\\evil",
            "\\/evil",
            "/\t/evil",
            "/\n/evil",
            "/\r/evil",
            "/ /evil",
            "/a\\b",
            "/a\u{0}b",
            "/a\u{85}b",
            "/a\u{2028}b",
            "https://evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }
}
