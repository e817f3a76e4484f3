//! Airflow 3 response shapes built from updraft's rows. Where Airflow requires a field
//! updraft has no notion of, it gets the value a plain Airflow install would show
//! (`default_pool`, `map_index: -1`, ...). Ids Airflow types as UUIDs are derived from our
//! integer keys.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::core::RunType;
use crate::dag::Dag;
use crate::db::runs::{RunRow, TaskStateRow};
use crate::db::web::{DagRow, ImportErrorRow, VersionInfo};

pub const BUNDLE: &str = "dags-folder";

/// A UUID standing for an integer key (versions, task instances).
pub fn uuid_of(id: i64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x7570_6472_6166_7400, id as u64)
}

fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Value {
    match (start, end) {
        (Some(s), Some(e)) => json!((e - s).num_milliseconds() as f64 / 1000.0),
        _ => Value::Null,
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

pub fn version(v: &VersionInfo) -> Value {
    json!({
        "id": uuid_of(v.id),
        "version_number": v.number,
        "dag_id": v.dag_id,
        "dag_display_name": v.dag_id,
        "bundle_name": BUNDLE,
        "bundle_version": null,
        "bundle_url": null,
        "created_at": v.created_at,
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
        "dag_versions": versions.get(&r.version_id).map(version).into_iter().collect::<Vec<_>>(),
    })
}

pub fn task_instance(
    r: &RunRow,
    ti: &TaskStateRow,
    dag: Option<&Dag>,
    v: Option<&VersionInfo>,
) -> Value {
    let task = dag.and_then(|d| d.task(&ti.task_id));
    json!({
        "id": uuid_of(ti.id),
        "task_id": ti.task_id,
        "task_display_name": ti.task_id,
        "dag_id": r.dag_id,
        "dag_display_name": r.dag_id,
        "dag_run_id": r.run_id,
        "map_index": -1,
        "rendered_map_index": null,
        "logical_date": r.logical_date,
        "run_after": r.run_after,
        "start_date": ti.start_date,
        "end_date": ti.end_date,
        "duration": duration(ti.start_date, ti.end_date),
        // Airflow has no "none" state: a task that has not been looked at yet is null.
        "state": ti.state.api_value(),
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "hostname": ti.hostname,
        "unixname": null,
        "pool": task.and_then(|t| t.pool.clone()).unwrap_or_else(|| "default_pool".into()),
        "pool_slots": 1,
        "queue": task.and_then(|t| t.queue.clone()).unwrap_or_else(|| "default".into()),
        "priority_weight": 1,
        "operator": task.map(|t| t.uses.clone()),
        "operator_name": task.map(|t| t.operator.as_str()),
        "queued_when": null,
        "scheduled_when": null,
        "pid": null,
        "executor": null,
        "executor_config": "{}",
        "note": null,
        "rendered_fields": {},
        "trigger": null,
        "triggerer_job": null,
        "dag_version": v.map(version),
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
