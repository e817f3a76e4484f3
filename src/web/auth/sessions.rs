//! Browser sessions and CSRF.
//!
//! **Cookies** are read and written through axum-extra's `CookieJar` over the `cookie` crate,
//! which parses `Cookie` headers and writes `Set-Cookie` with its attributes; nothing here
//! splits or formats cookie strings by hand. The session cookie is `HttpOnly` (scripts never
//! see it), `SameSite=Lax` (other sites' forms do not carry it) and `Secure` when the server
//! is reached over HTTPS ([`crate::web::WebSettings::secure_cookies`]). Its value is a
//! random 256-bit token of which Postgres stores only the SHA-256 (`auth_tokens`).
//!
//! **CSRF** uses the synchronizer token pattern, OWASP's first recommendation for sites with
//! server-side sessions: each session row carries its own random token, pages put it in a
//! hidden `csrf_token` field (scripts may send it as `X-CSRF-Token`), and every
//! state-changing request a session cookie authenticates must echo it. [`super::require_auth`]
//! checks this centrally, before any handler runs, so a new form cannot forget it. Tokens are
//! compared in constant time with the `subtle` crate. Why not a CSRF crate: the maintained
//! ones for axum implement the double-submit cookie pattern, meant for servers without
//! session state; we have the session row anyway, a token bound to it cannot be planted by a
//! sibling subdomain the way a double-submit cookie can, and the whole mechanism is one
//! random value (rand) and one constant-time comparison (subtle).
//!
//! Before a session exists, the **login form** cannot use a session token, so it uses a
//! double-submit token: a cookie scoped to `/login` and the same value in a hidden field, so
//! another site cannot log people into its own account.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use cookie::time::Duration;
use cookie::{Cookie, SameSite};
use rand::RngCore;
use subtle::ConstantTimeEq;

/// Names the session cookie.
pub const SESSION_COOKIE: &str = "updraft_session";
/// Names the login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "updraft_login_csrf";
/// The hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";
/// The header scripts and API clients send the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login form stays usable.
const LOGIN_FORM_TTL: Duration = Duration::hours(1);

/// A random 256-bit secret, hex-encoded (64 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether a submitted token is the expected one, in time that does not depend on where
/// they differ. An empty submission never matches.
pub fn tokens_match(expected: &str, submitted: &str) -> bool {
    !submitted.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// The session token the browser sent, if any.
pub fn session_token(jar: &CookieJar) -> Option<String> {
    jar.get(SESSION_COOKIE).map(|c| c.value().to_string())
}

/// The cookie that carries a new session for `ttl_secs`.
pub fn session_cookie(token: String, ttl_secs: i64, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(Duration::seconds(ttl_secs))
        .secure(secure)
        .build()
}

/// `jar` with the session cookie cleared (a removal cookie with the same path).
pub fn end_session(jar: CookieJar) -> CookieJar {
    jar.remove(
        Cookie::build(SESSION_COOKIE)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax),
    )
}

/// The login form's token from its cookie, if it looks like one of ours.
pub fn login_form_token(jar: &CookieJar) -> Option<String> {
    jar.get(LOGIN_CSRF_COOKIE)
        .map(|c| c.value())
        .filter(|t| t.len() == 64)
        .map(str::to_string)
}

/// The cookie half of the login form's double-submit token. `SameSite=Strict` and scoped to
/// `/login`: no other page or site ever sends it.
pub fn login_form_cookie(token: String, secure: bool) -> Cookie<'static> {
    Cookie::build((LOGIN_CSRF_COOKIE, token))
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(LOGIN_FORM_TTL)
        .secure(secure)
        .build()
}

/// `jar` with the login form's cookie cleared (the form has been used).
pub fn end_login_form(jar: CookieJar) -> CookieJar {
    jar.remove(
        Cookie::build(LOGIN_CSRF_COOKIE)
            .path("/login")
            .http_only(true)
            .same_site(SameSite::Strict),
    )
}

/// The CSRF token a request carries: the `X-CSRF-Token` header, else (when `forms` is set and
/// the body is a urlencoded form) its `csrf_token` field. Reading the field buffers the body,
/// which the body limit bounds, and puts it back for the handler. A body that cannot be read
/// (too large, or the client went away) is answered with axum's rejection, whose status
/// (413, 400) the hardening layer words for people.
pub async fn submitted_token(
    req: Request,
    forms: bool,
) -> Result<(Request, Option<String>), Response> {
    if let Some(v) = req.headers().get(CSRF_HEADER) {
        let token = v.to_str().ok().map(str::to_string);
        return Ok((req, token));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !forms || !is_form {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let bytes = Bytes::from_request(Request::new(body), &())
        .await
        .map_err(IntoResponse::into_response)?;
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| {
            fields
                .into_iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v)
        });
    Ok((Request::from_parts(parts, bytes.into()), token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn tokens_match_only_exactly() {
        let t = random_token();
        assert_eq!(t.len(), 64);
        assert!(tokens_match(&t, &t.clone()));
        assert!(!tokens_match(&t, ""));
        assert!(!tokens_match(&t, &t[..63]));
        assert!(!tokens_match(&t, &random_token()));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn cookies_carry_their_attributes() {
        let s = session_cookie("abc".into(), 60, false).to_string();
        assert!(s.starts_with("updraft_session=abc;"), "{s}");
        for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=60"] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(!s.contains("Secure"), "{s}");
        assert!(session_cookie("abc".into(), 60, true)
            .to_string()
            .contains("Secure"));
        let l = login_form_cookie("x".into(), false).to_string();
        assert!(
            l.contains("Path=/login") && l.contains("SameSite=Strict"),
            "{l}"
        );
    }

    #[test]
    fn the_session_token_is_read_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; updraft_session=tok".parse().unwrap());
        let jar = CookieJar::from_headers(&h);
        assert_eq!(session_token(&jar).as_deref(), Some("tok"));
        assert_eq!(session_token(&CookieJar::new()), None);
    }
}
