use reqwest::Url;
use serde_json::Value;

use super::Config;
use crate::core::log::mask_uri;
use crate::operators::error::classify;
use crate::operators::{OperatorError, Outcome, TaskContext};

/// A connection's base URL, with its login and password as user info. As Airflow's
/// `HttpHook`: a host with `://` is the base URL; otherwise the scheme is `schema` when that
/// is `http`/`https` (Airflow's HTTP connection form), else the connection type when it is
/// `https`, else `http`, and a `schema` that is not a scheme is the base path (so the URI
/// `https://api.example.com/v1` means what it says). `port` is appended when set.
pub fn base_url(conn: &crate::settings::Connection) -> String {
    use crate::core::connection::quote;
    let host = conn.host.clone().unwrap_or_default();
    let schema = conn.schema.clone().unwrap_or_default();
    let scheme_in_schema = matches!(schema.as_str(), "http" | "https");
    let mut url = if host.contains("://") {
        host.clone()
    } else {
        let scheme = if scheme_in_schema {
            schema.as_str()
        } else if conn.conn_type == "https" {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    };
    if let Some(login) = conn.login.as_deref().filter(|l| !l.is_empty()) {
        let password = conn
            .password
            .as_deref()
            .map(|p| format!(":{}", quote(p)))
            .unwrap_or_default();
        url = url.replacen("://", &format!("://{}{password}@", quote(login)), 1);
    }
    if let Some(port) = conn.port {
        url.push_str(&format!(":{port}"));
    }
    if !scheme_in_schema && !schema.is_empty() && !host.contains("://") {
        url.push('/');
        url.push_str(&schema);
    }
    url
}

/// The request URL and basic-auth credentials from a base URL (with user info) and an
/// endpoint.
pub fn build_url(
    conn_uri: &str,
    endpoint: &str,
) -> Result<(Url, Option<(String, String)>), OperatorError> {
    let mut base = Url::parse(conn_uri).map_err(|e| {
        OperatorError::config(format!(
            "the connection URI `{}` is not a URL: {e}",
            mask_uri(conn_uri)
        ))
    })?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(OperatorError::config(format!(
            "the connection URI must start with http:// or https://, not `{}://`",
            base.scheme()
        )));
    }
    let auth = (!base.username().is_empty()).then(|| {
        let user = percent_decode(base.username());
        let pass = base.password().map(percent_decode).unwrap_or_default();
        (user, pass)
    });
    // Credentials go in the Authorization header, never in the URL (which gets logged).
    let _ = base.set_username("");
    let _ = base.set_password(None);
    let mut path = base.path().trim_end_matches('/').to_string();
    let endpoint = endpoint.trim_start_matches('/');
    let (ep_path, ep_query) = match endpoint.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (endpoint, None),
    };
    if !ep_path.is_empty() || endpoint.is_empty() {
        path.push('/');
        path.push_str(ep_path);
    }
    base.set_path(&path);
    if let Some(q) = ep_query {
        base.set_query(Some(q));
    }
    Ok((base, auth))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query or form pairs from a `data` mapping: strings as is, other values as JSON text.
fn pairs(data: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    data.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect()
}

/// A 4xx other than 408/429, a missing connection or a bad argument is permanent; a timeout,
/// a refused connection, a 5xx, 408 or 429 is transient (retried by the task's policy: this
/// operator makes one call per try, as Airflow's does).
pub async fn run(config: Config, ctx: &TaskContext) -> Result<Outcome, OperatorError> {
    crate::operators::ensure_valid(config.validate())?;
    let conn = ctx.env.connection(&config.http_conn_id)?;
    let (mut url, auth) = build_url(&base_url(conn), &config.endpoint)?;
    let method = config.method.to_ascii_uppercase();
    if let (Some(Value::String(q)), "GET") = (&config.data, method.as_str()) {
        // A query string given as `data` is appended as is, as `requests` does.
        let joined = match url.query() {
            Some(existing) if !existing.is_empty() => format!("{existing}&{q}"),
            _ => q.clone(),
        };
        url.set_query(Some(&joined));
    }
    let client = reqwest::Client::builder()
        .timeout(config.timeout())
        .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| classify::reqwest_error("could not build the HTTP client", &e))?;
    let mut req = if method == "GET" {
        client.get(url.clone())
    } else {
        client.post(url.clone())
    };
    for (k, v) in &config.headers {
        req = req.header(k, v);
    }
    if let Some((user, pass)) = &auth {
        req = req.basic_auth(user, Some(pass));
    }
    req = match (&config.data, method.as_str()) {
        (Some(Value::Object(m)), "GET") => req.query(&pairs(m)),
        (Some(_), "GET") => req,
        (Some(Value::Object(m)), _) => req.form(&pairs(m)),
        (Some(Value::String(body)), _) => req.body(body.clone()),
        _ => req,
    };
    ctx.log.info(format!("Calling HTTP method {method} {url}"));
    let resp = tokio::select! {
        r = req.send() => r.map_err(|e| classify::reqwest_error(format_args!("{method} {url} failed"), &e))?,
        _ = ctx.cancel.cancelled() => return Err(OperatorError::cancelled("the HTTP call")),
    };
    let status = resp.status();
    let body = tokio::select! {
        r = resp.text() => r.map_err(|e| classify::reqwest_error("reading the response failed", &e))?,
        _ = ctx.cancel.cancelled() => return Err(OperatorError::cancelled("the HTTP call")),
    };
    if config.log_response {
        ctx.log.info(body.clone());
    }
    if !status.is_success() {
        let snippet: String = body.chars().take(200).collect();
        return Err(OperatorError::new(
            classify::http_status(status),
            format!("{method} {url} returned HTTP {status}: {snippet}"),
        ));
    }
    ctx.log.info(format!("HTTP {status}, {} bytes", body.len()));
    Ok(Outcome::returning(Value::String(body)))
}
