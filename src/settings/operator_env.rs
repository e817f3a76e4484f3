//! What operators and templates are configured with: endpoints from settings, connections
//! and variables from the environment (`AIRFLOW_CONN_*`, `AIRFLOW_VAR_*`) and from the
//! metadata database ([`Stored`], read by the worker for each try). Nothing here does I/O.
//!
//! Lookup follows Airflow's order: the environment first, then the database. An environment
//! name is matched case-insensitively (Airflow upper-cases the id to build the variable's
//! name); a database id exactly.
//!
//! It also says what tasks must never see. A task is code the DAG author wrote (a bash
//! command), not updraft: it gets the environment the worker started with, *without*
//! updraft's own credentials ([`TaskEnv`]), so a DAG cannot reach into the metadata database,
//! and every password updraft knows of is masked in whatever a task writes ([`OperatorEnv::secrets`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::keys::{Secrecy, KEYS};
pub use crate::core::connection::Connection;
use crate::core::connection::{is_sensitive_name, sensitive_values};
use crate::core::log::{password_of, percent_decoded, Secrets};

/// A value from the database, or why it cannot be read (e.g. encrypted with another key).
pub type StoredValue<T> = Result<T, String>;

/// Connections and variables from the metadata database, as one try sees them.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// Moves whenever a connection or variable changes (a worker reloads when it does).
    pub generation: i64,
    pub connections: BTreeMap<String, StoredValue<Connection>>,
    pub variables: BTreeMap<String, StoredValue<String>>,
}

/// Why a connection or variable cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("connection `{id}` is not defined: create it in the UI (Admin → Connections), with `updraft connections add {id} --conn-uri ...` or the API, or set AIRFLOW_CONN_{env}")]
    MissingConnection { id: String, env: String },
    #[error("variable `{key}` is not defined: create it in the UI (Admin → Variables), with `updraft variables set {key} VALUE` or the API, or set AIRFLOW_VAR_{env}")]
    MissingVariable { key: String, env: String },
    #[error("connection `{id}` cannot be used: {why}")]
    BadConnection { id: String, why: String },
    #[error("variable `{key}` cannot be read: {why}")]
    BadVariable { key: String, why: String },
}

/// Endpoints, connections and variables for operators and templates.
#[derive(Clone, Debug, Default)]
pub struct OperatorEnv {
    /// `KAFKA_BOOTSTRAP_SERVERS`; `None` in standalone means the embedded broker.
    pub kafka_bootstrap_servers: Option<String>,
    /// `DATASOURCE_URL`: overrides the fetch operator's default URL.
    pub datasource_url: Option<String>,
    /// The Postgres URL the sink uses when its target is Postgres and nothing else is set.
    pub sink_postgres_url: Option<String>,
    /// `CASSANDRA_CONTACT_POINTS`, comma-separated host:port.
    pub cassandra_contact_points: Option<String>,
    /// `AIRFLOW_CONN_<ID>` / `UPDRAFT_CONN_<ID>` by lower-case id (a value that does not
    /// parse is kept as its error, reported when the connection is used).
    pub env_connections: BTreeMap<String, StoredValue<Connection>>,
    /// `AIRFLOW_VAR_<KEY>` / `UPDRAFT_VAR_<KEY>` by lower-case key.
    pub env_variables: BTreeMap<String, String>,
    /// From the database, for this try (empty where no database is read, e.g. unit tests).
    pub stored: Arc<Stored>,
    /// updraft's own credentials: the metadata database's password (from its URL, or
    /// `PGPASSWORD`). Never in a task's environment; masked in everything a task writes.
    pub own_secrets: Vec<String>,
    /// The environment a task's processes start from.
    pub task_env: TaskEnv,
}

impl OperatorEnv {
    /// Adds an environment connection (tests and settings).
    pub fn set_env_connection(&mut self, id: &str, value: &str) {
        let parsed = Connection::from_env_value(id, value).map_err(|e| e.to_string());
        self.env_connections.insert(id.to_lowercase(), parsed);
    }

    /// The connection `id`: the environment's, else the database's.
    pub fn connection(&self, id: &str) -> Result<&Connection, LookupError> {
        let found = self
            .env_connections
            .get(&id.to_lowercase())
            .or_else(|| self.stored.connections.get(id));
        match found {
            Some(Ok(c)) => Ok(c),
            Some(Err(why)) => Err(LookupError::BadConnection {
                id: id.to_string(),
                why: why.clone(),
            }),
            None => Err(LookupError::MissingConnection {
                id: id.to_string(),
                env: id.to_uppercase(),
            }),
        }
    }

    /// Whether a connection `id` is defined anywhere (even if unreadable).
    pub fn has_connection(&self, id: &str) -> bool {
        self.env_connections.contains_key(&id.to_lowercase())
            || self.stored.connections.contains_key(id)
    }

    /// The variable `key`: the environment's, else the database's.
    pub fn variable(&self, key: &str) -> Result<&str, LookupError> {
        if let Some(v) = self.env_variables.get(&key.to_lowercase()) {
            return Ok(v);
        }
        match self.stored.variables.get(key) {
            Some(Ok(v)) => Ok(v),
            Some(Err(why)) => Err(LookupError::BadVariable {
                key: key.to_string(),
                why: why.clone(),
            }),
            None => Err(LookupError::MissingVariable {
                key: key.to_string(),
                env: key.to_uppercase(),
            }),
        }
    }

    /// Strings that must never appear in a log line or a page: every connection password
    /// (environment and database), values under sensitive keys of their extras, and the
    /// values of variables whose names look sensitive (Airflow's list), also inside JSON.
    pub fn secrets(&self) -> Secrets {
        let mut out = self.own_secrets.clone();
        for uri in [&self.sink_postgres_url, &self.kafka_bootstrap_servers]
            .into_iter()
            .flatten()
        {
            out.extend(url_passwords(uri));
        }
        let conns = self
            .env_connections
            .values()
            .chain(self.stored.connections.values());
        for c in conns.flatten() {
            out.extend(c.secrets());
        }
        let vars = self.env_variables.iter().chain(
            self.stored
                .variables
                .iter()
                .filter_map(|(k, v)| v.as_ref().ok().map(|v| (k, v))),
        );
        for (key, value) in vars {
            if is_sensitive_name(key) {
                out.push(value.clone());
            }
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(value) {
                sensitive_values(&json, &mut out);
            }
        }
        Secrets::new(out)
    }
}

/// The password in `uri`, as written and percent-decoded (when they differ).
pub fn url_passwords(uri: &str) -> Vec<String> {
    let Some(pw) = password_of(uri) else {
        return Vec::new();
    };
    match percent_decoded(&pw) {
        Some(decoded) if decoded != pw => vec![pw, decoded],
        _ => vec![pw],
    }
}

/// Environment variables that hold updraft's own credentials, by name: the metadata
/// database's URL, libpq's `PGPASSWORD` (which sqlx reads for it), and every secret setting.
pub fn own_variables() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .filter(|k| k.secrecy == Secrecy::Secret || k.key == "database.url")
        .map(|k| k.env)
        .chain(["PGPASSWORD"])
}

/// The environment a task's processes start from: the one this process was started with,
/// captured once with the settings, minus updraft's own variables ([`own_variables`]) and
/// minus any variable whose value contains one of updraft's own secrets (a copy of the
/// database URL under another name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskEnv(Option<Arc<[(String, String)]>>);

impl TaskEnv {
    pub fn capture(env: &[(String, String)], own_secrets: &[String]) -> TaskEnv {
        let own: Vec<&str> = own_variables().collect();
        let kept: Vec<(String, String)> = env
            .iter()
            .filter(|(k, v)| {
                !own.contains(&k.as_str())
                    && !own_secrets
                        .iter()
                        .any(|s| !s.is_empty() && v.contains(s.as_str()))
            })
            .cloned()
            .collect();
        TaskEnv(Some(kept.into()))
    }

    /// The variables; `None` when no environment was captured (settings built in code, as
    /// tests do), in which case a task inherits this process's environment minus
    /// [`own_variables`].
    pub fn vars(&self) -> Option<&[(String, String)]> {
        self.0.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_over_the_database() {
        let mut stored = Stored::default();
        let db = |id: &str, host: &str| {
            Ok(Connection {
                conn_id: id.into(),
                conn_type: "http".into(),
                host: Some(host.into()),
                password: Some("db-pw".into()),
                ..Default::default()
            })
        };
        stored
            .connections
            .insert("api".into(), db("api", "from-db"));
        stored
            .connections
            .insert("Only_DB".into(), db("Only_DB", "db2"));
        stored.variables.insert("region".into(), Ok("db".into()));
        stored
            .variables
            .insert("api_key".into(), Ok("key-from-db".into()));
        stored
            .variables
            .insert("broken".into(), Err("wrong key".into()));
        let mut env = OperatorEnv {
            stored: Arc::new(stored),
            ..Default::default()
        };
        env.set_env_connection("API", "http://env-user:env-pw@from-env");
        env.env_variables.insert("region".into(), "env".into());
        assert_eq!(
            env.connection("api").unwrap().host.as_deref(),
            Some("from-env")
        );
        assert_eq!(
            env.connection("Only_DB").unwrap().host.as_deref(),
            Some("db2")
        );
        assert!(matches!(
            env.connection("only_db"),
            Err(LookupError::MissingConnection { .. })
        ));
        assert_eq!(env.variable("REGION").unwrap(), "env");
        let err = env.variable("nope").unwrap_err().to_string();
        assert!(
            err.contains("`nope`") && err.contains("AIRFLOW_VAR_NOPE"),
            "{err}"
        );
        assert!(env
            .variable("broken")
            .unwrap_err()
            .to_string()
            .contains("wrong key"));
        let secrets = env.secrets();
        let secrets: Vec<&str> = secrets.iter().collect();
        assert_eq!(secrets, vec!["key-from-db", "env-pw", "db-pw"]);
    }
}
