//! What every operator gets when it runs: the run's identity and dates, the conf and params,
//! a log sink for this try, a cancellation token, and the operator environment
//! (connections and endpoints from configuration, never from code).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::log::{LogLine, LogStream, Secrets};
pub use crate::settings::OperatorEnv;

/// A cheap, cloneable handle that appends lines to this try's log. The worker drains it into
/// `task_logs` in batches; tests read it back with [`TaskLog::capture`]. Secrets known to the
/// environment are masked before a line leaves the handle.
#[derive(Clone, Debug)]
pub struct TaskLog {
    tx: mpsc::UnboundedSender<LogLine>,
    mask: Arc<Secrets>,
}

impl TaskLog {
    pub fn new(tx: mpsc::UnboundedSender<LogLine>, mask: Arc<Secrets>) -> Self {
        TaskLog { tx, mask }
    }

    /// A log whose lines are collected in a channel, for tests and `dags test`.
    pub fn capture() -> (TaskLog, mpsc::UnboundedReceiver<LogLine>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (TaskLog::new(tx, Arc::new(Secrets::default())), rx)
    }

    pub fn line(&self, stream: LogStream, text: impl Into<String>) {
        let mut text = text.into();
        if let std::borrow::Cow::Owned(masked) = self.mask.mask(&text) {
            text = masked;
        }
        // A closed receiver means the try is over; late lines have nowhere to go.
        let _ = self.tx.send(LogLine {
            at: Utc::now(),
            stream,
            text,
        });
    }

    /// `text` with the secrets this log masks replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.mask.mask(text)
    }

    pub fn info(&self, text: impl Into<String>) {
        self.line(LogStream::System, text)
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
    /// Cancelled when the try must end now: its lease was lost, its run timed out, or the
    /// worker's shutdown grace is over. Work in flight is abandoned.
    pub cancel: CancellationToken,
    /// Cancelled when the worker asks an operator that runs until stopped (a continuous sink)
    /// to stop cleanly: the worker shuts down or the DAG was paused. Such an operator finishes
    /// its batch, commits, and returns an [`Outcome`](super::Outcome) marked `interrupted`;
    /// operators that end on their own ignore it.
    pub stop: CancellationToken,
    pub env: Arc<OperatorEnv>,
    /// The record schema this try's records must match (publish and sink), resolved by the
    /// worker from `schema_from` or the nearest upstream fetch task.
    pub contract: Option<Arc<super::contract::Contract>>,
}

impl TaskContext {
    /// A context for unit tests of operators: fixed dates, a captured log.
    pub fn for_test(env: OperatorEnv) -> (TaskContext, mpsc::UnboundedReceiver<LogLine>) {
        // Masked like the worker masks: with the environment's secrets.
        let (tx, rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(tx, Arc::new(env.secrets()));
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
            stop: CancellationToken::new(),
            env: Arc::new(env),
            contract: None,
        };
        (ctx, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let mut env = OperatorEnv::default();
        env.set_env_connection("pg", "postgres://u:s3cret@db/x");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(tx, Arc::new(env.secrets()));
        log.info("connecting with s3cret");
        assert_eq!(rx.try_recv().unwrap().text, "connecting with ***");
    }
}
