//! Airflow 3 response shapes built from updraft's rows: DAGs, DAG details, versions, tasks,
//! runs, import errors. Every field Airflow's schema requires is present (its clients
//! validate responses); where updraft has no notion of a field it gets the value a plain
//! Airflow install would show (`default_pool`, `map_index: -1`, `bundle_name:
//! "dags-folder"`, ...). Ids Airflow types as UUIDs are derived from our integer keys.
//! Task instance, try and XCom shapes are in [`super::ti_models`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::core::{Duration, RunType};
use crate::dag::{Dag, Task};
use crate::db::runs::RunRow;
use crate::db::web::{DagRow, ImportErrorRow, VersionInfo, VersionRow};

pub const BUNDLE: &str = "dags-folder";

/// A UUID standing for an integer key (versions, task instances).
pub fn uuid_of(id: i64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x7570_6472_6166_7400, id as u64)
}

/// Seconds between two times, as Airflow's `duration`.
pub fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Value {
    match (start, end) {
        (Some(s), Some(e)) => json!((e - s).num_milliseconds() as f64 / 1000.0),
        _ => Value::Null,
    }
}

/// Airflow's `TimeDelta` object.
pub fn timedelta(d: Option<Duration>) -> Value {
    match d {
        None => Value::Null,
        Some(d) => {
            let us = d.std().as_micros();
            let days = us / 86_400_000_000;
            let rest = us % 86_400_000_000;
            json!({"__type": "TimeDelta", "days": days, "seconds": rest / 1_000_000, "microseconds": rest % 1_000_000})
        }
    }
}

pub fn dag(row: &DagRow) -> Value {
    let owners: Vec<&str> = row
        .owners
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let periodic = row.schedule.as_deref().is_some_and(|s| s != "@once");
    json!({
        "dag_id": row.dag_id,
        "dag_display_name": row.dag_id,
        "is_paused": row.is_paused,
        "is_stale": !row.is_active,
        "is_active": row.is_active,
        "description": row.description,
        "tags": row.tags.iter().map(|t| json!({"name": t, "dag_id": row.dag_id, "dag_display_name": row.dag_id})).collect::<Vec<_>>(),
        "owners": owners,
        "timetable_summary": row.schedule,
        "timetable_description": row.schedule,
        "timetable_periodic": periodic,
        "timetable_partitioned": false,
        "is_backfillable": periodic,
        "fileloc": row.fileloc,
        "relative_fileloc": std::path::Path::new(&row.fileloc).file_name().map(|f| f.to_string_lossy().to_string()),
        "file_token": hex::encode(row.fileloc.as_bytes()),
        "bundle_name": BUNDLE,
        "bundle_version": null,
        "last_parsed_time": row.last_parsed_at,
        "last_parse_duration": null,
        "last_expired": null,
        "max_active_tasks": row.max_active_tasks,
        "max_active_runs": row.max_active_runs,
        "max_consecutive_failed_dag_runs": 0,
        "has_task_concurrency_limits": false,
        "has_import_errors": row.has_import_errors,
        "next_dagrun_logical_date": row.next_logical_date,
        "next_dagrun_data_interval_start": row.next_interval_start,
        "next_dagrun_data_interval_end": row.next_interval_end,
        "next_dagrun_run_after": row.next_run_after,
        "allowed_run_types": null,
    })
}

/// `GET /dags/{dag_id}/details`: the DAG plus what its current version's file says.
pub fn dag_details(
    row: &DagRow,
    spec: Option<&Dag>,
    latest: Option<Value>,
    active_runs: i64,
) -> Value {
    let mut v = dag(row);
    let obj = v.as_object_mut().expect("dag() is an object");
    let params: serde_json::Map<String, Value> = spec
        .map(|d| {
            d.params
                .iter()
                .map(|(k, p)| (k.clone(), json!({"__class": "airflow.sdk.definitions.param.Param", "value": p, "description": null, "schema": {}})))
                .collect()
        })
        .unwrap_or_default();
    for (k, val) in [
        ("catchup", json!(spec.is_some_and(|d| d.catchup))),
        (
            "dag_run_timeout",
            json!(spec
                .and_then(|d| d.dagrun_timeout)
                .map(|t| format!("PT{}S", t.as_secs_f64()))),
        ),
        ("asset_expression", Value::Null),
        ("doc_md", json!(spec.and_then(|d| d.doc_md.clone()))),
        ("start_date", json!(spec.and_then(|d| d.start_date))),
        ("end_date", json!(spec.and_then(|d| d.end_date))),
        (
            "is_paused_upon_creation",
            json!(spec.and_then(|d| d.is_paused_upon_creation)),
        ),
        ("params", json!(params)),
        ("render_template_as_native_obj", json!(false)),
        ("template_search_path", Value::Null),
        ("timezone", json!("UTC")),
        ("last_parsed", json!(row.last_parsed_at)),
        ("default_args", json!({})),
        ("owner_links", json!({})),
        ("is_favorite", json!(false)),
        ("active_runs_count", json!(active_runs)),
        ("concurrency", json!(row.max_active_tasks)),
        ("latest_dag_version", latest.unwrap_or(Value::Null)),
    ] {
        obj.insert(k.to_string(), val);
    }
    v
}

pub fn version(v: &VersionInfo) -> Value {
    version_of(v.id, v.number, &v.dag_id, v.created_at)
}

pub fn version_row(dag_id: &str, v: &VersionRow) -> Value {
    version_of(v.id, v.number, dag_id, v.created_at)
}

fn version_of(id: i64, number: i64, dag_id: &str, created_at: DateTime<Utc>) -> Value {
    json!({
        "id": uuid_of(id),
        "version_number": number,
        "dag_id": dag_id,
        "dag_display_name": dag_id,
        "bundle_name": BUNDLE,
        "bundle_version": null,
        "bundle_url": null,
        "created_at": created_at,
    })
}

pub fn run(r: &RunRow, versions: &HashMap<i64, VersionInfo>) -> Value {
    json!({
        "dag_run_id": r.run_id,
        "dag_id": r.dag_id,
        "dag_display_name": r.dag_id,
        "logical_date": r.logical_date,
        "queued_at": r.queued_at,
        "start_date": r.start_date,
        "end_date": r.end_date,
        "duration": duration(r.start_date, r.end_date),
        "data_interval_start": r.data_interval_start,
        "data_interval_end": r.data_interval_end,
        "run_after": r.run_after,
        "last_scheduling_decision": null,
        "run_type": r.run_type,
        "state": r.state,
        "triggered_by": if r.run_type == RunType::Scheduled { json!("timetable") } else { Value::Null },
        "triggering_user_name": null,
        "conf": r.conf,
        "note": r.note,
        "bundle_version": null,
        "partition_key": null,
        "partition_date": null,
        "dag_versions": versions.get(&r.version_id).map(version).into_iter().collect::<Vec<_>>(),
    })
}

/// Airflow's `TaskResponse` for a task of a DAG.
pub fn task(t: &Task, dag: &Dag) -> Value {
    let class = t.uses.rsplit('.').next().unwrap_or(&t.uses);
    let module = t.uses.rsplit_once('.').map(|(m, _)| m).unwrap_or("updraft");
    json!({
        "task_id": t.task_id.as_str(),
        "task_display_name": t.task_id.as_str(),
        "owner": t.owner,
        "start_date": dag.start_date,
        "end_date": dag.end_date,
        "trigger_rule": t.trigger_rule.as_str(),
        "depends_on_past": false,
        "wait_for_downstream": false,
        "retries": t.retries,
        "queue": t.queue.clone().unwrap_or_else(|| "default".into()),
        "pool": t.pool.clone().unwrap_or_else(|| "default_pool".into()),
        "pool_slots": 1,
        "execution_timeout": timedelta(t.execution_timeout),
        "retry_delay": timedelta(Some(t.retry_delay)),
        "retry_exponential_backoff": t.retry_exponential_backoff,
        "priority_weight": 1,
        "weight_rule": "downstream",
        "ui_color": "#fff",
        "ui_fgcolor": "#000",
        "template_fields": t.args.keys(),
        "downstream_task_ids": t.downstream.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        "doc_md": t.doc_md,
        "operator_name": class,
        "params": dag.params,
        "class_ref": {"module_path": module, "class_name": class},
        "is_mapped": false,
        "extra_links": [],
    })
}

pub fn import_error(e: &ImportErrorRow) -> Value {
    json!({
        "import_error_id": e.id,
        "timestamp": e.created_at,
        "filename": e.filename,
        "bundle_name": BUNDLE,
        "stack_trace": e.message,
    })
}
