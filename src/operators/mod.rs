//! The built-in operators: a closed set, dispatched by one `match` on [`OperatorName`]. Each operator lives in its own folder with the
//! same shape: `config.rs` (the `with:` struct, every field documented, `deny_unknown_fields`,
//! typed durations, and a pure `validate` where types alone cannot say it), `run.rs` (the
//! I/O; clients are built here, when a try starts, never during validation), `tests.rs`.
//!
//! | operator | `uses:` | what it does |
//! | --- | --- | --- |
//! | [`bash`] | `updraft.bash`, Airflow's `BashOperator` | runs a command |
//! | [`empty`] | `updraft.empty`, Airflow's `EmptyOperator` | nothing |
//! | [`http`] | `updraft.http`, Airflow's `HttpOperator` | one GET/POST against a connection's base URL |
//! | [`fetch`] | `updraft.fetch` | paged GETs of a JSON API, results mapped to records (XCom) |
//! | [`publish`] | `updraft.publish` | records → Kafka topic, every message acknowledged |
//! | [`sink`] | `updraft.sink` | Kafka topic → Postgres or Cassandra rows, upserts, commit after write |
//!
//! Every operator fails with one [`OperatorError`], whose [`Reason`] says whether another try
//! can help ([`ErrorKind`]): the worker fails a permanent one at once and retries a
//! transient one per the task's policy. Retries inside a try go through [`retry`].
//!
//! Operator futures must be `Send` (workers spawn them on a multi-threaded runtime); a
//! compile-time test below keeps it so.

pub mod bash;
pub mod conn_test;
pub mod context;
pub mod contract;
pub mod empty;
pub mod error;
pub mod fetch;
pub mod http;
pub mod kafka;
mod name;
pub mod publish;
pub mod retry;
pub mod sink;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

pub use context::{OperatorEnv, TaskContext, TaskLog};
pub use error::{ErrorKind, OperatorError, Reason};
pub use name::OperatorName;

/// What a successful try leaves behind.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// XCom values to store: `(key, value)`; `return_value` is what `$xcom: task` reads.
    pub xcom: Vec<(String, serde_json::Value)>,
    /// The task asked to be skipped (bash exit code 99, like Airflow's `skip_on_exit_code`).
    pub skipped: bool,
    /// The operator stopped because [`TaskContext::stop`] asked it to, not because its work
    /// was done: at shutdown the worker hands the task back to the queue, on a pause it
    /// records success.
    pub interrupted: bool,
}

impl Outcome {
    pub fn returning(value: serde_json::Value) -> Self {
        Outcome {
            xcom: vec![("return_value".into(), value)],
            ..Outcome::default()
        }
    }

    pub fn skipped() -> Self {
        Outcome {
            skipped: true,
            ..Outcome::default()
        }
    }
}

/// The JSON Schema of an operator's `with:` mapping.
pub fn with_schema(op: OperatorName, generator: &mut SchemaGenerator) -> Schema {
    match op {
        OperatorName::Bash => generator.subschema_for::<bash::Config>(),
        OperatorName::Empty => generator.subschema_for::<empty::Config>(),
        OperatorName::Http => generator.subschema_for::<http::Config>(),
        OperatorName::Fetch => generator.subschema_for::<fetch::Config>(),
        OperatorName::Publish => generator.subschema_for::<publish::Config>(),
        OperatorName::Sink => generator.subschema_for::<sink::Config>(),
    }
}

/// A task's `with:` as the DAG file gives it, for the checks at parse time.
#[derive(Clone, Copy, Debug)]
pub struct WithArgs<'a> {
    /// The top-level keys it names.
    pub keys: &'a [&'a str],
    /// The whole mapping as JSON when no marker (`$t`, `$x`, ...) appears in it.
    pub literal: Option<&'a serde_json::Value>,
}

/// Checks a task's `with:` at parse time: every key must be one the operator knows, and a
/// mapping without markers must deserialize into the operator's config. Returns
/// `(field, message)` pairs; empty when all is well.
pub fn check_with(op: OperatorName, args: WithArgs<'_>) -> Vec<(String, String)> {
    match op {
        OperatorName::Bash => check_config::<bash::Config>(op, args),
        OperatorName::Empty => check_config::<empty::Config>(op, args),
        OperatorName::Http => check_config_with::<http::Config>(op, args, http::Config::validate),
        OperatorName::Fetch => {
            check_config_with::<fetch::Config>(op, args, fetch::Config::validate)
        }
        OperatorName::Publish => {
            check_config_with::<publish::Config>(op, args, publish::Config::validate)
        }
        OperatorName::Sink => check_config_with::<sink::Config>(op, args, sink::Config::validate),
    }
}

/// Runs one try of a task whose `with:` has been resolved to plain JSON.
pub async fn run(
    op: OperatorName,
    with: serde_json::Value,
    ctx: &TaskContext,
) -> Result<Outcome, OperatorError> {
    match op {
        OperatorName::Bash => bash::run(parse_config(with)?, ctx).await,
        OperatorName::Empty => empty::run(parse_config(with)?, ctx).await,
        OperatorName::Http => http::run(parse_config(with)?, ctx).await,
        OperatorName::Fetch => fetch::run(parse_config(with)?, ctx).await,
        OperatorName::Publish => publish::run(parse_config(with)?, ctx).await,
        OperatorName::Sink => sink::run(parse_config(with)?, ctx).await,
    }
}

/// Fails a try whose resolved `with:` breaks an operator's pure checks (values that were
/// templates or XComs at load time are only known now), listing every problem.
/// Such a problem is permanent: the same arguments fail the same way on every try.
pub fn ensure_valid(problems: Vec<(String, String)>) -> Result<(), OperatorError> {
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    Err(OperatorError::config(format!(
        "invalid `with:` arguments: {}",
        list.join("; ")
    )))
}

/// Deserializes a resolved `with:` into an operator's config, with a message that names the
/// field; a failure is permanent.
pub fn parse_config<C: DeserializeOwned>(with: serde_json::Value) -> Result<C, OperatorError> {
    serde_json::from_value(with)
        .map_err(|e| OperatorError::config(format!("invalid `with:` arguments: {e}")))
}

/// The property names of a config struct's schema.
pub fn config_keys<C: JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(C);
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn check_config<C: JsonSchema + DeserializeOwned>(
    op: OperatorName,
    args: WithArgs<'_>,
) -> Vec<(String, String)> {
    check_config_with::<C>(op, args, |_| Vec::new())
}

/// Like `check_config`, plus the operator's own pure validation when `with:` is literal.
fn check_config_with<C: JsonSchema + DeserializeOwned>(
    op: OperatorName,
    args: WithArgs<'_>,
    validate: fn(&C) -> Vec<(String, String)>,
) -> Vec<(String, String)> {
    let known = config_keys::<C>();
    let mut errors = Vec::new();
    for key in args.keys {
        if !known.iter().any(|k| k == key) {
            let hint = if known.is_empty() {
                "it takes no arguments".to_string()
            } else {
                format!("known keys: {}", known.join(", "))
            };
            errors.push((
                format!("with.{key}"),
                format!(
                    "unknown key `{key}` for the {} operator; {hint}",
                    op.as_str()
                ),
            ));
        }
    }
    if let (true, Some(literal)) = (errors.is_empty(), args.literal) {
        match C::deserialize(literal) {
            Ok(config) => errors.extend(validate(&config)),
            Err(e) => errors.push((
                "with".into(),
                format!("invalid arguments for the {} operator: {e}", op.as_str()),
            )),
        }
    }
    errors
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    /// Workers spawn operator futures on a multi-threaded runtime, so each must be `Send`.
    #[allow(dead_code)]
    fn operator_futures_are_send(ctx: &'static TaskContext) {
        assert_send(fetch::run(
            parse_config(serde_json::Value::Null).unwrap(),
            ctx,
        ));
        assert_send(publish::run(
            parse_config(serde_json::Value::Null).unwrap(),
            ctx,
        ));
        assert_send(sink::run(
            parse_config(serde_json::Value::Null).unwrap(),
            ctx,
        ));
        assert_send(http::run(
            parse_config(serde_json::Value::Null).unwrap(),
            ctx,
        ));
        assert_send(run(OperatorName::Bash, serde_json::Value::Null, ctx));
    }
}
