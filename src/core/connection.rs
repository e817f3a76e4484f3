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

struct UrlParts<'a> {
    netloc: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

/// `scheme://...` → the scheme, when it is a valid one (letters, digits, `+-.`).
fn split_scheme(uri: &str) -> Option<(&str, &str)> {
    let (s, rest) = uri.split_once("://")?;
    let mut chars = s.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((s, rest))
}

/// Python's `urlsplit` of `//netloc/path?query#fragment`.
fn split_url(s: &str) -> UrlParts<'_> {
    let s = s.split('#').next().unwrap_or("");
    let s = s.strip_prefix("//").unwrap_or(s);
    let end = s.find(['/', '?']).unwrap_or(s.len());
    let (netloc, rest) = s.split_at(end);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    UrlParts {
        netloc,
        path,
        query,
    }
}

/// `host:port`, `[v6]:port` or `host`.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':'));
        }
    }
    match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

/// Percent-decoding (`%41` → `A`), as Python's `unquote`.
pub fn unquote(s: &str) -> String {
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

/// Python's `parse_qsl(q, keep_blank_values=True)`: `+` is a space, then percent-decoding.
fn parse_qsl(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unquote(&k.replace('+', " ")), unquote(&v.replace('+', " ")))
        })
        .collect()
}

/// Python's `quote(s, safe='')`: everything but `A-Za-z0-9_.-~` percent-encoded.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Python's `urlencode`: `quote_plus` of each key and value.
fn urlencode(pairs: &[(&str, &str)]) -> String {
    let plus = |s: &str| quote(s).replace("%20", "+");
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", plus(k), plus(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// JSON as Python's `json.dumps` writes it (`", "` and `": "` separators, non-ASCII
/// escaped), so an extra parsed from a URI is stored byte for byte as Airflow stores it.
pub fn python_json(v: &Value) -> String {
    fn string(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    string(k, out);
                    out.push_str(": ");
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(v, out);
                }
                out.push(']');
            }
            Value::String(s) => string(s, out),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URIs parsed and printed by Airflow 3.3.2 itself
    /// (`scripts/airflow-fixtures/connections.py`).
    #[test]
    fn matches_airflow_on_its_own_fixtures() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/airflow/connections.json");
        let cases: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(cases.len() >= 10);
        for case in cases {
            let uri = case["uri"].as_str().unwrap();
            let want = &case["parsed"];
            let got = Connection::from_uri("c", uri).unwrap();
            let field = |k: &str| want[k].as_str().map(str::to_string);
            assert_eq!(got.conn_type, want["conn_type"].as_str().unwrap(), "{uri}");
            assert_eq!(got.host, field("host"), "{uri}");
            assert_eq!(got.schema, field("schema"), "{uri}");
            assert_eq!(got.login, field("login"), "{uri}");
            assert_eq!(got.password, field("password"), "{uri}");
            assert_eq!(got.port, want["port"].as_i64().map(|p| p as i32), "{uri}");
            assert_eq!(
                Value::Object(got.extra_dejson()),
                want["extra_dejson"],
                "{uri}"
            );
            assert_eq!(got.get_uri(), case["get_uri"].as_str().unwrap(), "{uri}");
        }
    }

    #[test]
    fn multi_host_and_json_forms() {
        let k = Connection::from_uri("k", "kafka://k1:9092,k2:9092").unwrap();
        assert_eq!(k.host.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(k.host_port().as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(k.port, None);
        let j = Connection::from_env_value(
            "pg",
            r#"{"conn_type": "postgresql", "host": "db", "port": "5432", "password": "pw", "extra": {"sslmode": "require", "api_token": "t0k3n"}}"#,
        )
        .unwrap();
        assert_eq!(j.conn_type, "postgres");
        assert_eq!(j.port, Some(5432));
        assert_eq!(j.extra_dejson()["sslmode"], "require");
        assert_eq!(j.secrets(), vec!["pw".to_string(), "t0k3n".to_string()]);
        assert!(Connection::from_json("x", r#"{"conn_type": "http", "colour": "red"}"#).is_err());
        assert!(Connection::from_uri("x", "nohost").is_err());
        assert!(Connection::from_uri("x", "http://h:notaport").is_err());
    }

    #[test]
    fn sensitive_names_follow_airflow() {
        for n in [
            "password",
            "API_KEY",
            "my-secret-thing",
            "github token",
            "Authorization",
        ] {
            assert!(is_sensitive_name(n), "{n}");
        }
        for n in ["region", "kafka_address", "host"] {
            assert!(!is_sensitive_name(n), "{n}");
        }
        let v = serde_json::json!({"a": 1, "nested": {"password": "p", "x": ["y"]}});
        assert_eq!(
            redact(&v),
            serde_json::json!({"a": 1, "nested": {"password": "***", "x": ["y"]}})
        );
        assert!(Connection::check_id("my.conn-1_x").is_ok());
        assert!(Connection::check_id("no spaces").is_err());
    }
}
