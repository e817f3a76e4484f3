use reqwest::Url;
use serde_json::Value;

use super::Config;
use crate::core::log::mask_uri;
use crate::operators::error::classify;
use crate::operators::{OperatorError, Outcome, Reason, TaskContext};

/// The request URL and basic-auth credentials from a connection URI and an endpoint. A URI
/// that does not make an HTTP URL is a permanent error.
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
    let conn = ctx.env.connections.get(&config.http_conn_id.to_lowercase()).ok_or_else(|| {
        OperatorError::new(
            Reason::MissingConnection,
            format!("connection `{}` is not defined", config.http_conn_id),
        )
        .hint(format!(
            "set AIRFLOW_CONN_{} to the base URL, e.g. https://api.example.com, or change `http_conn_id`",
            config.http_conn_id.to_uppercase()
        ))
    })?;
    let (mut url, auth) = build_url(&conn.uri, &config.endpoint).map_err(|e| {
        e.hint(format!(
            "fix AIRFLOW_CONN_{}",
            config.http_conn_id.to_uppercase()
        ))
    })?;
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
