//! Settings: one typed value, loaded once when a command starts, from four layers, each
//! overriding the one before: defaults < the config file (`updraft.toml`) < environment
//! variables < command-line flags. Nothing else reads the environment; every part of updraft
//! gets what it needs from here, passed explicitly.
//!
//! - [`keys`]: every setting's key, environment variable, flag, meaning and secrecy, in one
//!   table that `updraft config list` and the README's table are made from.
//! - [`load`]: the layering (figment), and errors that name the file, key and line.
//! - [`operator_env`]: what operators are configured with (endpoints, connections).

pub mod keys;
mod load;
mod operator_env;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::Duration;
pub use load::{Flags, Origin, SettingsError, Sources};
pub use operator_env::{
    own_variables, url_passwords, Connection, LookupError, OperatorEnv, Stored, StoredValue,
    TaskEnv,
};

/// Every setting, by section as in `updraft.toml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub core: Core,
    pub database: Database,
    pub scheduler: Scheduler,
    pub worker: Worker,
    pub webserver: Webserver,
    pub operators: Operators,
    pub logging: Logging,
    /// Named connections and variables from `AIRFLOW_CONN_*` / `AIRFLOW_VAR_*` (and the
    /// `UPDRAFT_` spellings): dynamic names, so not settings keys of their own.
    #[serde(skip)]
    pub env_connections: BTreeMap<String, StoredValue<Connection>>,
    #[serde(skip)]
    pub env_variables: BTreeMap<String, String>,
    /// Where each key's value came from; filled by [`Settings::load`].
    #[serde(skip)]
    pub origins: BTreeMap<String, Origin>,
    /// The config file these settings read, or would have read (it need not exist).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// updraft's own credentials found when loading (the metadata database's password from
    /// `database.url`, `PGPASSWORD`): kept from tasks and masked in what they write.
    #[serde(skip)]
    pub own_secrets: Vec<String>,
    /// The environment tasks start from: this process's, captured when loading, without
    /// updraft's own credentials.
    #[serde(skip)]
    pub task_env: TaskEnv,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Core {
    /// The folder of DAG files.
    pub dags_folder: PathBuf,
    /// Where standalone keeps its state (private Postgres cluster, generated password, the
    /// database URL other commands find, the default config file).
    pub home: PathBuf,
    /// Fernet key(s), comma-separated, newest first, that encrypt stored secrets.
    pub fernet_key: Option<String>,
    /// Whether `POST /api/v2/connections/test` may test connections (Airflow's
    /// `[core] test_connection`, off by default: a test reaches out from the server).
    pub test_connection: bool,
    /// A DAG file (or `$f` file) bigger than this is an import error instead of being read.
    pub dag_file_max_bytes: u64,
}

impl Default for Core {
    fn default() -> Self {
        Core {
            dags_folder: PathBuf::from("./dags"),
            home: PathBuf::from(".updraft"),
            fernet_key: None,
            test_connection: false,
            dag_file_max_bytes: 4 << 20,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// The metadata database; `None` lets standalone (and commands beside it) pick one.
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scheduler {
    pub poll_interval: Duration,
    pub create_cron_data_intervals: bool,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            poll_interval: Duration::from_secs(1),
            create_cron_data_intervals: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worker {
    pub slots: usize,
    /// How many of the slots may run commands in processes of their own (`bash`) at once;
    /// `None`: four per core.
    pub process_slots: Option<usize>,
    pub lease_ttl: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            slots: 32,
            process_slots: None,
            lease_ttl: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webserver {
    pub host: IpAddr,
    pub port: u16,
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    pub token_ttl: Duration,
}

impl Default for Webserver {
    fn default() -> Self {
        Webserver {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            token_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Operators {
    pub kafka_bootstrap_servers: Option<String>,
    pub datasource_url: Option<String>,
    pub sink_postgres_url: Option<String>,
    pub cassandra_contact_points: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    /// A `tracing` env-filter, e.g. `info,sqlx=warn` or `debug`.
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info,sqlx=warn".into(),
        }
    }
}

impl Settings {
    /// The settings of this process: defaults, then the config file, then `env`, then flags.
    pub fn load(sources: Sources) -> Result<Settings, SettingsError> {
        load::load(sources)
    }

    /// The file standalone writes its database URL to, for the commands beside it.
    pub fn database_url_file(&self) -> PathBuf {
        self.core.home.join("database_url")
    }

    /// The metadata database: the configured URL, else the one a running standalone wrote.
    pub fn database_url_or_standalone(&self) -> Option<String> {
        self.database.url.clone().or_else(|| {
            std::fs::read_to_string(self.database_url_file())
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
    }

    /// The file standalone generates a Fernet key into when none is configured.
    pub fn fernet_key_file(&self) -> PathBuf {
        self.core.home.join("fernet_key")
    }

    /// The Fernet key(s): the configured ones, else the key a standalone on this machine
    /// generated (so commands beside it read what it stored).
    pub fn fernet_key_or_standalone(&self) -> Option<String> {
        self.core
            .fernet_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string(self.fernet_key_file())
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
    }

    /// What this process stores and reads secrets with (see [`crate::core::fernet`]).
    pub fn vault(&self) -> Result<crate::core::fernet::Vault, crate::core::fernet::KeyError> {
        crate::core::fernet::Vault::from_setting(self.fernet_key_or_standalone().as_deref())
    }

    /// What the scheduler and worker loops run with.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            dags_folder: self.core.dags_folder.clone(),
            dag_file_max_bytes: self.core.dag_file_max_bytes,
            process_dags_folder: true,
            worker_slots: self.worker.slots.max(1),
            worker_process_slots: self
                .worker
                .process_slots
                .unwrap_or_else(|| 4 * std::thread::available_parallelism().map_or(2, |n| n.get()))
                .max(1),
            lease_ttl: self.worker.lease_ttl,
            poll_interval: self.scheduler.poll_interval,
            shutdown_grace: self.worker.shutdown_grace,
            create_cron_data_intervals: self.scheduler.create_cron_data_intervals,
            operator_env: self.operator_env(),
            vault: self.vault().unwrap_or_default(),
        }
    }

    /// What operators are configured with.
    pub fn operator_env(&self) -> OperatorEnv {
        // The database standalone chose (read from its file) may differ from the setting.
        let mut own_secrets = self.own_secrets.clone();
        if let Some(url) = self.database_url_or_standalone() {
            own_secrets.extend(url_passwords(&url));
        }
        OperatorEnv {
            kafka_bootstrap_servers: self.operators.kafka_bootstrap_servers.clone(),
            datasource_url: self.operators.datasource_url.clone(),
            sink_postgres_url: self.operators.sink_postgres_url.clone(),
            cassandra_contact_points: self.operators.cassandra_contact_points.clone(),
            env_connections: self.env_connections.clone(),
            env_variables: self.env_variables.clone(),
            stored: Default::default(),
            own_secrets,
            task_env: self.task_env.clone(),
        }
    }
}

/// This machine's name, as workers and schedulers record it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Tunables of the scheduler and worker loops.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub dags_folder: PathBuf,
    /// Files in `dags_folder` bigger than this are import errors.
    pub dag_file_max_bytes: u64,
    /// Whether the scheduler keeps the database in step with `dags_folder`. Off for
    /// `dags test` (it stores its one DAG itself) and for tests that install DAGs directly.
    pub process_dags_folder: bool,
    /// Concurrent task slots per worker process.
    pub worker_slots: usize,
    /// Of those, how many may run commands in processes of their own at once.
    pub worker_process_slots: usize,
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
    /// Decrypts stored connections and variables for tries.
    pub vault: crate::core::fernet::Vault,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Settings::default().engine()
    }
}
