//! Configuration. Built once at start-up from the command line and the environment (in
//! `main`), then passed explicitly; library code never reads environment variables.

use std::path::PathBuf;

use crate::dag::Duration;
use crate::operators::context::{Connection, OperatorEnv};

/// Tunables of the scheduler and worker loops.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub dags_folder: PathBuf,
    /// Whether the scheduler keeps the database in step with `dags_folder`. Off for
    /// `dags test` (it stores its one DAG itself) and for tests that install DAGs directly.
    pub process_dags_folder: bool,
    /// Concurrent task slots per worker process.
    pub worker_slots: usize,
    /// How long a claimed task stays leased without a heartbeat.
    pub lease_ttl: Duration,
    /// Fallback polling interval; NOTIFY is the main wake-up path.
    pub poll_interval: Duration,
    /// Grace period for running tasks at shutdown.
    pub shutdown_grace: Duration,
    /// Airflow's `[scheduler] create_cron_data_intervals`: `false` (Airflow 3's default) makes a
    /// cron run's logical date its trigger time with an empty data interval; `true` gives the
    /// classic interval semantics (logical date = interval start, run after interval end).
    pub create_cron_data_intervals: bool,
    pub operator_env: OperatorEnv,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            dags_folder: PathBuf::from("dags"),
            process_dags_folder: true,
            worker_slots: 32,
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            create_cron_data_intervals: false,
            operator_env: OperatorEnv::default(),
        }
    }
}

/// Builds the operator environment from environment variables (passed in, so tests can use
/// their own): `KAFKA_BOOTSTRAP_SERVERS`, `DATASOURCE_URL`, `SINK_POSTGRES_URL`,
/// `CASSANDRA_CONTACT_POINTS`, `AIRFLOW_CONN_*`/`UPDRAFT_CONN_*`, `AIRFLOW_VAR_*`/`UPDRAFT_VAR_*`.
pub fn operator_env_from(vars: impl IntoIterator<Item = (String, String)>) -> OperatorEnv {
    let mut env = OperatorEnv::default();
    for (key, value) in vars {
        let nonempty = (!value.trim().is_empty()).then(|| value.clone());
        match key.as_str() {
            "KAFKA_BOOTSTRAP_SERVERS" => env.kafka_bootstrap_servers = nonempty,
            "DATASOURCE_URL" => env.datasource_url = nonempty,
            "SINK_POSTGRES_URL" => env.sink_postgres_url = nonempty,
            "CASSANDRA_CONTACT_POINTS" => env.cassandra_contact_points = nonempty,
            _ => {
                if let Some(name) = key
                    .strip_prefix("AIRFLOW_CONN_")
                    .or_else(|| key.strip_prefix("UPDRAFT_CONN_"))
                {
                    env.connections
                        .insert(name.to_lowercase(), Connection { uri: value });
                } else if let Some(name) = key
                    .strip_prefix("AIRFLOW_VAR_")
                    .or_else(|| key.strip_prefix("UPDRAFT_VAR_"))
                {
                    env.variables.insert(name.to_lowercase(), value);
                }
            }
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_connections_and_variables() {
        let env = operator_env_from([
            ("KAFKA_BOOTSTRAP_SERVERS".to_string(), "k:9092".to_string()),
            (
                "AIRFLOW_CONN_SINK_PG".to_string(),
                "postgres://u:p@h/db".to_string(),
            ),
            ("UPDRAFT_VAR_REGION".to_string(), "eu".to_string()),
            ("DATASOURCE_URL".to_string(), " ".to_string()),
        ]);
        assert_eq!(env.kafka_bootstrap_servers.as_deref(), Some("k:9092"));
        assert_eq!(env.connections["sink_pg"].uri, "postgres://u:p@h/db");
        assert_eq!(env.variables["region"], "eu");
        assert_eq!(env.datasource_url, None);
        assert_eq!(env.secrets(), vec!["p".to_string()]);
    }
}
