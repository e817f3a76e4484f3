//! The one error type of every operator, and whether another attempt can help.
//!
//! Why: a failed try is retried by the task's policy (`retries`, `retry_delay`), and inside a
//! try some operators retry a request themselves. Both are only worth it when the cause can
//! go away by itself: a timeout, a refused connection, a 5xx, a broker that is down. A bad
//! `with:` argument, a connection nobody defined, a 404 or a mapping that does not fit the
//! data fail the same way every time, and retrying them only delays the red square the
//! person has to act on. So every operator error carries a [`Reason`], and each reason
//! implies an [`ErrorKind`]: [`ErrorKind::Permanent`] fails the task now,
//! [`ErrorKind::Transient`] retries per policy.
//!
//! The message keeps the whole cause chain (the `{:#}` of an `anyhow` error, the `source()`s
//! of a library error) and, where it helps, what to change (`DATASOURCE_URL`,
//! `KAFKA_BOOTSTRAP_SERVERS`, a `*_conn_id`). It is stored as text, so `{}` and `{:#}` print
//! the same complete line. [`classify`] holds how each library's errors map to reasons.

pub mod classify;

use std::fmt;
use std::time::Duration;

/// Whether another attempt can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The same input fails the same way: fail the task now, without further tries.
    Permanent,
    /// The cause may go away: retry per the task's (or the operator's) policy.
    Transient,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Permanent => "permanent",
            ErrorKind::Transient => "transient",
        })
    }
}

/// What went wrong, in the words the task log uses. Each reason has one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A `with:` argument, a property or a connection URI that cannot work.
    BadConfig,
    /// A connection (or broker list, or target) that is not defined anywhere.
    MissingConnection,
    /// The server refused the request itself: a 4xx other than 408 and 429, an oversized
    /// Kafka message, a denied permission.
    Rejected,
    /// The data does not fit: a record the mapping cannot fill, a table of another shape.
    Schema,
    /// The server answered with something that is not what the operator reads (not JSON, no
    /// results list), and will answer the same again.
    Malformed,
    /// The command could not be started at all (no such working directory, no bash).
    CannotStart,
    /// A request, connection or delivery took too long (including HTTP 408).
    Timeout,
    /// A connection was refused or reset, or a name did not resolve.
    Connection,
    /// The server failed (5xx, or an API's own "try again" error body).
    ServerError,
    /// The server asked to slow down (HTTP 429).
    RateLimited,
    /// Kafka brokers could not be reached or could not serve the request now.
    BrokerUnavailable,
    /// The target database could not be reached or could not serve the request now.
    Database,
    /// The task's own work failed (a command's non-zero exit): retried as Airflow does.
    TaskFailed,
    /// The try was cancelled (shutdown, lease lost, `execution_timeout`).
    Cancelled,
    /// Something in this process failed (a worker thread, the file system).
    Internal,
}

impl Reason {
    pub fn kind(self) -> ErrorKind {
        match self {
            Reason::BadConfig
            | Reason::MissingConnection
            | Reason::Rejected
            | Reason::Schema
            | Reason::Malformed
            | Reason::CannotStart => ErrorKind::Permanent,
            Reason::Timeout
            | Reason::Connection
            | Reason::ServerError
            | Reason::RateLimited
            | Reason::BrokerUnavailable
            | Reason::Database
            | Reason::TaskFailed
            | Reason::Cancelled
            | Reason::Internal => ErrorKind::Transient,
        }
    }

    /// A few words for the task log: `permanent: bad configuration`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::BadConfig => "bad configuration",
            Reason::MissingConnection => "missing connection",
            Reason::Rejected => "request rejected",
            Reason::Schema => "schema or mapping violation",
            Reason::Malformed => "malformed response",
            Reason::CannotStart => "command cannot start",
            Reason::Timeout => "timeout",
            Reason::Connection => "connection failed",
            Reason::ServerError => "server error",
            Reason::RateLimited => "rate limited",
            Reason::BrokerUnavailable => "broker unavailable",
            Reason::Database => "database unavailable",
            Reason::TaskFailed => "task failed",
            Reason::Cancelled => "cancelled",
            Reason::Internal => "internal error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An operator's failed try (or failed attempt inside one): why, and the full story.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct OperatorError {
    reason: Reason,
    message: String,
    /// When the server said how long to wait (a 429's `Retry-After`), for in-try retries.
    retry_after: Option<Duration>,
}

/// A connection or variable that is missing or unusable: another try will not find it
/// either until someone defines it (the message says where).
impl From<crate::settings::LookupError> for OperatorError {
    fn from(e: crate::settings::LookupError) -> Self {
        OperatorError::new(Reason::MissingConnection, e.to_string())
    }
}

impl OperatorError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        OperatorError {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `what: cause`, with the cause's whole `source()` chain.
    pub fn caused(
        reason: Reason,
        what: impl fmt::Display,
        cause: &(dyn std::error::Error + 'static),
    ) -> Self {
        Self::new(reason, format!("{what}: {}", chain(cause)))
    }

    /// An invalid `with:` argument or setting.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Reason::BadConfig, message)
    }

    /// The try was cancelled while doing `what`.
    pub fn cancelled(what: impl fmt::Display) -> Self {
        Self::new(Reason::Cancelled, format!("{what} was cancelled"))
    }

    /// A failure of this process (a blocking thread that panicked, the file system).
    pub fn internal(what: impl fmt::Display, cause: impl fmt::Display) -> Self {
        Self::new(Reason::Internal, format!("{what}: {cause}"))
    }

    /// Appends what to do about it: `…; check KAFKA_BOOTSTRAP_SERVERS`.
    pub fn hint(mut self, hint: impl fmt::Display) -> Self {
        self.message = format!("{}; {hint}", self.message);
        self
    }

    /// Puts `what` in front of the message, keeping the reason: `request 2 to …: HTTP 503`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    pub fn kind(&self) -> ErrorKind {
        self.reason.kind()
    }

    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind, the reason and what happens next, for the task log:
    /// `permanent: bad configuration; not retrying`, `transient: timeout; retrying per
    /// policy`, `transient: timeout; no retries left`.
    pub fn verdict(&self, retrying: bool) -> String {
        let next = match (self.kind(), retrying) {
            (ErrorKind::Permanent, _) => "not retrying",
            (ErrorKind::Transient, true) => "retrying per policy",
            (ErrorKind::Transient, false) => "no retries left",
        };
        format!("{}: {}; {next}", self.kind(), self.reason)
    }
}

/// An error and its `source()`s, `outer: inner: innermost`, skipping a source whose text the
/// outer message already contains (many libraries print their source themselves).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn messages_keep_the_cause_chain_and_the_hint() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = OperatorError::caused(Reason::Connection, "could not reach X", &Outer(io))
            .hint("check KAFKA_BOOTSTRAP_SERVERS");
        assert_eq!(
            e.to_string(),
            "could not reach X: outer: refused; check KAFKA_BOOTSTRAP_SERVERS"
        );
        assert_eq!(format!("{e:#}"), e.to_string());
        // Through anyhow (as the worker holds it) the text is the same and the type remains.
        let any = anyhow::Error::from(e.clone());
        assert_eq!(format!("{any:#}"), e.to_string());
        assert!(any
            .downcast_ref::<OperatorError>()
            .is_some_and(OperatorError::is_transient));
    }

    #[test]
    fn each_reason_has_one_kind_and_the_verdict_says_what_happens() {
        assert_eq!(Reason::BadConfig.kind(), ErrorKind::Permanent);
        assert_eq!(Reason::Rejected.kind(), ErrorKind::Permanent);
        assert_eq!(Reason::Timeout.kind(), ErrorKind::Transient);
        assert_eq!(Reason::TaskFailed.kind(), ErrorKind::Transient);
        let bad = OperatorError::config("invalid `with:` arguments: x");
        assert_eq!(
            bad.verdict(false),
            "permanent: bad configuration; not retrying"
        );
        let slow = OperatorError::new(Reason::Timeout, "timed out");
        assert_eq!(
            slow.verdict(true),
            "transient: timeout; retrying per policy"
        );
        assert_eq!(slow.verdict(false), "transient: timeout; no retries left");
    }

    #[test]
    fn chain_skips_sources_the_message_already_shows() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Shows(#[source] std::io::Error);
        let e = Shows(std::io::Error::other("inner"));
        assert_eq!(chain(&e), "outer: inner");
    }
}
