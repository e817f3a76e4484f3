//! The login page, its form and logout. The form is guarded by a double-submit token (see
//! [`super::sessions`]); a right password starts a session: a row in `auth_tokens` and an
//! HttpOnly cookie.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::passwords::{sign_in, SignInError};
use super::sessions::{
    end_login_form, end_session, login_form_cookie, login_form_token, random_token, session_cookie,
    session_token, tokens_match,
};
use super::{too_many, whole_seconds, ClientAddr};
use crate::db::users;
use crate::web::error::WebError;
use crate::web::page::{render, Chrome};
use crate::web::AppState;

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

/// The form, with `error` above it, and its double-submit cookie (`token`, or a new one).
fn login_form(
    st: &AppState,
    next: String,
    username: String,
    error: Option<String>,
    token: Option<String>,
) -> Result<Response, WebError> {
    let token = token.unwrap_or_else(random_token);
    let page = LoginPage {
        chrome: Chrome {
            csrf: token.clone(),
            ..Chrome::default()
        },
        next,
        username,
        error,
    };
    let cookie = login_form_cookie(token, st.settings.secure_cookies);
    Ok((CookieJar::new().add(cookie), render(&page)?).into_response())
}

pub async fn login_page(
    State(st): State<AppState>,
    jar: CookieJar,
    Query(q): Query<LoginQuery>,
) -> Result<Response, WebError> {
    let next = login_next(q.next.as_deref());
    login_form(&st, next, String::new(), None, login_form_token(&jar))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
    csrf_token: String,
}

/// The login form again, with `error` and `status`.
fn refused(
    st: &AppState,
    f: LoginForm,
    token: Option<String>,
    status: StatusCode,
    error: String,
) -> Result<Response, WebError> {
    let next = login_next(f.next.as_deref());
    let mut res = login_form(st, next, f.username, Some(error), token)?;
    *res.status_mut() = status;
    Ok(res)
}

pub async fn login(
    State(st): State<AppState>,
    ClientAddr(client): ClientAddr,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = login_form_token(&jar);
    if !expected
        .as_deref()
        .is_some_and(|e| tokens_match(e, &f.csrf_token))
    {
        let error =
            "The login form expired or did not come from this site. Enter your password again.";
        return refused(&st, f, None, StatusCode::FORBIDDEN, error.into());
    }
    let checked = sign_in(
        &st.pool,
        &st.hashing,
        &st.logins,
        client,
        &f.username,
        &f.password,
    )
    .await;
    let user = match checked {
        Ok(Some(user)) => {
            super::passwords::record_sign_in(&st.pool, "sign_in", &user.username, client).await;
            user
        }
        Ok(None) => {
            let error = "Wrong username or password. Check both and try again.";
            return refused(&st, f, expected, StatusCode::UNAUTHORIZED, error.into());
        }
        Err(SignInError::Busy) => {
            let error = "The server is busy checking other sign-ins. Try again in a few seconds.";
            return refused(
                &st,
                f,
                expected,
                StatusCode::SERVICE_UNAVAILABLE,
                error.into(),
            );
        }
        Err(SignInError::Throttled(t)) => {
            let secs = whole_seconds(t.retry_after);
            let error = format!(
                "Too many sign-in attempts for this user. Wait {secs} second{}, then try again.",
                if secs == 1 { "" } else { "s" }
            );
            let res = refused(&st, f, expected, StatusCode::TOO_MANY_REQUESTS, error)?;
            return Ok(too_many(t.retry_after, res));
        }
        Err(SignInError::Internal(e)) => return Err(WebError::Internal(e)),
    };
    let token = random_token();
    let ttl = st.settings.session_ttl.as_secs() as i64;
    users::insert_token(&st.pool, &token, user.id, "session", &random_token(), ttl).await?;
    let jar = end_login_form(jar).add(session_cookie(token, ttl, st.settings.secure_cookies));
    let next = login_next(f.next.as_deref());
    Ok((jar, Redirect::to(&next)).into_response())
}

/// Ends the caller's session. The CSRF token was checked by [`super::require_auth`], as for
/// every state-changing request.
pub async fn logout(State(st): State<AppState>, jar: CookieJar) -> Result<Response, WebError> {
    if let Some(token) = session_token(&jar) {
        users::delete_token(&st.pool, &token).await?;
    }
    Ok((end_session(jar), Redirect::to("/login")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
