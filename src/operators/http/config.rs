use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of the `http` operator: the subset of Airflow's `HttpOperator`
/// (`airflow.providers.http.operators.http.HttpOperator`) that needs no Python.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The path (and query) appended to the connection's base URL.
    #[serde(default)]
    pub endpoint: String,
    /// `GET` or `POST` (Airflow's default is `POST`).
    #[serde(default = "post")]
    pub method: String,
    /// For GET, a mapping of query parameters (or a query string); for POST, a mapping sent
    /// form-encoded or a string sent as the body, as Python `requests` does.
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The connection giving the base URL: `AIRFLOW_CONN_<ID>`, e.g.
    /// `https://user:password@api.example.com/v1` (user and password become basic auth).
    #[serde(default = "http_default")]
    pub http_conn_id: String,
    /// Log the response body.
    #[serde(default)]
    pub log_response: bool,
    /// Only `timeout` (seconds, default 60) is supported.
    #[serde(default)]
    pub extra_options: BTreeMap<String, serde_json::Value>,
    /// Not supported: a Python callable. Giving it is an error rather than silently ignored,
    /// since a check that does not run would pass everything.
    #[serde(default)]
    pub response_check: Option<serde_json::Value>,
    /// Not supported: a Python callable (the raw body text is the XCom value).
    #[serde(default)]
    pub response_filter: Option<serde_json::Value>,
}

/// The longest `extra_options.timeout` (a day).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

impl Config {
    /// Pure checks beyond the types.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if !matches!(self.method.to_ascii_uppercase().as_str(), "GET" | "POST") {
            errors.push((
                "with.method".into(),
                format!("`{}` is not supported; use GET or POST", self.method),
            ));
        }
        for key in ["response_check", "response_filter"] {
            let given = if key == "response_check" {
                &self.response_check
            } else {
                &self.response_filter
            };
            if given.is_some() {
                errors.push((
                    format!("with.{key}"),
                    format!("`{key}` takes a Python callable, which updraft cannot run; check the response in a downstream task"),
                ));
            }
        }
        for (k, v) in &self.extra_options {
            match k.as_str() {
                "timeout" if v.as_f64().is_some_and(|t| t > 0.0 && t <= MAX_TIMEOUT_SECS) => {}
                "timeout" => errors.push((
                    "with.extra_options.timeout".into(),
                    format!("must be a positive number of seconds, at most {MAX_TIMEOUT_SECS}"),
                )),
                other => errors.push((
                    format!("with.extra_options.{other}"),
                    "is not supported; only `timeout` is".into(),
                )),
            }
        }
        if let Some(d) = &self.data {
            if !(d.is_object() || d.is_string() || d.is_null()) {
                errors.push(("with.data".into(), "must be a mapping or a string".into()));
            }
        }
        errors
    }

    pub fn timeout(&self) -> std::time::Duration {
        let secs = self
            .extra_options
            .get("timeout")
            .and_then(|v| v.as_f64())
            .unwrap_or(60.0);
        // Clamped: `from_secs_f64` panics on values too large for a `Duration`.
        std::time::Duration::from_secs_f64(secs.clamp(0.001, MAX_TIMEOUT_SECS))
    }
}

fn post() -> String {
    "POST".into()
}
fn http_default() -> String {
    "http_default".into()
}
