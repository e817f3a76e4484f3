//! Requests refused before any handler sees them: a URL whose path or query holds a NUL byte
//! (`%00`), bytes that are not UTF-8 once percent-decoded, or a field longer than any id or
//! filter could be. Postgres cannot store a NUL in text and ids are at most 250 characters,
//! so such a request can only fail further in; failing here says why, with a 400, instead of
//! a database error and a 500.
//!
//! Bodies are checked where they are read (JSON and forms by their extractors); a NUL inside a
//! JSON string that reaches Postgres is answered 400 by the error types (`error::bad_input`).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, WebError};

/// The longest path segment or query value accepted, in characters after decoding (the
/// OpenAPI document says the same). Ids are at most 250; filters and `next` URLs fit easily.
pub const MAX_FIELD_CHARS: usize = 1024;

/// Why a URL was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    #[error("the {0} contains a NUL byte (%00), which no name or value may hold")]
    Nul(&'static str),
    #[error("the {0} is not valid UTF-8 once percent-decoded")]
    NotUtf8(&'static str),
    #[error("a {0} is longer than {MAX_FIELD_CHARS} characters")]
    TooLong(&'static str),
}

/// Checks the path and query of `uri` (as sent: percent-encoded).
pub fn check_uri(path: &str, query: Option<&str>) -> Result<(), BadUrl> {
    for segment in path.split('/') {
        check_field(segment, false, "path", "path segment")?;
    }
    for pair in query.unwrap_or("").split('&') {
        for part in pair.splitn(2, '=') {
            check_field(part, true, "query string", "query parameter")?;
        }
    }
    Ok(())
}

fn check_field(
    raw: &str,
    plus_is_space: bool,
    whole: &'static str,
    field: &'static str,
) -> Result<(), BadUrl> {
    let decoded = percent_decode(raw.as_bytes(), plus_is_space);
    if decoded.contains(&0) {
        return Err(BadUrl::Nul(whole));
    }
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return Err(BadUrl::NotUtf8(whole));
    };
    if text.chars().count() > MAX_FIELD_CHARS {
        return Err(BadUrl::TooLong(field));
    }
    Ok(())
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is, as browsers do).
fn percent_decode(raw: &[u8], plus_is_space: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The middleware: 400 (JSON under `/api/`, the error page elsewhere) for a refused URL.
pub async fn reject_malformed(req: Request, next: Next) -> Response {
    let uri = req.uri();
    if let Err(e) = check_uri(uri.path(), uri.query()) {
        return if uri.path().starts_with("/api/") {
            ApiError::bad_request(e.to_string()).into_response()
        } else {
            WebError::BadRequest(format!("This address cannot be served: {e}.")).into_response()
        };
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bad_utf8_and_long_fields_are_refused() {
        assert_eq!(
            check_uri("/api/v2/dags/etl", Some("limit=5&tags=a+b")),
            Ok(())
        );
        assert_eq!(check_uri("/dags/%E2%9C%93", None), Ok(()));
        assert_eq!(check_uri("/a%2", Some("x=100%")), Ok(()));
        assert_eq!(
            check_uri("/api/v2/dags/a%00b", None),
            Err(BadUrl::Nul("path"))
        );
        assert_eq!(
            check_uri("/api/v2/dags", Some("dag_id_pattern=%00")),
            Err(BadUrl::Nul("query string"))
        );
        assert_eq!(
            check_uri("/api/v2/dags", Some("x%00=1")),
            Err(BadUrl::Nul("query string"))
        );
        assert_eq!(
            check_uri("/dags/%FF%FE", None),
            Err(BadUrl::NotUtf8("path"))
        );
        assert_eq!(
            check_uri("/dags", Some("q=%C3")),
            Err(BadUrl::NotUtf8("query string"))
        );
        let long = "é".repeat(MAX_FIELD_CHARS + 1);
        assert_eq!(
            check_uri(&format!("/dags/{}", "é".repeat(MAX_FIELD_CHARS)), None),
            Ok(())
        );
        assert_eq!(
            check_uri(&format!("/dags/{long}"), None),
            Err(BadUrl::TooLong("path segment"))
        );
        assert_eq!(
            check_uri("/dags", Some(&format!("q={long}"))),
            Err(BadUrl::TooLong("query parameter"))
        );
    }
}
