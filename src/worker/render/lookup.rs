//! What a template can look up while it renders: variables (`var`), connections (`conn`) and
//! XComs (`ti.xcom_pull`). [`TemplateData`] is the seam: the worker answers from the
//! environment (`AIRFLOW_VAR_*`, `AIRFLOW_CONN_*`) and the database; tests answer from
//! fixtures; a database-backed store of variables and connections plugs in by implementing
//! it. Calls come from the rendering thread, never from the async runtime, so an
//! implementation may block (e.g. `Handle::block_on` a query).

use chrono::{DateTime, Utc};

/// A lookup that could not be answered (the database was unreachable, ...). Not "missing":
/// that is `Ok(None)`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// An XCom query, as `ti.xcom_pull` asks it for one key and some tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct XComQuery {
    pub dag_id: String,
    /// The run asking; with `include_prior_dates`, runs whose logical date is at or before
    /// `logical_date` count too.
    pub run_id: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub task_ids: Vec<String>,
    pub key: String,
    pub include_prior_dates: bool,
}

/// One XCom value found: its task and value. For one task the newest run comes first.
pub type XComHit = (String, serde_json::Value);

/// The data a render reads.
pub trait TemplateData: Send + Sync {
    /// A variable's text (`None`: no such variable).
    fn variable(&self, key: &str) -> Result<Option<String>, LookupError>;
    fn connection(&self, conn_id: &str) -> Result<Option<ConnectionInfo>, LookupError>;
    fn xcoms(&self, query: &XComQuery) -> Result<Vec<XComHit>, LookupError>;
}

/// A connection's fields, as Airflow's `Connection` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub conn_id: String,
    pub conn_type: Option<String>,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i64>,
    /// The `extra` JSON text.
    pub extra: Option<String>,
}

/// Percent-decoding (`%40` → `@`), as `urllib.parse.unquote`.
pub fn unquote(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `urllib.parse.parse_qsl(query, keep_blank_values=True)`.
pub fn parse_qsl(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unquote(k, true), unquote(v, true))
        })
        .collect()
}

impl ConnectionInfo {
    /// An `AIRFLOW_CONN_<ID>` value: Airflow's URI form or its JSON form.
    pub fn from_env(conn_id: &str, value: &str) -> Result<ConnectionInfo, String> {
        let t = value.trim();
        if t.starts_with('{') {
            return Self::from_json(conn_id, t);
        }
        Self::from_uri(conn_id, t)
    }

    fn from_json(conn_id: &str, text: &str) -> Result<ConnectionInfo, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("connection `{conn_id}`: {e}"))?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let extra = match v.get("extra") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(python_json(other)),
        };
        Ok(ConnectionInfo {
            conn_id: conn_id.to_string(),
            conn_type: s("conn_type"),
            description: s("description"),
            host: s("host"),
            schema: s("schema"),
            login: s("login"),
            password: s("password"),
            port: v.get("port").and_then(|p| {
                p.as_i64()
                    .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
            }),
            extra,
        })
    }

    fn from_uri(conn_id: &str, uri: &str) -> Result<ConnectionInfo, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| format!("connection `{conn_id}` is not a URI (`type://...`) or JSON"))?;
        let conn_type = match scheme.replace('-', "_").as_str() {
            "postgresql" => "postgres".to_string(),
            other => other.to_string(),
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i + 1..]),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (login, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((l, p)) => (Some(unquote(l, false)), Some(unquote(p, false))),
                None => (Some(unquote(u, false)), None),
            },
            None => (None, None),
        };
        let (host, port) =
            match hostport.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                    h,
                    Some(p.parse::<i64>().map_err(|_| {
                        format!("connection `{conn_id}`: port `{p}` is not a number")
                    })?),
                ),
                _ => (hostport, None),
            };
        let host = unquote(host, false).to_lowercase();
        let pairs = parse_qsl(query);
        let extra = if pairs.is_empty() {
            None
        } else if let Some((_, e)) = pairs.iter().find(|(k, _)| k == "__extra__") {
            Some(e.clone())
        } else {
            let map: serde_json::Map<String, serde_json::Value> = pairs
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            Some(python_json(&serde_json::Value::Object(map)))
        };
        Ok(ConnectionInfo {
            conn_id: conn_id.to_string(),
            conn_type: Some(conn_type),
            description: None,
            host: (!host.is_empty()).then_some(host),
            schema: Some(unquote(path, false)),
            login,
            password,
            port,
            extra,
        })
    }
}

/// `json.dumps` with Python's separators (`{"a": 1, "b": [1, 2]}`), for `extra`.
pub fn python_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        serde_json::Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    serde_json::Value::String(k.clone()),
                    python_json(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_json_forms() {
        let c = ConnectionInfo::from_env(
            "pg_main",
            "postgres://user%40x:p%40ss%2Fw@db.example.com:5432/analytics?application_name=updraft&sslmode=require",
        )
        .unwrap();
        assert_eq!(c.login.as_deref(), Some("user@x"));
        assert_eq!(c.password.as_deref(), Some("p@ss/w"));
        assert_eq!(c.port, Some(5432));
        assert_eq!(c.schema.as_deref(), Some("analytics"));
        assert_eq!(
            c.extra.as_deref(),
            Some(r#"{"application_name": "updraft", "sslmode": "require"}"#)
        );
        let j = ConnectionInfo::from_env(
            "h",
            r#"{"conn_type": "http", "extra": {"timeout": 30, "verify": false}, "host": "api.example.com", "port": 443}"#,
        )
        .unwrap();
        assert_eq!(
            j.extra.as_deref(),
            Some(r#"{"timeout": 30, "verify": false}"#)
        );
        assert_eq!(j.port, Some(443));
    }
}
