//! Airflow 3 shapes for task instances, their tries, and XCom entries.

use serde_json::{json, Value};

use super::models::{duration, uuid_of, BUNDLE};
use crate::core::TaskState;
use crate::db::api::task_instances::{TiApiRow, TryRow, XComRow};

fn dag_version(t: &TiApiRow) -> Value {
    json!({
        "id": uuid_of(t.version_id),
        "version_number": t.version_number,
        "dag_id": t.dag_id,
        "dag_display_name": t.dag_id,
        "bundle_name": BUNDLE,
        "bundle_version": null,
        "bundle_url": null,
        "created_at": t.logical_date,
    })
}

/// Airflow's `TaskInstanceResponse`.
pub fn task_instance(t: &TiApiRow) -> Value {
    json!({
        "id": uuid_of(t.id),
        "task_id": t.task_id,
        "task_display_name": t.task_id,
        "dag_id": t.dag_id,
        "dag_display_name": t.dag_id,
        "dag_run_id": t.run_id,
        "map_index": -1,
        "rendered_map_index": null,
        "logical_date": t.logical_date,
        "run_after": t.run_after,
        "start_date": t.start_date,
        "end_date": t.end_date,
        "duration": duration(t.start_date, t.end_date),
        // Airflow has no "none" state: a task that has not been looked at yet is null.
        "state": t.state.api_value(),
        "try_number": t.try_number,
        "max_tries": t.max_tries,
        "hostname": t.hostname,
        "unixname": null,
        "pool": t.pool,
        "pool_slots": 1,
        "queue": t.queue,
        "priority_weight": 1,
        "operator": t.operator,
        "operator_name": t.operator,
        "queued_when": t.queued_at,
        "scheduled_when": null,
        "pid": null,
        "executor": null,
        "executor_config": "{}",
        "note": t.note,
        "rendered_fields": {},
        "trigger": null,
        "triggerer_job": null,
        "dag_version": dag_version(t),
    })
}

/// Airflow's `TaskInstanceHistoryResponse` for one try. updraft keeps one row per task
/// instance, not per try: an earlier try is known from its log (first and last line) and
/// ended failed (a try that is followed by another failed); the current try is the row.
pub fn task_try(t: &TiApiRow, try_number: i32, log: Option<&TryRow>) -> Value {
    let current = try_number == t.try_number;
    let (start, end, state) = if current {
        (t.start_date, t.end_date, t.state.api_value())
    } else {
        (
            log.and_then(|l| l.first_line),
            log.and_then(|l| l.last_line),
            TaskState::Failed.api_value(),
        )
    };
    json!({
        "task_id": t.task_id,
        "task_display_name": t.task_id,
        "dag_id": t.dag_id,
        "dag_display_name": t.dag_id,
        "dag_run_id": t.run_id,
        "map_index": -1,
        "start_date": start,
        "end_date": end,
        "duration": duration(start, end),
        "state": state,
        "try_number": try_number,
        "max_tries": t.max_tries,
        "hostname": t.hostname,
        "unixname": null,
        "pool": t.pool,
        "pool_slots": 1,
        "queue": t.queue,
        "priority_weight": 1,
        "operator": t.operator,
        "operator_name": t.operator,
        "queued_when": if current { json!(t.queued_at) } else { Value::Null },
        "scheduled_when": null,
        "pid": null,
        "executor": null,
        "executor_config": "{}",
        "dag_version": dag_version(t),
    })
}

/// How an XCom value is sent: `XComResponse` (no value, in lists), `XComResponseNative`
/// (the JSON value) or `XComResponseString` (`stringify=true`: Python's `str()` of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XComValue {
    Omit,
    Native,
    Stringify,
}

pub fn xcom(x: &XComRow, how: XComValue) -> Value {
    let mut v = json!({
        "key": x.key,
        "timestamp": x.created_at,
        "logical_date": x.logical_date,
        "map_index": -1,
        "task_id": x.task_id,
        "task_display_name": x.task_id,
        "dag_id": x.dag_id,
        "dag_display_name": x.dag_id,
        "run_id": x.run_id,
        "run_after": x.run_after,
    });
    let value = match how {
        XComValue::Omit => return v,
        XComValue::Native => x.value.clone(),
        XComValue::Stringify => json!(python_str(&x.value)),
    };
    v["value"] = value;
    v
}

/// Python's `str()` of a JSON value (`{'a': 1, 'b': True}`), as Airflow's `stringify=true`.
fn python_str(v: &Value) -> String {
    fn repr(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => {
                out.push('\'');
                out.push_str(&s.replace('\\', "\\\\").replace('\'', "\\'"));
                out.push('\'');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr(&Value::String(k.clone()), out);
                    out.push_str(": ");
                    repr(item, out);
                }
                out.push('}');
            }
        }
    }
    match v {
        Value::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            repr(other, &mut out);
            out
        }
    }
}
