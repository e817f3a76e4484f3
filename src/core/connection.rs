//! Airflow's connection model: an id, a type, host, schema, login, password, port and a JSON
//! `extra`, written either as fields or as a URI (`postgres://user:pw@host:5432/db?k=v`) or
//! JSON (`{"conn_type": "postgres", "host": ...}`), the two forms `AIRFLOW_CONN_*` takes.
//! URIs are parsed and printed exactly as Airflow's `Connection` does (fixtures made by
//! Airflow itself check it), with one extension: a comma in the host part
//! (`kafka://k1:9092,k2:9092`) keeps the whole list as the host, as Kafka and Cassandra
//! connections need.
//!
//! Also here: which names are sensitive (Airflow's list), so a variable or extra key such as
//! `api_key` has its value masked.

use serde_json::{Map, Value};

use super::pyurl::{parse_qsl, split_host_port, split_scheme, split_url, urlencode};
pub use super::pyurl::{python_json, quote, unquote};

/// A connection with Airflow's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub conn_id: String,
    pub conn_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
    /// A JSON object as text.
    #[serde(default)]
    pub extra: Option<String>,
}

/// Why a connection cannot be read or stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionError {
    #[error("invalid connection URI: {0}")]
    Uri(String),
    #[error("invalid connection JSON: {0}")]
    Json(String),
    #[error("`extra` must be a JSON object, like {{\"key\": \"value\"}}: {0}")]
    Extra(String),
    #[error("invalid connection id `{0}`: use letters, digits, `_`, `.` and `-`, at most 200 characters")]
    Id(String),
    #[error("`conn_type` must not be empty")]
    NoType,
}

const EXTRA_KEY: &str = "__extra__";

/// Airflow's sensitive names (`DEFAULT_SENSITIVE_FIELDS`): a variable or extra key that
/// contains one of them, after lower-casing and turning non-word characters into `_`, has
/// its value hidden.
pub const SENSITIVE_NAMES: &[&str] = &[
    "access_key",
    "access_token",
    "api_key",
    "apikey",
    "auth_header",
    "authorization",
    "bearer",
    "connection_string",
    "dsn",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "proxy",
    "proxy_password",
    "proxies",
    "secret",
    "service_account",
    "service_key",
    "token",
    "keyfile_dict",
    "webhook_url",
];

/// Whether a value named `name` must be hidden (Airflow's `should_hide_value_for_key`).
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.trim().to_lowercase();
    let mut normalized = String::with_capacity(lower.len());
    let mut in_run = false;
    for c in lower.chars() {
        if c.is_alphanumeric() || c == '_' {
            normalized.push(c);
            in_run = false;
        } else if !in_run {
            normalized.push('_');
            in_run = true;
        }
    }
    SENSITIVE_NAMES.iter().any(|s| normalized.contains(s))
}

/// Every string value under a sensitive key of `value` (recursively), for masking.
pub fn sensitive_values(value: &Value, out: &mut Vec<String>) {
    fn all_strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| all_strings(i, out)),
            Value::Object(m) => m.values().for_each(|i| all_strings(i, out)),
            Value::Number(n) => out.push(n.to_string()),
            _ => {}
        }
    }
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                if is_sensitive_name(k) {
                    all_strings(v, out);
                } else {
                    sensitive_values(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| sensitive_values(i, out)),
        _ => {}
    }
}

/// `value` with every value under a sensitive key replaced by `***` (Airflow's `redact`).
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_name(k) {
                        Value::String(crate::core::log::MASK.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

impl Connection {
    /// Airflow's key rule for connection ids: `^[\w.-]+$`, at most 200 characters.
    pub fn check_id(id: &str) -> Result<(), ConnectionError> {
        let ok = !id.is_empty()
            && id.chars().count() <= 200
            && id
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
        ok.then_some(())
            .ok_or_else(|| ConnectionError::Id(id.to_string()))
    }

    /// Checks the id, the type and that `extra` is a JSON object.
    pub fn validate(&self) -> Result<(), ConnectionError> {
        Connection::check_id(&self.conn_id)?;
        if self.conn_type.trim().is_empty() {
            return Err(ConnectionError::NoType);
        }
        if let Some(extra) = self.extra.as_deref().filter(|e| !e.is_empty()) {
            match serde_json::from_str::<Value>(extra) {
                Ok(Value::Object(_)) => {}
                Ok(other) => return Err(ConnectionError::Extra(format!("got {other}"))),
                Err(e) => return Err(ConnectionError::Extra(e.to_string())),
            }
        }
        Ok(())
    }

    /// Airflow's `conn_type` normalisation: `postgresql` → `postgres`, `-` → `_`.
    pub fn normalize_type(t: &str) -> String {
        if t == "postgresql" {
            "postgres".into()
        } else {
            t.replace('-', "_")
        }
    }

    /// An `AIRFLOW_CONN_*` value: JSON when it starts with `{`, else a URI.
    pub fn from_env_value(conn_id: &str, value: &str) -> Result<Connection, ConnectionError> {
        if value.trim_start().starts_with('{') {
            Connection::from_json(conn_id, value)
        } else {
            Connection::from_uri(conn_id, value)
        }
    }

    /// Airflow's JSON form: the fields by name, `extra` as an object or a JSON string.
    pub fn from_json(conn_id: &str, text: &str) -> Result<Connection, ConnectionError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ConnectionError::Json(e.to_string()))?;
        let Value::Object(mut m) = v else {
            return Err(ConnectionError::Json("not a JSON object".into()));
        };
        let mut take = |k: &str| -> Result<Option<String>, ConnectionError> {
            match m.remove(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) if k == "port" => Ok(Some(other.to_string())),
                Some(other) if k == "extra" => Ok(Some(other.to_string())),
                Some(other) => Err(ConnectionError::Json(format!(
                    "`{k}` must be a string, got {other}"
                ))),
            }
        };
        let port = match take("port")?.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(p.trim().parse::<i32>().map_err(|_| {
                ConnectionError::Json(format!(
                    "Expected integer value for `port`, but got {p:?} instead"
                ))
            })?),
        };
        let conn = Connection {
            conn_id: conn_id.to_string(),
            conn_type: take("conn_type")?
                .map(|t| Connection::normalize_type(&t))
                .unwrap_or_default(),
            description: take("description")?,
            host: take("host")?,
            schema: take("schema")?,
            login: take("login")?,
            password: take("password")?,
            port,
            extra: take("extra")?.filter(|e| !e.is_empty()),
        };
        if let Some(k) = m.keys().find(|k| *k != "conn_id") {
            return Err(ConnectionError::Json(format!("unknown field `{k}`")));
        }
        Ok(conn)
    }

    /// The JSON form (Airflow's `as_json`): fields that are set, `extra` as text.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("conn_type".into(), self.conn_type.clone().into());
        for (k, v) in [
            ("description", &self.description),
            ("host", &self.host),
            ("schema", &self.schema),
            ("login", &self.login),
            ("password", &self.password),
            ("extra", &self.extra),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        if let Some(p) = self.port {
            m.insert("port".into(), p.into());
        }
        Value::Object(m)
    }

    /// Parses a URI exactly as Airflow's `Connection(uri=...)` does.
    pub fn from_uri(conn_id: &str, uri: &str) -> Result<Connection, ConnectionError> {
        let bad = |m: &str| ConnectionError::Uri(m.to_string());
        let schemes = uri.matches("://").count();
        if schemes > 2 {
            return Err(bad("more than two `://`"));
        }
        let (scheme, _) = split_scheme(uri).ok_or_else(|| bad("no `type://` at the start"))?;
        let with_protocol = schemes == 2;
        let rest = uri.replacen(
            &format!("{scheme}://"),
            if with_protocol { "" } else { "//" },
            1,
        );
        let (protocol, rest) = if with_protocol {
            let (p, r) = rest
                .split_once("://")
                .ok_or_else(|| bad("a host protocol without `://`"))?;
            if p.contains('@') || p.contains(':') {
                return Err(bad("a host protocol may not contain `@` or `:`"));
            }
            (Some(p.to_lowercase()), format!("//{r}"))
        } else {
            (None, rest)
        };
        let parts = split_url(&rest);
        let (userinfo, hostinfo) = match parts.netloc.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, parts.netloc),
        };
        let (login, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((l, p)) => (Some(l), Some(p)),
                None => (Some(u), None),
            },
        };
        // Like Python's urlsplit: "" and None stay apart (`x://@h` has login "").
        let unquote_opt = |s: Option<&str>| s.map(unquote);
        let (host, port) = if hostinfo.contains(',') {
            (unquote(hostinfo), None)
        } else {
            let (h, p) = split_host_port(hostinfo);
            let port = match p {
                None | Some("") => None,
                Some(p) => Some(
                    p.parse::<u16>()
                        .map_err(|_| bad(&format!("port `{p}` is not a number from 0 to 65535")))?
                        as i32,
                ),
            };
            let mut host = unquote(&h.to_lowercase());
            if host.contains('/') {
                host = unquote(h);
            }
            (host, port)
        };
        let host = Some(match &protocol {
            Some(p) if !host.is_empty() => format!("{p}://{host}"),
            _ => host,
        });
        let schema = Some(unquote(parts.path.strip_prefix('/').unwrap_or(parts.path)));
        let extra = match parts.query.filter(|q| !q.is_empty()) {
            None => None,
            Some(q) => {
                let pairs = parse_qsl(q);
                match pairs.iter().rev().find(|(k, _)| k == EXTRA_KEY) {
                    Some((_, v)) => Some(v.clone()),
                    None => {
                        let mut m = Map::new();
                        for (k, v) in pairs {
                            let value = if v.is_empty() {
                                Value::String(v)
                            } else {
                                serde_json::from_str(&v).unwrap_or(Value::String(v))
                            };
                            m.insert(k, value);
                        }
                        Some(python_json(&Value::Object(m)))
                    }
                }
            }
        };
        Ok(Connection {
            conn_id: conn_id.to_string(),
            conn_type: Connection::normalize_type(&scheme.to_lowercase()),
            description: None,
            host,
            schema,
            login: unquote_opt(login),
            password: unquote_opt(password),
            port,
            extra,
        })
    }

    /// The URI form, exactly as Airflow's `get_uri()` prints it.
    pub fn get_uri(&self) -> String {
        let mut uri = if self.conn_type.is_empty() {
            "//".to_string()
        } else {
            format!("{}://", self.conn_type.to_lowercase().replace('_', "-"))
        };
        let (host, protocol) = match self.host.as_deref() {
            Some(h) if h.contains("://") => {
                let (p, rest) = h.split_once("://").unwrap_or(("", h));
                if p == self.conn_type {
                    (Some(h), None)
                } else {
                    (Some(rest), Some(p))
                }
            }
            other => (other, None),
        };
        if let Some(p) = protocol {
            uri.push_str(p);
            uri.push_str("://");
        }
        let mut authority = String::new();
        if let Some(l) = &self.login {
            authority.push_str(&quote(l));
        }
        if let Some(p) = &self.password {
            authority.push(':');
            authority.push_str(&quote(p));
        }
        if !authority.is_empty() {
            authority.push('@');
            uri.push_str(&authority);
        }
        let mut host_block = host
            .filter(|h| !h.is_empty())
            .map(quote)
            .unwrap_or_default();
        if let Some(port) = self.port.filter(|p| *p != 0) {
            if host_block.is_empty() && authority.is_empty() {
                host_block.push_str(&format!("@:{port}"));
            } else {
                host_block.push_str(&format!(":{port}"));
            }
        }
        let schema = self.schema.as_deref().filter(|s| !s.is_empty());
        if let Some(s) = schema {
            host_block.push('/');
            host_block.push_str(&quote(s));
        }
        uri.push_str(&host_block);
        if let Some(extra) = self.extra.as_deref().filter(|e| !e.is_empty()) {
            let sep = if schema.is_some() { "?" } else { "/?" };
            let dict = self.extra_dejson();
            let flat: Option<Vec<(&str, &str)>> = dict
                .iter()
                .map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect();
            let query = match flat {
                Some(pairs) if !pairs.is_empty() => urlencode(&pairs),
                _ => urlencode(&[(EXTRA_KEY, extra)]),
            };
            uri.push_str(sep);
            uri.push_str(&query);
        }
        uri
    }

    /// `extra` as a JSON object (empty when unset or not an object), like `extra_dejson`.
    pub fn extra_dejson(&self) -> Map<String, Value> {
        self.extra
            .as_deref()
            .and_then(|e| serde_json::from_str::<Value>(e).ok())
            .and_then(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Strings to mask wherever this connection could show up: the password, and values
    /// under sensitive keys of `extra`.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.password.iter().cloned().collect();
        sensitive_values(&Value::Object(self.extra_dejson()), &mut out);
        out
    }

    /// `host[:port]`, or the host as is when it is a list (`h1:9092,h2:9092`) or has a port.
    pub fn host_port(&self) -> Option<String> {
        let host = self.host.as_deref().filter(|h| !h.is_empty())?;
        Some(match self.port {
            Some(p) if !host.contains(',') && !host.contains(':') => format!("{host}:{p}"),
            _ => host.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
