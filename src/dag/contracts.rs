//! Which record schema (see [`crate::operators::contract`]) a DAG version declares, and which
//! one its `publish` and `sink` tasks are held to.
//!
//! A `fetch` task whose `fields:` are literal declares the schema of its records; it is
//! derived from the stored spec of a DAG version, so each version has its own and a changed
//! mapping is a new version. A `publish` or `sink` task is held to the schema named by its
//! `schema_from: {dag_id, task_id}` (another DAG's current version, when `dag_id` is given),
//! else to that of the nearest `fetch` task upstream of it, if there is exactly one; a task
//! with neither checks only what it always checks (a sink: a JSON object with a UUID `id`).

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::model::{Dag, Task};
use crate::operators::contract::{record_schema, SchemaFrom};
use crate::operators::fetch::Fields;
use crate::operators::OperatorName;

/// The record schemas a DAG declares: `(task_id, JSON Schema)` per fetch task, in task order.
pub fn record_schemas(dag: &Dag) -> Vec<(String, Value)> {
    dag.tasks
        .iter()
        .filter_map(|t| Some((t.task_id.to_string(), task_schema(dag, t)?)))
        .collect()
}

/// The schema one fetch task declares, if its `fields:` are written out.
pub fn task_schema(dag: &Dag, task: &Task) -> Option<Value> {
    if task.operator != OperatorName::Fetch || !task.args.is_literal() {
        return None;
    }
    let fields = task.args.to_literal_json().get("fields")?.clone();
    let fields: Fields = serde_json::from_value(fields).ok()?;
    record_schema(&format!("{}.{}", dag.dag_id, task.task_id), &fields)
}

/// Where a publish or sink task's contract comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContractSource {
    /// A fetch task of the same DAG version.
    Here(String),
    /// A fetch task of another DAG's current version.
    Other { dag_id: String, task_id: String },
}

/// The contract source of `task` (see the module docs); `None`: no contract.
pub fn contract_source(dag: &Dag, task: &Task, with: &Value) -> Option<ContractSource> {
    if !matches!(task.operator, OperatorName::Publish | OperatorName::Sink) {
        return None;
    }
    if let Some(from) = with
        .get("schema_from")
        .and_then(|v| SchemaFrom::deserialize(v).ok())
    {
        return Some(match from.dag_id {
            Some(d) if d != dag.dag_id.as_str() => ContractSource::Other {
                dag_id: d,
                task_id: from.task_id,
            },
            _ => ContractSource::Here(from.task_id),
        });
    }
    // Breadth-first up the graph: the nearest fetch tasks, if exactly one.
    let mut seen = BTreeSet::new();
    let mut level: Vec<&Task> = vec![task];
    while !level.is_empty() {
        let mut next = Vec::new();
        let mut fetches = Vec::new();
        for t in level {
            for u in &t.upstream {
                if !seen.insert(u.as_str()) {
                    continue;
                }
                let Some(up) = dag.task(u.as_str()) else {
                    continue;
                };
                if up.operator == OperatorName::Fetch {
                    fetches.push(up.task_id.to_string());
                } else {
                    next.push(up);
                }
            }
        }
        match fetches.len() {
            0 => level = next,
            1 => return fetches.pop().map(ContractSource::Here),
            _ => return None, // several candidates: only `schema_from` can say which
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::load::parse_source;

    fn load(src: &str) -> Dag {
        let p = parse_source("dags/x.yaml", src, &|p| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                p.to_string(),
            ))
        });
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        p.dags.into_iter().next().unwrap()
    }

    #[test]
    fn user_automation_declares_its_record_and_its_sink_is_held_to_it() {
        let src = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/user_automation.yaml"),
        )
        .unwrap();
        let dag = load(&src);
        let schemas = record_schemas(&dag);
        assert_eq!(schemas.len(), 1);
        assert_eq!(schemas[0].0, "fetch_users");
        assert_eq!(
            schemas[0].1["x-updraft-source"],
            "user_automation.fetch_users"
        );
        let sink = dag.task("sink_users").unwrap();
        assert_eq!(
            contract_source(&dag, sink, &Value::Null),
            Some(ContractSource::Here("fetch_users".into()))
        );
        let fetch = dag.task("fetch_users").unwrap();
        assert_eq!(contract_source(&dag, fetch, &Value::Null), None);
        let with = serde_json::json!({"schema_from": {"dag_id": "other", "task_id": "f"}});
        assert_eq!(
            contract_source(&dag, sink, &with),
            Some(ContractSource::Other {
                dag_id: "other".into(),
                task_id: "f".into()
            })
        );
    }

    #[test]
    fn the_stream_names_user_automations_fetch_task() {
        let src = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/user_stream.yaml"),
        )
        .unwrap();
        let dag = load(&src);
        let t = dag.task("stream_users").unwrap();
        assert_eq!(
            contract_source(&dag, t, &t.args.to_literal_json()),
            Some(ContractSource::Other {
                dag_id: "user_automation".into(),
                task_id: "fetch_users".into()
            })
        );
    }
}
