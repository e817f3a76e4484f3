//! What operators are configured with: endpoints, named connections and variables, built
//! once from settings and the environment. Operators read it; nothing in it does I/O.

use std::collections::BTreeMap;

use crate::core::log::{password_of, Secrets};

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
}

impl OperatorEnv {
    /// Strings that must never appear in a log line or a page: connection passwords.
    pub fn secrets(&self) -> Secrets {
        let mut out = Vec::new();
        let urls = self
            .connections
            .values()
            .map(|c| c.uri.as_str())
            .chain(self.sink_postgres_url.as_deref())
            .chain(self.kafka_bootstrap_servers.as_deref());
        for uri in urls {
            if let Some(pw) = password_of(uri) {
                out.push(pw);
            }
        }
        Secrets::new(out)
    }
}
