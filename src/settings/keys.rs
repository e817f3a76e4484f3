//! Every setting in one table: its key in `updraft.toml`, its environment variable, its
//! command-line flag, whether it is secret, and what it means. `updraft config list` and the
//! README's settings table are made from it, and a test keeps the README in step.

use super::{Origin, Settings};
use crate::core::log::{mask_uri, MASK};

/// How a value is shown by `config list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrecy {
    Public,
    /// A URL that may carry a password: the password is masked.
    Url,
    /// Never shown.
    Secret,
}

/// How an environment variable's text becomes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
}

/// One setting.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// `section.name`, as in `updraft.toml`.
    pub key: &'static str,
    pub env: &'static str,
    /// The command-line flag, for settings that have one.
    pub flag: Option<&'static str>,
    pub kind: Kind,
    pub secrecy: Secrecy,
    /// The default as the README states it, when the value itself depends on the machine.
    pub default_doc: Option<&'static str>,
    /// Another environment variable read when `env` is unset (Airflow's name for it).
    pub env_alias: Option<&'static str>,
    pub doc: &'static str,
}

const fn key(key: &'static str, env: &'static str, doc: &'static str) -> Key {
    Key {
        key,
        env,
        flag: None,
        kind: Kind::Text,
        secrecy: Secrecy::Public,
        default_doc: None,
        env_alias: None,
        doc,
    }
}

impl Key {
    const fn flag(mut self, flag: &'static str) -> Key {
        self.flag = Some(flag);
        self
    }
    const fn kind(mut self, kind: Kind) -> Key {
        self.kind = kind;
        self
    }
    const fn secrecy(mut self, secrecy: Secrecy) -> Key {
        self.secrecy = secrecy;
        self
    }
    const fn default_doc(mut self, text: &'static str) -> Key {
        self.default_doc = Some(text);
        self
    }
    const fn env_alias(mut self, name: &'static str) -> Key {
        self.env_alias = Some(name);
        self
    }
}

/// Every setting updraft reads.
pub const KEYS: &[Key] = &[
    key("core.dags_folder", "UPDRAFT_DAGS_FOLDER", "the folder of DAG files (`*.yaml`, `*.yml`)").flag("--dags-folder"),
    key("core.home", "UPDRAFT_HOME", "standalone's state: private Postgres cluster, generated admin password, its database URL for other commands, and the default config file `updraft.toml`")
        .flag("--home")
        .default_doc("`~/.updraft` (`/var/lib/updraft` as root)"),
    key("core.fernet_key", "UPDRAFT_FERNET_KEY", "Fernet key(s) encrypting stored connection passwords and extras and variable values, comma-separated, newest first (Airflow's `fernet_key`; `AIRFLOW__CORE__FERNET_KEY` is read too); unset: standalone generates one into `$UPDRAFT_HOME/fernet_key` and other commands on the machine use it, elsewhere secrets are refused")
        .secrecy(Secrecy::Secret)
        .env_alias("AIRFLOW__CORE__FERNET_KEY"),
    key("core.test_connection", "UPDRAFT_TEST_CONNECTION", "allow `POST /api/v2/connections/test` (Airflow's `[core] test_connection`)")
        .kind(Kind::Bool),
    key("core.dag_file_max_bytes", "UPDRAFT_DAG_FILE_MAX_BYTES", "a DAG file (or a file it reads with `$f`) bigger than this many bytes is an import error; bounds what one file can cost the DAG processor")
        .kind(Kind::Int),
    key("database.url", "DATABASE_URL", "the Postgres metadata database; unset: standalone picks one (a local server, else a private cluster) and other commands use standalone's")
        .flag("--database-url")
        .secrecy(Secrecy::Url),
    key("scheduler.poll_interval", "UPDRAFT_POLL_INTERVAL", "fallback polling when no NOTIFY arrives"),
    key("scheduler.create_cron_data_intervals", "UPDRAFT_CREATE_CRON_DATA_INTERVALS", "classic interval semantics for cron schedules (Airflow's `[scheduler] create_cron_data_intervals`)")
        .kind(Kind::Bool),
    key("worker.slots", "UPDRAFT_WORKER_SLOTS", "tasks a worker runs at once").flag("--slots").kind(Kind::Int),
    key("worker.process_slots", "UPDRAFT_WORKER_PROCESS_SLOTS", "of those, tasks that run commands in processes of their own (`bash`) at once; default four per core").kind(Kind::Int),
    key("worker.lease_ttl", "UPDRAFT_LEASE_TTL", "how long a claimed task stays leased without a heartbeat"),
    key("worker.shutdown_grace", "UPDRAFT_SHUTDOWN_GRACE", "how long running tasks may finish at shutdown"),
    key("webserver.host", "UPDRAFT_WEB_HOST", "the address the web server listens on").flag("--host"),
    key("webserver.port", "UPDRAFT_WEB_PORT", "the web server's port").flag("--port").kind(Kind::Int),
    key("webserver.secure_cookies", "UPDRAFT_SECURE_COOKIES", "mark cookies `Secure` (when served over HTTPS)")
        .flag("--secure-cookies")
        .kind(Kind::Bool),
    key("webserver.session_ttl", "UPDRAFT_SESSION_TTL", "how long a browser session lasts"),
    key("webserver.token_ttl", "UPDRAFT_TOKEN_TTL", "how long an API token from `/auth/token` lasts"),
    key("operators.kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "Kafka brokers for publish and sink; unset in standalone: an embedded broker")
        .secrecy(Secrecy::Url),
    key("operators.datasource_url", "DATASOURCE_URL", "the fetch operator's default URL (unset: `https://randomuser.me/api/`)")
        .secrecy(Secrecy::Url),
    key("operators.sink_postgres_url", "SINK_POSTGRES_URL", "the sink's Postgres; unset in standalone: its own database")
        .secrecy(Secrecy::Url),
    key("operators.cassandra_contact_points", "CASSANDRA_CONTACT_POINTS", "the sink's Cassandra, `host:9042,host2:9042`"),
    key("logging.level", "UPDRAFT_LOG", "log filter (`tracing` env-filter syntax); logs go to stderr, command output to stdout"),
];

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "UPDRAFT_CONFIG";

/// The setting with this key.
pub fn find(key: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.key == key)
}

/// A value of `settings` at a dotted key, as text (`null` when unset).
pub fn value_text(settings: &Settings, key: &str) -> String {
    let json = serde_json::to_value(settings).unwrap_or_default();
    let mut v = &json;
    for part in key.split('.') {
        v = &v[part];
    }
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `text` as `config list` may show it.
pub fn shown(k: &Key, text: &str) -> String {
    match (k.secrecy, text.is_empty()) {
        (_, true) | (Secrecy::Public, _) => text.to_string(),
        (Secrecy::Url, false) => text.split(',').map(mask_uri).collect::<Vec<_>>().join(","),
        (Secrecy::Secret, false) => MASK.to_string(),
    }
}

/// One line of `updraft config list`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub key: &'static str,
    pub value: String,
    /// `default`, `file /path/updraft.toml`, `env UPDRAFT_X` or `flag --x`.
    pub source: String,
}

/// Every effective setting with where it came from, secrets masked.
pub fn list(settings: &Settings) -> Vec<Row> {
    KEYS.iter()
        .map(|k| Row {
            key: k.key,
            value: shown(k, &value_text(settings, k.key)),
            source: settings
                .origins
                .get(k.key)
                .unwrap_or(&Origin::Default)
                .to_string(),
        })
        .collect()
}

/// The README's settings table, generated from [`KEYS`] and the defaults.
pub fn markdown_table() -> String {
    let defaults = Settings::default();
    let mut out = String::from(
        "| key in `updraft.toml` | environment variable | flag | default | meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    for k in KEYS {
        let default = match k.default_doc {
            Some(d) => d.to_string(),
            None => match value_text(&defaults, k.key) {
                t if t.is_empty() => "(unset)".to_string(),
                t => format!("`{t}`"),
            },
        };
        let flag = k.flag.map(|f| format!("`{f}`")).unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | `{}` | {flag} | {default} | {} |\n",
            k.key, k.env, k.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_names_a_field_and_every_field_has_a_key() {
        let json = serde_json::to_value(Settings::default()).unwrap();
        let mut fields = Vec::new();
        for (section, body) in json.as_object().unwrap() {
            for name in body.as_object().unwrap().keys() {
                fields.push(format!("{section}.{name}"));
            }
        }
        let mut keys: Vec<String> = KEYS.iter().map(|k| k.key.to_string()).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
        let mut envs: Vec<&str> = KEYS.iter().map(|k| k.env).collect();
        envs.sort();
        envs.dedup();
        assert_eq!(envs.len(), KEYS.len(), "one environment variable per key");
    }

    #[test]
    fn secrets_are_masked() {
        let k = find("database.url").unwrap();
        assert_eq!(shown(k, "postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(shown(k, ""), "");
    }

    /// The README's table is this table; `UPDATE_README=1 cargo test` rewrites it.
    #[test]
    fn readme_lists_every_setting() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (start, end) = ("<!-- settings:start -->\n", "<!-- settings:end -->");
        let a = readme.find(start).expect("README has the settings markers") + start.len();
        let b = readme
            .find(end)
            .expect("README has the settings end marker");
        let table = markdown_table();
        if readme[a..b] != table {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{table}{}", &readme[..a], &readme[b..]);
                std::fs::write(&path, updated).unwrap();
            } else {
                panic!("README's settings table is out of date; run `UPDATE_README=1 cargo test readme_lists_every_setting`\n\n{table}");
            }
        }
    }
}
