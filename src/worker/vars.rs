//! `var` and `conn` in templates, read from the try's [`OperatorEnv`] (the environment, then
//! the database as the worker loaded it for this try):
//!
//! - `var.value.NAME`, `var.value.get('NAME', default)`;
//! - `var.json.NAME.path`, `var.json.get('NAME', default)` (the value parsed as JSON);
//! - `conn.ID.host|login|password|port|schema|conn_type|extra|extra_dejson|description`,
//!   `conn.ID.get_uri()`, `conn.get('ID')`.
//!
//! A missing variable or connection fails the render with a message naming it (as Airflow's
//! accessors raise), rather than rendering an empty string. minijinja cannot fail from an
//! attribute lookup, so a miss is recorded on the accessor and [`lookup_error`] turns the
//! resulting "undefined value" error into the named one.

use std::sync::{Arc, Mutex};

use minijinja::value::{Object, Value};
use minijinja::{Error, ErrorKind, State};

use crate::settings::{Connection, LookupError, OperatorEnv};

/// The shared state of `var` and `conn`: the try's environment and the last miss.
#[derive(Debug)]
struct Source {
    env: Arc<OperatorEnv>,
    miss: Mutex<Option<LookupError>>,
}

impl Source {
    fn record(&self, e: LookupError) {
        *self.miss.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

/// `var` (with `value` and `json`).
#[derive(Debug)]
struct Vars(Arc<Source>);

/// `var.value` or `var.json`.
#[derive(Debug)]
struct VarAccessor {
    src: Arc<Source>,
    json: bool,
}

/// `conn`.
#[derive(Debug)]
struct Conns(Arc<Source>);

/// One connection.
#[derive(Debug)]
struct ConnValue(Connection);

/// The `var` and `conn` values of a template context, in that order.
pub fn accessors(env: &Arc<OperatorEnv>) -> (Value, Value) {
    let src = Arc::new(Source {
        env: env.clone(),
        miss: Mutex::new(None),
    });
    (
        Value::from_object(Vars(src.clone())),
        Value::from_object(Conns(src)),
    )
}

/// Forgets earlier misses; call before rendering each template with `context`.
pub fn reset(context: &Value) {
    if let Some(src) = source(context) {
        *src.miss.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The variable or connection a failed render missed, if that is why it failed.
pub fn lookup_error(context: &Value) -> Option<LookupError> {
    source(context)?
        .miss
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn source(context: &Value) -> Option<Arc<Source>> {
    let var = context.get_attr("var").ok()?;
    var.downcast_object_ref::<Vars>().map(|v| v.0.clone())
}

impl VarAccessor {
    fn lookup(&self, key: &str) -> Result<Value, LookupError> {
        let text = self.src.env.variable(key)?;
        if !self.json {
            return Ok(Value::from(text));
        }
        serde_json::from_str::<serde_json::Value>(text)
            .map(|v| Value::from_serialize(&v))
            .map_err(|e| LookupError::BadVariable {
                key: key.to_string(),
                why: format!("its value is not JSON ({e}), so `var.json` cannot read it"),
            })
    }
}

impl Object for Vars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let json = match key.as_str()? {
            "value" => false,
            "json" => true,
            _ => return None,
        };
        Some(Value::from_object(VarAccessor {
            src: self.0.clone(),
            json,
        }))
    }
}

impl Object for VarAccessor {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.lookup(key.as_str()?) {
            Ok(v) => Some(v),
            Err(e) => {
                self.src.record(e);
                None
            }
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let key = args.first().and_then(|k| k.as_str()).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "var.get takes the variable's name",
            )
        })?;
        match (self.lookup(key), args.get(1)) {
            (Ok(v), _) => Ok(v),
            (Err(LookupError::MissingVariable { .. }), Some(default)) => Ok(default.clone()),
            (Err(e), _) => Err(Error::new(ErrorKind::InvalidOperation, e.to_string())),
        }
    }
}

impl Object for Conns {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let id = key.as_str()?;
        match self.0.env.connection(id) {
            Ok(c) => Some(Value::from_object(ConnValue(c.clone()))),
            Err(e) => {
                self.0.record(e);
                None
            }
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let id = args.first().and_then(|k| k.as_str()).unwrap_or_default();
        self.0
            .env
            .connection(id)
            .map(|c| Value::from_object(ConnValue(c.clone())))
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    }
}

impl Object for ConnValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let c = &self.0;
        let opt = |v: &Option<String>| v.clone().map(Value::from).unwrap_or(Value::from(()));
        Some(match key.as_str()? {
            "conn_id" => Value::from(c.conn_id.clone()),
            "conn_type" => Value::from(c.conn_type.clone()),
            "host" => opt(&c.host),
            "login" => opt(&c.login),
            "password" => opt(&c.password),
            "schema" => opt(&c.schema),
            "description" => opt(&c.description),
            "extra" => opt(&c.extra),
            "port" => c.port.map(Value::from).unwrap_or(Value::from(())),
            "extra_dejson" => Value::from_serialize(c.extra_dejson()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get_uri" => Ok(Value::from(self.0.get_uri())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.conn_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Stored;

    fn render(src: &str, env: OperatorEnv) -> Result<String, String> {
        let env = Arc::new(env);
        let (var, conn) = accessors(&env);
        let ctx = minijinja::context! { var => var, conn => conn };
        let mut jinja = minijinja::Environment::new();
        jinja.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        reset(&ctx);
        jinja.render_str(src, &ctx).map_err(|e| {
            lookup_error(&ctx)
                .map(|l| l.to_string())
                .unwrap_or(e.to_string())
        })
    }

    fn env() -> OperatorEnv {
        let mut stored = Stored::default();
        stored
            .variables
            .insert("cfg".into(), Ok(r#"{"a": {"b": 7}}"#.into()));
        stored.variables.insert("region".into(), Ok("db-eu".into()));
        stored.connections.insert(
            "pg".into(),
            Ok(
                Connection::from_uri("pg", "postgres://u:p%40ss@db:5432/app?sslmode=require")
                    .unwrap(),
            ),
        );
        let mut env = OperatorEnv {
            stored: Arc::new(stored),
            ..Default::default()
        };
        env.env_variables.insert("region".into(), "env-eu".into());
        env
    }

    #[test]
    fn variables_and_connections_in_templates() {
        let out = render(
            "{{ var.value.region }} {{ var.value.get('nope', 'd') }} {{ var.json.cfg.a.b }} \
             {{ var.json.get('cfg').a.b }} {{ conn.pg.host }}:{{ conn.pg.port }} {{ conn.pg.login }} \
             {{ conn.pg.password }} {{ conn.pg.schema }} {{ conn.pg.extra_dejson.sslmode }} {{ conn.pg.get_uri() }}",
            env(),
        )
        .unwrap();
        assert_eq!(
            out,
            "env-eu d 7 7 db:5432 u p@ss app require postgres://u:p%40ss@db:5432/app?sslmode=require"
        );
    }

    #[test]
    fn a_missing_name_fails_naming_it() {
        let e = render("x{{ var.value.nope }}", env()).unwrap_err();
        assert!(e.contains("variable `nope` is not defined"), "{e}");
        let e = render("{{ conn.missing.host }}", env()).unwrap_err();
        assert!(e.contains("connection `missing` is not defined"), "{e}");
        let e = render("{{ var.json.region }}", env()).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = render("{{ var.value.get('nope') }}", env()).unwrap_err();
        assert!(e.contains("`nope`"), "{e}");
    }
}
