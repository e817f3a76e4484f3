use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::mapping::Mapping;
use crate::core::Duration;

/// The API's own cap on `results` per request (randomuser.me serves at most 5,000).
pub const MAX_PAGE_SIZE: u32 = 5_000;
/// Bounds on the other numbers, so a typo cannot exhaust a worker's memory or hammer the API.
pub const MAX_RESULTS: u32 = 1_000_000;
pub const MAX_CONCURRENCY: usize = 64;
pub const MAX_RETRIES: u32 = 100;

/// The connection fetch reads its URL from when the task names none, if it is defined.
pub const DATASOURCE_CONN_ID: &str = "datasource_default";

/// The URL used when neither `with.url` nor `DATASOURCE_URL` says otherwise.
pub const DEFAULT_URL: &str = "https://randomuser.me/api/";

/// Arguments of the `fetch` operator (`uses: updraft.fetch`).
///
/// URL precedence: `url` here, else `DATASOURCE_URL` from configuration, else
/// `https://randomuser.me/api/`. The DAG author's explicit choice is the most specific, and
/// `DATASOURCE_URL` exists to repoint DAGs that did not choose (tests, air-gapped sites).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API URL. Overrides `http_conn_id`.
    #[serde(default)]
    pub url: Option<String>,
    /// A connection whose base URL is the API URL (as the http operator reads it; login and
    /// password become basic auth). Without `url` and `http_conn_id`, the connection
    /// `datasource_default` if defined, else `DATASOURCE_URL`, else randomuser.me.
    #[serde(default)]
    pub http_conn_id: Option<String>,
    /// How many results to fetch in total; asked for with the `results=` query parameter.
    #[serde(default = "one")]
    pub results: u32,
    /// Results per request, at most 5,000 (the API's cap); more results mean several requests.
    #[serde(default = "max_page")]
    pub page_size: u32,
    /// How many requests may be in flight at once.
    #[serde(default = "four")]
    pub concurrency: usize,
    /// Extra query parameters sent with every request (e.g. `nat: us`, `seed: abc`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Timeout of one request, from connecting to the last byte of the body.
    #[serde(default = "thirty_seconds")]
    pub timeout: Duration,
    /// Retries of one request after a connection error, a timeout, a 429, a 5xx or an
    /// `{"error": ...}` body. Other responses fail at once.
    #[serde(default = "five")]
    pub retries: u32,
    /// First backoff between retries; doubled each time (with jitter), up to `max_backoff`.
    /// A 429's `Retry-After` (seconds) is honoured instead when present.
    #[serde(default = "one_second")]
    pub backoff: Duration,
    /// The longest wait between two retries.
    #[serde(default = "thirty_seconds")]
    pub max_backoff: Duration,
    /// Where the list of results sits in the response body (a dotted path).
    #[serde(default = "results_path")]
    pub results_path: String,
    /// The record each result becomes: output key → spec (see the `mapping` module docs:
    /// `a.b` path, `a.b?` optional path, `"{a} {b}"` format, `$uuid`, `$now`, `=literal`).
    /// Keys keep the order they are written in.
    pub fields: Fields,
    /// What to do with a result the mapping cannot fill: `skip` it (counted and logged) or
    /// `fail` the task.
    #[serde(default)]
    pub on_invalid: OnInvalid,
}

/// See [`Config::on_invalid`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    #[default]
    Skip,
    Fail,
}

/// An ordered mapping of output key → spec string. (A `BTreeMap` would sort the keys; the
/// record's key order is part of its format.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of output field name to spec string")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(existing, _)| *existing == k) {
                        return Err(serde::de::Error::custom(format!("duplicate field `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl JsonSchema for Fields {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FetchFields".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Output field → spec: `a.b` (path), `a.b?` (optional path), `\"{a} {b}\"` (format), `$uuid`, `$now`, `=literal`.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string"}
        })
    }
}

impl Config {
    /// Pure checks beyond the types: every problem at once, as `(field, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Err(mut e) = Mapping::compile(&self.fields.0) {
            errors.append(&mut e);
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            errors.push((
                "with.page_size".into(),
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            errors.push((
                "with.concurrency".into(),
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        // The records are collected in memory before they are returned.
        if self.results > MAX_RESULTS {
            errors.push((
                "with.results".into(),
                format!("must be at most {MAX_RESULTS} (fetch more with several tasks or runs)"),
            ));
        }
        if self.retries > MAX_RETRIES {
            errors.push((
                "with.retries".into(),
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        if self.timeout == Duration::ZERO {
            errors.push(("with.timeout".into(), "must be longer than zero".into()));
        }
        if self.results_path.trim().is_empty() {
            errors.push(("with.results_path".into(), "must not be empty".into()));
        }
        if let Some(url) = &self.url {
            if let Err(e) = reqwest::Url::parse(url) {
                errors.push((
                    "with.url".into(),
                    format!("`{url}` is not a valid URL: {e}"),
                ));
            }
        }
        if self.query.contains_key("results") {
            errors.push((
                "with.query.results".into(),
                "set `results` (and `page_size`) instead".into(),
            ));
        }
        errors
    }

    /// The URL to fetch: `url`, else the `http_conn_id` connection (which must exist), else
    /// the `datasource_default` connection if defined, else `DATASOURCE_URL`, else the
    /// randomuser.me default. Connections are read at each try.
    pub fn resolve_url(
        &self,
        env: &crate::settings::OperatorEnv,
    ) -> Result<String, crate::settings::LookupError> {
        if let Some(u) = &self.url {
            return Ok(u.clone());
        }
        let id = match &self.http_conn_id {
            Some(id) => id.as_str(),
            None if env.has_connection(DATASOURCE_CONN_ID) => DATASOURCE_CONN_ID,
            None => return Ok(self.effective_url(env.datasource_url.as_deref())),
        };
        Ok(crate::operators::http::base_url(env.connection(id)?))
    }

    /// The URL to fetch without connections: `url`, else `DATASOURCE_URL`, else the
    /// randomuser.me default.
    pub fn effective_url(&self, datasource_url: Option<&str>) -> String {
        self.url
            .as_deref()
            .or(datasource_url)
            .unwrap_or(DEFAULT_URL)
            .to_string()
    }

    /// The `results=` count of each request, in order.
    pub fn pages(&self) -> Vec<u32> {
        let size = self.page_size.clamp(1, MAX_PAGE_SIZE);
        let mut left = self.results;
        let mut out = Vec::new();
        while left > 0 {
            let n = left.min(size);
            out.push(n);
            left -= n;
        }
        out
    }
}

fn one() -> u32 {
    1
}
fn four() -> usize {
    4
}
fn five() -> u32 {
    5
}
fn max_page() -> u32 {
    MAX_PAGE_SIZE
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn results_path() -> String {
    "results".into()
}
