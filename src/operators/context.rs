//! What every operator gets when it runs: the run's identity and dates, the conf and params,
//! a log sink for this try, a cancellation token, and the operator environment
//! (connections and endpoints from configuration, never from code).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// updraft's own messages about the task (start, retries, outcome).
    System,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::System => "system",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub stream: LogStream,
    pub text: String,
}

/// A cheap, cloneable handle that appends lines to this try's log. The worker drains it into
/// `task_logs` in batches; tests read it back with [`TaskLog::capture`]. Secrets known to the
/// environment are masked before a line leaves the handle.
#[derive(Clone, Debug)]
pub struct TaskLog {
    tx: mpsc::UnboundedSender<LogLine>,
    mask: Arc<Vec<String>>,
}

impl TaskLog {
    pub fn new(tx: mpsc::UnboundedSender<LogLine>, mask: Arc<Vec<String>>) -> Self {
        TaskLog { tx, mask }
    }

    /// A log whose lines are collected in a channel, for tests and `dags test`.
    pub fn capture() -> (TaskLog, mpsc::UnboundedReceiver<LogLine>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (TaskLog::new(tx, Arc::new(Vec::new())), rx)
    }

    pub fn line(&self, stream: LogStream, text: impl Into<String>) {
        let mut text = text.into();
        for secret in self.mask.iter().filter(|s| !s.is_empty()) {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        // A closed receiver means the try is over; late lines have nowhere to go.
        let _ = self.tx.send(LogLine {
            at: Utc::now(),
            stream,
            text,
        });
    }

    pub fn info(&self, text: impl Into<String>) {
        self.line(LogStream::System, text)
    }
}

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
    pub fn secrets(&self) -> Vec<String> {
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
        out
    }
}

/// The password part of `scheme://user:password@host...`, if any.
pub fn password_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let userinfo = rest.split('@').next().filter(|_| rest.contains('@'))?;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Replaces the password in a connection URI with `***`, for logs and pages.
pub fn mask_uri(uri: &str) -> String {
    match password_of(uri) {
        Some(pw) => uri.replacen(&format!(":{pw}@"), ":***@", 1),
        None => uri.to_string(),
    }
}

/// Everything an operator knows about the try it runs.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub dag_id: String,
    pub task_id: String,
    pub run_id: String,
    pub try_number: i32,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: serde_json::Value,
    /// DAG params with the run's conf applied on top (Airflow's default behaviour).
    pub params: serde_json::Map<String, serde_json::Value>,
    pub log: TaskLog,
    pub cancel: CancellationToken,
    pub env: Arc<OperatorEnv>,
}

impl TaskContext {
    /// A context for unit tests of operators: fixed dates, a captured log.
    pub fn for_test(env: OperatorEnv) -> (TaskContext, mpsc::UnboundedReceiver<LogLine>) {
        let (log, rx) = TaskLog::capture();
        let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let ctx = TaskContext {
            dag_id: "test_dag".into(),
            task_id: "test_task".into(),
            run_id: "manual__2024-01-01T00:00:00+00:00".into(),
            try_number: 1,
            logical_date: at,
            data_interval_start: at,
            data_interval_end: at,
            conf: serde_json::json!({}),
            params: serde_json::Map::new(),
            log,
            cancel: CancellationToken::new(),
            env: Arc::new(env),
        };
        (ctx, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_uri("postgres://u:s3cret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(mask_uri("postgres://db/x"), "postgres://db/x");
        let mut env = OperatorEnv::default();
        env.connections.insert(
            "pg".into(),
            Connection {
                uri: "postgres://u:s3cret@db/x".into(),
            },
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(tx, Arc::new(env.secrets()));
        log.info("connecting with s3cret");
        assert_eq!(rx.try_recv().unwrap().text, "connecting with ***");
    }
}
