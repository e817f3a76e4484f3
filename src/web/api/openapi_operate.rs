//! The OpenAPI schemas of the clear, mark, note, delete and audit log endpoints (Airflow 3's
//! names and fields), merged into [`super::openapi::spec`].

use serde_json::{json, Value};

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

pub fn extend(spec: &mut Value) {
    let b = json!({"type": "boolean"});
    let bn = json!({"type": ["boolean", "null"]});
    let sn = json!({"type": ["string", "null"]});
    let dt = json!({"type": ["string", "null"], "format": "date-time"});
    let i = json!({"type": "integer"});
    let note = json!({"type": ["string", "null"], "maxLength": 1000});
    let schemas = [
        (
            "ClearTaskInstancesBody",
            json!({"type": "object", "properties": {
                "dry_run": {"type": "boolean", "default": true}, "start_date": dt, "end_date": dt,
                "only_failed": {"type": "boolean", "default": true}, "only_running": b,
                "reset_dag_runs": {"type": "boolean", "default": true},
                "task_ids": {"type": ["array", "null"], "items": {"anyOf": [{"type": "string"}, {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}]}},
                "dag_run_id": sn, "include_upstream": b, "include_downstream": b, "include_future": b,
                "include_past": b, "run_on_latest_version": bn, "prevent_running_task": b, "note": note}}),
        ),
        (
            "DAGRunClearBody",
            json!({"type": "object", "properties": {"dry_run": {"type": "boolean", "default": true},
                "only_failed": b, "only_new": b, "run_on_latest_version": bn, "note": note}}),
        ),
        (
            "DAGRunPatchBody",
            json!({"type": "object", "properties": {
                "state": {"type": ["string", "null"], "enum": ["queued", "success", "failed", null]}, "note": note}}),
        ),
        (
            "PatchTaskInstanceBody",
            json!({"type": "object", "properties": {
                "new_state": {"type": ["string", "null"], "enum": ["success", "failed", "skipped", null]},
                "note": note, "include_upstream": b, "include_downstream": b,
                "include_future": {"type": "boolean", "description": "not supported: must be false"},
                "include_past": {"type": "boolean", "description": "not supported: must be false"}}}),
        ),
        (
            "EventLogResponse",
            json!({"type": "object", "required": ["event_log_id", "when", "event"], "properties": {
                "event_log_id": i, "when": {"type": "string", "format": "date-time"}, "dag_id": sn,
                "dag_display_name": sn, "task_id": sn, "task_display_name": sn, "run_id": sn,
                "map_index": {"type": ["integer", "null"]}, "try_number": {"type": ["integer", "null"]},
                "event": {"type": "string"}, "logical_date": dt, "owner": sn,
                "extra": {"type": ["string", "null"], "description": "JSON: what was asked, with `source` (api, ui, cli) and `remote_addr`"}}}),
        ),
        (
            "EventLogCollectionResponse",
            json!({"type": "object", "required": ["event_logs", "total_entries"], "properties": {
                "event_logs": {"type": "array", "items": r("EventLogResponse")}, "total_entries": i}}),
        ),
        (
            "BackfillPostBody",
            json!({"type": "object", "required": ["dag_id", "from_date", "to_date"], "properties": {
                "dag_id": {"type": "string"}, "from_date": {"type": "string", "format": "date-time"},
                "to_date": {"type": "string", "format": "date-time"}, "run_backwards": b,
                "dag_run_conf": {"type": "object"}, "reprocess_behavior": {"type": "string", "enum": ["none", "failed", "completed"], "default": "none"},
                "max_active_runs": {"type": "integer", "default": 10, "minimum": 1}, "run_on_latest_version": bn}}),
        ),
        (
            "BackfillResponse",
            json!({"type": "object", "required": ["id", "dag_id", "from_date", "to_date", "dag_run_conf", "is_paused", "reprocess_behavior", "max_active_runs", "created_at", "updated_at", "dag_display_name"],
                "properties": {"id": i, "dag_id": {"type": "string"}, "dag_display_name": {"type": "string"},
                "from_date": dt, "to_date": dt, "dag_run_conf": {"type": "object"}, "is_paused": b,
                "reprocess_behavior": {"type": "string", "enum": ["none", "failed", "completed"]}, "max_active_runs": i,
                "run_backwards": b, "created_at": dt, "completed_at": dt, "updated_at": dt, "triggering_user_name": sn,
                "total_runs": {"type": "integer", "description": "updraft: dates that get a run"},
                "finished_runs": {"type": "integer", "description": "updraft: of those, runs that ended"},
                "failed_runs": {"type": "integer", "description": "updraft: of those, runs that failed"},
                "skipped_dates": {"type": "integer", "description": "updraft: dates left alone (a run exists, see reprocess_behavior)"}}}),
        ),
        (
            "BackfillCollectionResponse",
            json!({"type": "object", "required": ["backfills", "total_entries"], "properties": {
                "backfills": {"type": "array", "items": r("BackfillResponse")}, "total_entries": i}}),
        ),
        (
            "DryRunBackfillCollectionResponse",
            json!({"type": "object", "required": ["backfills", "total_entries"], "properties": {
                "backfills": {"type": "array", "items": {"type": "object", "properties": {"logical_date": dt}}}, "total_entries": i}}),
        ),
    ];
    if let Some(c) = spec
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (k, v) in schemas {
            c.insert(k.to_string(), v);
        }
    }
}
