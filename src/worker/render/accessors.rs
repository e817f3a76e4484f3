//! `var` and `conn`: variables and connections looked up by attribute (`var.value.x`,
//! `conn.my_db.host`), with Airflow's errors for missing ones, and the `Connection` object.

use std::any::Any;
use std::sync::Arc;

use minijinja::{Error, ErrorKind, State, Value};

use super::lookup::{ConnectionInfo, TemplateData};
use super::pyjson::loads;
use super::value::{arg, py_err, split_args, str_repr, to_str, Py, PyObject};

/// `var.value` / `var.json`.
pub struct VarAccessor {
    pub json: bool,
    pub data: Arc<dyn TemplateData>,
}

impl std::fmt::Debug for VarAccessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<VariableAccessor (dynamic access)>")
    }
}

impl VarAccessor {
    /// The variable, or `None` when it is missing (or, for `var.json`, not JSON).
    fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        let text = self.data.variable(key).map_err(|e| {
            py_err(
                "AirflowRuntimeError",
                format!("could not read variable {key}: {e}"),
            )
        })?;
        Ok(match text {
            None => None,
            Some(t) if self.json => loads(&t).ok(),
            Some(t) => Some(Value::from(t)),
        })
    }
}

fn variable_not_found(key: &str) -> Error {
    py_err(
        "AirflowRuntimeError",
        format!("VARIABLE_NOT_FOUND: {{'message': 'Variable {key} not found'}}"),
    )
}

impl PyObject for VarAccessor {
    fn class(&self) -> &'static str {
        "airflow.sdk.execution_time.context.VariableAccessor"
    }
    fn str(&self) -> String {
        "<VariableAccessor (dynamic access)>".into()
    }
    fn try_attr(&self, name: &str) -> Result<Option<Value>, Error> {
        match self.get(name)? {
            Some(v) => Ok(Some(v)),
            None => Err(variable_not_found(name)),
        }
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        if name != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (pos, kwargs) = split_args(args)?;
        let key = arg(pos, &kwargs, 0, "key")
            .map(|k| to_str(&k))
            .unwrap_or_default();
        Ok(match self.get(&key)? {
            Some(v) => v,
            None => arg(pos, &kwargs, 1, "default_var")
                .or_else(|| arg(pos, &kwargs, 1, "default"))
                .unwrap_or(Value::from("NOTSET")),
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `conn`.
pub struct ConnAccessor {
    pub data: Arc<dyn TemplateData>,
}

impl std::fmt::Debug for ConnAccessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<ConnectionAccessor (dynamic access)>")
    }
}

impl ConnAccessor {
    fn get(&self, id: &str) -> Result<Option<Value>, Error> {
        let c = self.data.connection(id).map_err(|e| {
            py_err(
                "AirflowRuntimeError",
                format!("could not read connection {id}: {e}"),
            )
        })?;
        Ok(c.map(|info| Py::value(ConnObj(info))))
    }
}

impl PyObject for ConnAccessor {
    fn class(&self) -> &'static str {
        "airflow.sdk.execution_time.context.ConnectionAccessor"
    }
    fn str(&self) -> String {
        "<ConnectionAccessor (dynamic access)>".into()
    }
    fn try_attr(&self, name: &str) -> Result<Option<Value>, Error> {
        match self.get(name)? {
            Some(c) => Ok(Some(c)),
            None => Err(py_err(
                "AirflowNotFoundException",
                format!("The conn_id `{name}` isn't defined"),
            )),
        }
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        if name != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (pos, kwargs) = split_args(args)?;
        let id = arg(pos, &kwargs, 0, "conn_id")
            .map(|k| to_str(&k))
            .unwrap_or_default();
        Ok(match self.get(&id)? {
            Some(c) => c,
            None => arg(pos, &kwargs, 1, "default_conn").unwrap_or(Value::from(())),
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A connection (`conn.my_id`).
#[derive(Debug)]
struct ConnObj(ConnectionInfo);

fn opt_repr(out: &mut String, v: &Option<String>) {
    match v {
        Some(s) => str_repr(out, s),
        None => out.push_str("None"),
    }
}

impl ConnObj {
    fn extra_dejson(&self) -> Value {
        self.0
            .extra
            .as_deref()
            .and_then(|e| loads(e).ok())
            .filter(|v| v.kind() == minijinja::value::ValueKind::Map)
            .unwrap_or_else(|| Value::from_iter(Vec::<(String, Value)>::new()))
    }

    /// Airflow's `Connection.get_uri()`.
    fn get_uri(&self) -> String {
        use super::textfilters::quote;
        let c = &self.0;
        let conn_type = c
            .conn_type
            .as_deref()
            .map(|t| t.to_lowercase().replace('_', "-"))
            .unwrap_or_default();
        let mut uri = if conn_type.is_empty() {
            "//".to_string()
        } else {
            format!("{conn_type}://")
        };
        let mut authority = String::new();
        if let Some(l) = &c.login {
            authority.push_str(&quote(l, ""));
        }
        if let Some(p) = &c.password {
            authority.push(':');
            authority.push_str(&quote(p, ""));
        }
        if !authority.is_empty() {
            authority.push('@');
            uri.push_str(&authority);
        }
        let mut host = String::new();
        if let Some(h) = c.host.as_deref().filter(|h| !h.is_empty()) {
            host.push_str(&quote(h, ""));
        }
        if let Some(port) = c.port.filter(|p| *p != 0) {
            if host.is_empty() && authority.is_empty() {
                host.push_str(&format!("@:{port}"));
            } else {
                host.push_str(&format!(":{port}"));
            }
        }
        let schema = c.schema.as_deref().filter(|s| !s.is_empty());
        if let Some(s) = schema {
            host.push('/');
            host.push_str(&quote(s, ""));
        }
        uri.push_str(&host);
        if let Some(extra) = c.extra.as_deref().filter(|e| !e.is_empty()) {
            let sep = if schema.is_some() { "?" } else { "/?" };
            let plus = |s: &str| quote(s, "").replace("%20", "+");
            let parsed: Option<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_str(extra).ok();
            let all_strings = parsed
                .as_ref()
                .filter(|m| !m.is_empty() && m.values().all(|v| v.is_string()));
            match all_strings {
                Some(m) => {
                    let q: Vec<String> = m
                        .iter()
                        .map(|(k, v)| {
                            format!("{}={}", plus(k), plus(v.as_str().unwrap_or_default()))
                        })
                        .collect();
                    uri.push_str(&format!("{sep}{}", q.join("&")));
                }
                None => uri.push_str(&format!("{sep}__extra__={}", plus(extra))),
            }
        }
        uri
    }
}

impl PyObject for ConnObj {
    fn class(&self) -> &'static str {
        "airflow.sdk.definitions.connection.Connection"
    }
    fn type_name(&self) -> &'static str {
        "Connection"
    }
    fn str(&self) -> String {
        let c = &self.0;
        let mut s = String::from("Connection(conn_id=");
        str_repr(&mut s, &c.conn_id);
        for (name, v) in [
            ("conn_type", &c.conn_type),
            ("description", &c.description),
            ("host", &c.host),
            ("schema", &c.schema),
            ("login", &c.login),
            ("password", &c.password),
        ] {
            s.push_str(&format!(", {name}="));
            opt_repr(&mut s, v);
        }
        s.push_str(&format!(
            ", port={}, extra=",
            c.port.map_or("None".to_string(), |p| p.to_string())
        ));
        opt_repr(&mut s, &c.extra);
        s.push(')');
        s
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let c = &self.0;
        Some(match name {
            "conn_id" => Value::from(c.conn_id.as_str()),
            "conn_type" => Value::from(c.conn_type.clone()),
            "description" => Value::from(c.description.clone()),
            "host" => Value::from(c.host.clone()),
            "schema" => Value::from(c.schema.clone()),
            "login" => Value::from(c.login.clone()),
            "password" => Value::from(c.password.clone()),
            "port" => Value::from(c.port),
            "extra" => Value::from(c.extra.clone()),
            "extra_dejson" => self.extra_dejson(),
            _ => return None,
        })
    }
    fn call_method(&self, _state: &State, name: &str, _args: &[Value]) -> Result<Value, Error> {
        match name {
            "get_uri" => Ok(Value::from(self.get_uri())),
            "get_extra_dejson" => Ok(self.extra_dejson()),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
