//! What operators are configured with: endpoints, named connections and variables, built
//! once from settings and the environment. Operators read it; nothing in it does I/O.
//!
//! It also says what tasks must never see. A task is code the DAG author wrote (a bash
//! command), not updraft: it gets the environment the worker started with, *without*
//! updraft's own credentials ([`TaskEnv`]), so a DAG cannot reach into the metadata database,
//! and every password updraft knows of is masked in whatever a task writes ([`OperatorEnv::secrets`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::keys::{Secrecy, KEYS};
use crate::core::log::{password_of, percent_decoded, Secrets};

/// A named connection, Airflow style: from `AIRFLOW_CONN_<NAME>` / `UPDRAFT_CONN_<NAME>` as a URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub uri: String,
}

/// Endpoints and connections for operators, built once from settings.
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
    /// Named connections, lower-case names.
    pub connections: BTreeMap<String, Connection>,
    /// Airflow Variables (`AIRFLOW_VAR_<NAME>` / `UPDRAFT_VAR_<NAME>`), lower-case names.
    pub variables: BTreeMap<String, String>,
    /// updraft's own credentials: the metadata database's password (from its URL, or
    /// `PGPASSWORD`). Never in a task's environment; masked in everything a task writes.
    pub own_secrets: Vec<String>,
    /// The environment a task's processes start from.
    pub task_env: TaskEnv,
}

impl OperatorEnv {
    /// Strings that must never appear in a log line or a page: connection passwords (as
    /// written in their URLs and percent-decoded, as a program would print them) and
    /// updraft's own credentials.
    pub fn secrets(&self) -> Secrets {
        let mut out = self.own_secrets.clone();
        let urls = self
            .connections
            .values()
            .map(|c| c.uri.as_str())
            .chain(self.sink_postgres_url.as_deref())
            .chain(self.kafka_bootstrap_servers.as_deref());
        for uri in urls {
            out.extend(url_passwords(uri));
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
