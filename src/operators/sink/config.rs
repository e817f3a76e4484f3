use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::core::connection::quote;
use crate::core::log::mask_uri;
use crate::core::Duration;
use crate::operators::{OperatorError, Reason};
use crate::settings::{Connection, OperatorEnv};

/// The connection a sink uses when `conn_id` is not given, if it is defined.
pub const DEFAULT_CONN_ID: &str = "sink_default";

/// Arguments of the `sink` operator (`uses: updraft.sink`).
///
/// Target: the `conn_id` connection (which must exist when given); without `conn_id`, the
/// `sink_default` connection if defined, else Cassandra at `CASSANDRA_CONTACT_POINTS` if set,
/// else Postgres at the configured sink URL (in standalone, updraft's own database). The
/// connection's scheme picks the kind: `postgres://` / `postgresql://` or `cassandra://`
/// (`scylla://` too), e.g. `cassandra://user:pw@cass1:9042,cass2:9042`.
///
/// Brokers: `bootstrap_servers`, else `kafka_conn_id`, else `KAFKA_BOOTSTRAP_SERVERS`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The topic to consume.
    #[serde(default = "crate::operators::publish::default_topic")]
    pub topic: String,
    /// `batch` (default): stop when caught up with the end offsets as of start, so the task
    /// fits a DAG run. `continuous`: keep consuming until stopped: the worker's shutdown
    /// (the task goes back to the queue and another worker resumes it), a pause of the DAG
    /// (the task succeeds; a run after the unpause resumes from the committed offsets), the
    /// loss of its lease, or `max_records` / `max_duration`. Meant for `schedule:
    /// '@continuous'` DAGs; a topic that does not exist yet is waited for.
    #[serde(default)]
    pub mode: Mode,
    /// Continuous mode: a batch is written (and its offsets committed) at the latest this long
    /// after its first message arrived, so a slow trickle of records lands within it.
    #[serde(default = "default_linger")]
    pub linger: Duration,
    /// The consumer group; sink tasks sharing it share the topic's partitions, and each run
    /// resumes where the group's committed offsets say. Default `updraft.<dag_id>.<task_id>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// The target connection (see above).
    #[serde(default)]
    pub conn_id: Option<String>,
    /// Brokers, `host:port,...`. Overrides `kafka_conn_id` and `KAFKA_BOOTSTRAP_SERVERS`.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// A named Kafka connection (`kafka://host:port,...`).
    #[serde(default)]
    pub kafka_conn_id: Option<String>,
    /// The Cassandra keyspace, or the Postgres schema; created if missing.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// The table; created if missing with `id uuid PRIMARY KEY` and `columns` as text.
    #[serde(default = "default_table")]
    pub table: String,
    /// Record fields stored as text columns besides `id`, in order. The default is DESIGN.md's
    /// record without `dob`, which the reference stack leaves out.
    #[serde(default = "default_columns")]
    pub columns: Vec<String>,
    /// Messages written (and their offsets committed) together.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Stop after this many messages even if not caught up.
    #[serde(default)]
    pub max_records: Option<u64>,
    /// Stop after this long even if not caught up.
    #[serde(default)]
    pub max_duration: Option<Duration>,
    /// The task succeeds once every partition of the topic is read up to where it ended when
    /// the task started, by this task or by other members of its group (their committed
    /// offsets). Fail when this task is done with its own partitions but the group has made
    /// no progress on the others for this long, e.g. a stuck sink holding them.
    #[serde(default = "thirty_seconds")]
    pub stall_timeout: Duration,
    /// Timeout for connecting to the brokers and the target, and for metadata calls.
    #[serde(default = "ten_seconds")]
    pub connect_timeout: Duration,
    /// Cassandra targets: the topic invalid messages go to. Default `<topic>.dlq`.
    /// (Postgres targets keep them in the table `<table>_dead_letter` beside the rows.)
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Cassandra targets: inserts in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The record schema (contract) records must match: that of this fetch task. Default:
    /// the nearest fetch task upstream, if there is one. A record that does not match is a
    /// dead letter, with the reason.
    #[serde(default)]
    pub schema_from: Option<crate::operators::contract::SchemaFrom>,
    /// Fail the task once more than this many dead letters were kept (they are written, and
    /// their offsets committed, first). Default: no limit; each is logged and counted.
    #[serde(default)]
    pub max_dead_letters: Option<u64>,
    /// Extra librdkafka consumer properties. `enable.auto.commit` stays `false`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// How long a sink runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Until caught up with the end offsets as of start.
    #[default]
    Batch,
    /// Until stopped.
    Continuous,
}

/// Where rows go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Postgres {
        url: String,
    },
    Cassandra {
        contact_points: Vec<String>,
        user: Option<(String, String)>,
    },
}

impl Target {
    /// For logs: the kind and the place, password masked.
    pub fn describe(&self) -> String {
        match self {
            Target::Postgres { url } => format!("Postgres at {}", mask_uri(url)),
            Target::Cassandra { contact_points, .. } => {
                format!("Cassandra at {}", contact_points.join(","))
            }
        }
    }

    /// Resolves the target by the rules on [`Config`]. Finding none, or a connection that
    /// names no usable target, is permanent.
    pub fn resolve(conn_id: Option<&str>, env: &OperatorEnv) -> Result<Target, OperatorError> {
        if let Some(id) = conn_id {
            return Target::from_conn(env.connection(id)?);
        }
        if env.has_connection(DEFAULT_CONN_ID) {
            return Target::from_conn(env.connection(DEFAULT_CONN_ID)?);
        }
        if let Some(points) = &env.cassandra_contact_points {
            return Ok(Target::Cassandra {
                contact_points: split_hosts(points, 9042),
                user: None,
            });
        }
        if let Some(url) = &env.sink_postgres_url {
            return Ok(Target::Postgres { url: url.clone() });
        }
        Err(
            OperatorError::new(Reason::MissingConnection, "no sink target configured").hint(
                "set `conn_id`, AIRFLOW_CONN_SINK_DEFAULT, CASSANDRA_CONTACT_POINTS or SINK_POSTGRES_URL",
            ),
        )
    }

    /// `postgres://…` / `postgresql://…` or `cassandra://[user:pw@]h1:9042,h2:9042[/…]`.
    pub fn from_uri(uri: &str) -> Result<Target, OperatorError> {
        let conn = Connection::from_uri("sink", uri).map_err(|e| {
            OperatorError::config(format!("the sink connection `{}`: {e}", mask_uri(uri)))
        })?;
        Target::from_conn(&conn)
    }

    /// The target a connection names, by its type: `postgres` (login, password, host,
    /// port, schema = database, extra = URL parameters such as `sslmode`) or `cassandra` /
    /// `scylla` (host = contact points, `h1,h2:9043`, port as the default port, login and
    /// password).
    pub fn from_conn(conn: &Connection) -> Result<Target, OperatorError> {
        match conn.conn_type.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => {
                let mut url = String::from("postgres://");
                if let Some(l) = conn.login.as_deref().filter(|l| !l.is_empty()) {
                    url.push_str(&quote(l));
                    if let Some(p) = &conn.password {
                        url.push(':');
                        url.push_str(&quote(p));
                    }
                    url.push('@');
                }
                url.push_str(&conn.host_port().unwrap_or_default());
                if let Some(db) = conn.schema.as_deref().filter(|s| !s.is_empty()) {
                    url.push('/');
                    url.push_str(&quote(db));
                }
                let params: Vec<String> = conn
                    .extra_dejson()
                    .iter()
                    .map(|(k, v)| {
                        let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                        format!("{}={}", quote(k), quote(&v))
                    })
                    .collect();
                if !params.is_empty() {
                    url.push('?');
                    url.push_str(&params.join("&"));
                }
                Ok(Target::Postgres { url })
            }
            "cassandra" | "scylla" => {
                let port = conn.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(9042);
                let points = split_hosts(conn.host.as_deref().unwrap_or_default(), port);
                if points.is_empty() {
                    return Err(OperatorError::config(format!(
                        "the Cassandra connection `{}` names no host",
                        conn.conn_id
                    )));
                }
                let user = conn.login.clone().filter(|l| !l.is_empty()).map(|l| (l, conn.password.clone().unwrap_or_default()));
                Ok(Target::Cassandra {
                    contact_points: points,
                    user,
                })
            }
            other => Err(OperatorError::config(format!(
                "sink connections must be of type postgres or cassandra, not `{other}` (connection `{}`)",
                conn.conn_id
            ))),
        }
    }
}

/// `h1,h2:9043` → `["h1:9042", "h2:9043"]`.
pub fn split_hosts(list: &str, default_port: u16) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.contains(':') {
                h.to_string()
            } else {
                format!("{h}:{default_port}")
            }
        })
        .collect()
}

/// A name safe to splice into SQL/CQL unquoted: lower-case letters, digits, `_`, not
/// starting with a digit, at most 48 characters (Cassandra's limit). Identifiers cannot be
/// bound parameters, so this check is what keeps statements injection-free.
pub fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 48
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Bounds on `batch_size` and `concurrency`, so a typo cannot exhaust a worker's memory.
pub const MAX_BATCH: usize = 100_000;
pub const MAX_CONCURRENCY: usize = 1_024;

impl Config {
    /// Pure checks beyond the types.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let ident_hint = "use lower-case letters, digits and `_`, not starting with a digit, at most 48 characters";
        for (field, name) in [
            ("with.keyspace", &self.keyspace),
            ("with.table", &self.table),
        ] {
            if !valid_identifier(name) {
                errors.push((
                    field.to_string(),
                    format!("`{name}` is not a valid name; {ident_hint}"),
                ));
            }
        }
        for (i, c) in self.columns.iter().enumerate() {
            if !valid_identifier(c) || c == "id" {
                errors.push((
                    format!("with.columns.{i}"),
                    format!("`{c}` is not a valid column; {ident_hint} (and not `id`)"),
                ));
            }
            if self.columns[..i].contains(c) {
                errors.push((
                    format!("with.columns.{i}"),
                    format!("`{c}` is listed twice"),
                ));
            }
        }
        if !crate::operators::publish::valid_topic(&self.topic) {
            errors.push((
                "with.topic".into(),
                format!("`{}` is not a valid Kafka topic name", self.topic),
            ));
        }
        if self.batch_size == 0 || self.concurrency == 0 {
            errors.push((
                "with.batch_size".into(),
                "`batch_size` and `concurrency` must be at least 1".into(),
            ));
        }
        if self.linger == Duration::ZERO || self.linger > Duration::from_secs(60) {
            errors.push((
                "with.linger".into(),
                "`linger` must be more than 0 and at most 60s".into(),
            ));
        }
        // A batch is held in memory; so is every insert in flight.
        if self.batch_size > MAX_BATCH || self.concurrency > MAX_CONCURRENCY {
            errors.push((
                "with.batch_size".into(),
                format!("`batch_size` may be at most {MAX_BATCH} and `concurrency` at most {MAX_CONCURRENCY}"),
            ));
        }
        if self.properties.contains_key("enable.auto.commit")
            || self.properties.contains_key("group.id")
        {
            errors.push((
                "with.properties".into(),
                "`enable.auto.commit` and `group.id` are set by the operator".into(),
            ));
        }
        errors
    }

    pub fn group_id(&self, dag_id: &str, task_id: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("updraft.{dag_id}.{task_id}"))
    }

    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }
}

fn default_keyspace() -> String {
    "spark_streams".into()
}
fn default_table() -> String {
    "created_users".into()
}
/// DESIGN.md §6's record fields after `id`, without `dob`.
pub fn default_columns() -> Vec<String> {
    [
        "first_name",
        "last_name",
        "gender",
        "address",
        "post_code",
        "email",
        "username",
        "registered_date",
        "phone",
        "picture",
    ]
    .map(String::from)
    .to_vec()
}
fn default_batch() -> usize {
    1000
}
fn default_concurrency() -> usize {
    64
}
fn default_linger() -> Duration {
    Duration::from_millis(100)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
