//! The schemas of `/openapi.json`, named as Airflow's, with the fields updraft sends.

use serde_json::{json, Value};

fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(key: &str, item: &str) -> Value {
    obj(
        &[key, "total_entries"],
        json!({key: {"type": "array", "items": r(item)}, "total_entries": {"type": "integer"}}),
    )
}

pub fn schemas() -> Value {
    let s = json!({"type": "string"});
    let sn = json!({"type": ["string", "null"]});
    let dt = json!({"type": ["string", "null"], "format": "date-time"});
    let b = json!({"type": "boolean"});
    let i = json!({"type": "integer"});
    let num = json!({"type": ["number", "null"]});
    let anyv = json!({});
    let strs = json!({"type": "array", "items": {"type": "string"}});
    let ti_state = json!({"type": ["string", "null"], "enum": [null, "scheduled", "queued", "running", "success", "failed", "up_for_retry", "upstream_failed", "skipped"]});
    let timedelta = json!({"type": ["object", "null"], "properties": {"__type": s, "days": i, "seconds": i, "microseconds": i}});
    let dag_props = json!({
        "dag_id": s, "dag_display_name": s, "is_paused": b, "is_stale": b, "is_active": b, "description": sn,
        "tags": {"type": "array", "items": r("DagTagResponse")}, "owners": strs,
        "timetable_summary": sn, "timetable_description": sn, "timetable_periodic": b, "timetable_partitioned": b,
        "is_backfillable": b, "fileloc": s, "relative_fileloc": sn, "file_token": s, "bundle_name": sn, "bundle_version": sn,
        "last_parsed_time": dt, "last_parse_duration": num, "last_expired": dt, "max_active_tasks": i, "max_active_runs": i,
        "max_consecutive_failed_dag_runs": i, "has_task_concurrency_limits": b, "has_import_errors": b,
        "next_dagrun_logical_date": dt, "next_dagrun_data_interval_start": dt, "next_dagrun_data_interval_end": dt,
        "next_dagrun_run_after": dt, "allowed_run_types": {"type": ["array", "null"]}});
    let mut details = dag_props.clone();
    for (k, v) in [
        ("catchup", b.clone()),
        ("dag_run_timeout", sn.clone()),
        ("doc_md", sn.clone()),
        ("start_date", dt.clone()),
        ("end_date", dt.clone()),
        ("params", json!({"type": ["object", "null"]})),
        ("timezone", sn.clone()),
        ("last_parsed", dt.clone()),
        ("default_args", json!({"type": ["object", "null"]})),
        ("concurrency", i.clone()),
        ("latest_dag_version", r("DagVersionResponse")),
        ("active_runs_count", i.clone()),
    ] {
        details[k] = v;
    }
    let ti_props = json!({
        "id": {"type": "string", "format": "uuid"}, "task_id": s, "task_display_name": s, "dag_id": s, "dag_display_name": s,
        "dag_run_id": s, "map_index": i, "rendered_map_index": sn, "logical_date": dt, "run_after": dt, "start_date": dt,
        "end_date": dt, "duration": num, "state": ti_state, "try_number": i, "max_tries": i, "hostname": sn, "unixname": sn,
        "pool": s, "pool_slots": i, "queue": sn, "priority_weight": i, "operator": sn, "operator_name": sn,
        "queued_when": dt, "scheduled_when": dt, "pid": {"type": ["integer", "null"]}, "executor": sn,
        "executor_config": s, "note": sn, "rendered_fields": {"type": "object"}, "dag_version": r("DagVersionResponse")});
    let xcom_props = json!({"key": s, "timestamp": dt, "logical_date": dt, "map_index": i, "task_id": s,
        "task_display_name": s, "dag_id": s, "dag_display_name": s, "run_id": s, "run_after": dt, "value": anyv});
    let range_body = |extra: Value| {
        let mut p = json!({"page_offset": i, "page_limit": i, "order_by": sn});
        for f in ["run_after", "logical_date", "start_date", "end_date"] {
            for suffix in ["gte", "gt", "lte", "lt"] {
                p[format!("{f}_{suffix}")] = dt.clone();
            }
        }
        for suffix in ["gte", "gt", "lte", "lt"] {
            p[format!("duration_{suffix}")] = num.clone();
        }
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        obj(&[], p)
    };
    let mut out = serde_json::Map::new();
    out.insert(
        "HTTPExceptionResponse".into(),
        obj(
            &["detail"],
            json!({"detail": {"anyOf": [s, {"type": "object"}]}, "status": i, "title": s}),
        ),
    );
    out.insert("HTTPValidationError".into(), obj(&[], json!({"detail": {"type": "array", "items": obj(&["loc", "msg", "type"], json!({
            "loc": {"type": "array", "items": {"anyOf": [s, i]}}, "msg": s, "type": s, "input": anyv}))}})));
    out.insert(
        "LoginBody".into(),
        obj(
            &["username", "password"],
            json!({"username": s, "password": s}),
        ),
    );
    out.insert(
        "TokenResponse".into(),
        obj(
            &["access_token"],
            json!({"access_token": s, "token_type": s, "expires_in": i}),
        ),
    );
    out.insert(
        "VersionInfo".into(),
        obj(
            &["version", "git_version"],
            json!({"version": s, "git_version": sn}),
        ),
    );
    out.insert("HealthInfoResponse".into(), obj(&["metadatabase", "scheduler"], json!({"metadatabase": obj(&[], json!({"status": sn})), "scheduler": obj(&[], json!({"status": sn, "latest_scheduler_heartbeat": sn}))})));
    out.insert(
        "DagTagResponse".into(),
        obj(
            &["name", "dag_id"],
            json!({"name": s, "dag_id": s, "dag_display_name": s}),
        ),
    );
    out.insert(
        "DAGResponse".into(),
        obj(
            &[
                "dag_id",
                "dag_display_name",
                "is_paused",
                "is_stale",
                "fileloc",
                "tags",
                "owners",
            ],
            dag_props,
        ),
    );
    out.insert(
        "DAGDetailsResponse".into(),
        obj(
            &[
                "dag_id",
                "dag_display_name",
                "is_paused",
                "catchup",
                "owners",
            ],
            details,
        ),
    );
    out.insert(
        "DAGCollectionResponse".into(),
        list_of("dags", "DAGResponse"),
    );
    out.insert(
        "DAGPatchBody".into(),
        obj(&["is_paused"], json!({"is_paused": b})),
    );
    out.insert("DagVersionResponse".into(), obj(&["id", "version_number", "dag_id", "created_at"], json!({"id": {"type": "string", "format": "uuid"}, "version_number": i, "dag_id": s, "dag_display_name": s, "bundle_name": sn, "bundle_version": sn, "bundle_url": sn, "created_at": dt})));
    let partition = obj(
        &["partition", "low", "end"],
        json!({"partition": i, "low": i, "end": i}),
    );
    let group_partition = obj(
        &["partition", "committed", "lag"],
        json!({"partition": i, "committed": {"type": ["integer", "null"]}, "lag": i}),
    );
    let topic_task = obj(
        &["dag_id", "task_id", "role", "topic", "group"],
        json!({"dag_id": s, "task_id": s, "role": {"type": "string", "enum": ["publishes", "consumes"]}, "topic": s, "group": sn}),
    );
    let stream_topic = obj(
        &["topic", "bootstrap_servers", "tasks"],
        json!({"topic": s, "bootstrap_servers": s, "tasks": {"type": "array", "items": topic_task},
        "exists": b, "end_offset": i, "error": s,
        "partitions": {"type": "array", "items": partition},
        "groups": {"type": "array", "items": obj(
            &["group", "lag", "partitions"],
            json!({"group": s, "lag": i, "partitions": {"type": "array", "items": group_partition}}),
        )}}),
    );
    out.insert(
        "StreamTopicCollectionResponse".into(),
        obj(
            &["topics", "total_entries"],
            json!({"total_entries": i, "topics": {"type": "array", "items": stream_topic.clone()}}),
        ),
    );
    let mut detail = stream_topic;
    detail["required"] = json!([
        "topic",
        "bootstrap_servers",
        "tasks",
        "sample_interval_seconds",
        "samples",
        "rates"
    ]);
    detail["properties"]["sample_interval_seconds"] = i.clone();
    detail["properties"]["samples"] = json!({"type": "array", "items": obj(&["at", "end_offset"], json!({"at": dt, "end_offset": i}))});
    detail["properties"]["rates"] = json!({"type": "array", "items": obj(&["at", "per_second"], json!({"at": dt, "per_second": {"type": "number"}}))});
    out.insert("StreamTopicResponse".into(), detail);
    out.insert(
        "StreamMessageCollectionResponse".into(),
        obj(
            &["topic", "partition", "low_offset", "end_offset", "first_offset", "before", "older_before", "messages", "total_entries"],
            json!({"topic": s, "partition": i, "low_offset": i, "end_offset": i, "first_offset": i, "before": i,
                   "older_before": {"type": ["integer", "null"], "description": "`before` of the next older page; null at the partition's oldest message"},
                   "total_entries": i,
                   "messages": {"type": "array", "items": obj(
                       &["partition", "offset", "timestamp", "key", "value", "format", "size", "truncated"],
                       json!({"partition": i, "offset": i, "timestamp": dt, "key": sn,
                              "value": {"description": "The value: JSON as JSON, other text as a string, bytes decoded lossily; null for a tombstone"},
                              "format": {"type": ["string", "null"], "enum": ["json", "text", "binary", null]},
                              "size": i, "truncated": b}),
                   )}}),
        ),
    );
    out.insert(
        "ReplayBody".into(),
        obj(
            &["to"],
            json!({"to": {"type": "string", "enum": ["beginning", "offset", "timestamp"]},
                   "offset": {"type": "integer", "minimum": 0}, "timestamp": {"type": "string", "format": "date-time"},
                   "partitions": {"type": "array", "items": i}}),
        ),
    );
    out.insert(
        "ReplayResponse".into(),
        obj(
            &["dag_id", "task_id", "group", "topic", "partitions"],
            json!({"dag_id": s, "task_id": s, "group": s, "topic": s, "partitions": {"type": "array", "items": obj(
                &["partition", "previous", "offset"],
                json!({"partition": i, "previous": {"type": ["integer", "null"]}, "offset": i}),
            )}}),
        ),
    );
    out.insert(
        "RecordSchemaCollectionResponse".into(),
        obj(
            &["dag_id", "version_number", "schemas", "total_entries"],
            json!({"dag_id": s, "version_number": i, "total_entries": i, "schemas": {"type": "array", "items": obj(
                &["task_id", "schema"],
                json!({"task_id": s, "schema": {"type": "object", "description": "A JSON Schema (2020-12)"}}),
            )}}),
        ),
    );
    out.insert(
        "DAGVersionCollectionResponse".into(),
        list_of("dag_versions", "DagVersionResponse"),
    );
    out.insert("TaskResponse".into(), obj(&["task_id", "operator_name"], json!({"task_id": s, "task_display_name": s, "owner": sn, "start_date": dt, "end_date": dt,
            "trigger_rule": sn, "depends_on_past": b, "wait_for_downstream": b, "retries": num, "queue": sn, "pool": sn, "pool_slots": num,
            "execution_timeout": timedelta, "retry_delay": timedelta, "retry_exponential_backoff": {"type": "number"}, "priority_weight": num,
            "weight_rule": sn, "ui_color": sn, "ui_fgcolor": sn, "template_fields": {"type": ["array", "null"]}, "downstream_task_ids": {"type": ["array", "null"]},
            "doc_md": sn, "operator_name": sn, "params": {"type": ["object", "null"]}, "class_ref": {"type": ["object", "null"]}, "is_mapped": b, "extra_links": strs})));
    out.insert(
        "TaskCollectionResponse".into(),
        list_of("tasks", "TaskResponse"),
    );
    out.insert("DAGSourceResponse".into(), obj(&["content", "dag_id", "version_number", "dag_display_name"], json!({"content": sn, "dag_id": s, "version_number": {"type": ["integer", "null"]}, "dag_display_name": s})));
    out.insert(
        "DagStatsCollectionResponse".into(),
        list_of("dags", "DagStatsResponse"),
    );
    out.insert("DagStatsResponse".into(), obj(&["dag_id", "stats"], json!({"dag_id": s, "dag_display_name": s, "stats": {"type": "array", "items": obj(&["state", "count"], json!({"state": s, "count": i}))}})));
    out.insert("DAGWarningCollectionResponse".into(), obj(&["dag_warnings", "total_entries"], json!({"dag_warnings": {"type": "array", "items": obj(&[], json!({"dag_id": s, "warning_type": s, "message": s, "timestamp": dt}))}, "total_entries": i})));
    out.insert(
        "DAGTagCollectionResponse".into(),
        obj(
            &["tags", "total_entries"],
            json!({"tags": strs, "total_entries": i}),
        ),
    );
    out.insert("TriggerDAGRunPostBody".into(), obj(&[], json!({"dag_run_id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.~:+-]*$", "maxLength": 250,
        "description": "Airflow's allowed_run_id_pattern, without `..`; empty or null: generated"}, "logical_date": dt, "conf": {"type": ["object", "null"]}, "note": sn})));
    out.insert("DAGRunResponse".into(), obj(&["dag_run_id", "dag_id", "run_type", "state", "run_after", "dag_versions"], json!({
            "dag_run_id": s, "dag_id": s, "dag_display_name": s, "logical_date": dt, "queued_at": dt, "start_date": dt, "end_date": dt,
            "duration": num, "data_interval_start": dt, "data_interval_end": dt, "run_after": dt, "last_scheduling_decision": dt,
            "run_type": {"enum": ["scheduled", "manual", "backfill"]}, "state": {"enum": ["queued", "running", "success", "failed"]},
            "triggered_by": sn, "triggering_user_name": sn, "conf": {"type": "object"}, "note": sn, "bundle_version": sn,
            "partition_key": sn, "partition_date": dt, "dag_versions": {"type": "array", "items": r("DagVersionResponse")}})));
    out.insert(
        "DAGRunCollectionResponse".into(),
        list_of("dag_runs", "DAGRunResponse"),
    );
    out.insert("DAGRunsBatchBody".into(), range_body(json!({"dag_ids": {"type": ["array", "null"]}, "states": {"type": ["array", "null"]}, "conf_contains": sn})));
    out.insert(
        "TaskInstanceResponse".into(),
        obj(
            &[
                "id",
                "task_id",
                "dag_id",
                "dag_run_id",
                "map_index",
                "try_number",
                "max_tries",
            ],
            ti_props.clone(),
        ),
    );
    out.insert(
        "TaskInstanceCollectionResponse".into(),
        list_of("task_instances", "TaskInstanceResponse"),
    );
    out.insert("TaskInstancesBatchBody".into(), range_body(json!({"dag_ids": {"type": ["array", "null"]}, "dag_run_ids": {"type": ["array", "null"]}, "task_ids": {"type": ["array", "null"]},
            "state": {"type": ["array", "null"]}, "pool": {"type": ["array", "null"]}, "queue": {"type": ["array", "null"]}, "executor": {"type": ["array", "null"]}})));
    out.insert(
        "TaskInstanceHistoryResponse".into(),
        obj(
            &["task_id", "dag_id", "dag_run_id", "try_number", "max_tries"],
            ti_props,
        ),
    );
    out.insert(
        "TaskInstanceHistoryCollectionResponse".into(),
        list_of("task_instances", "TaskInstanceHistoryResponse"),
    );
    out.insert("TaskInstancesLogResponse".into(), obj(&["content"], json!({"content": {"type": "array", "items": obj(&["event"], json!({"event": s, "timestamp": dt, "stream": s}))}, "continuation_token": sn})));
    out.insert(
        "XComResponseNative".into(),
        obj(
            &["key", "dag_id", "run_id", "task_id", "map_index", "value"],
            xcom_props,
        ),
    );
    out.insert(
        "XComCollectionResponse".into(),
        list_of("xcom_entries", "XComResponseNative"),
    );
    out.insert("ImportErrorResponse".into(), obj(&["import_error_id", "timestamp", "filename", "stack_trace"], json!({"import_error_id": i, "timestamp": dt, "filename": s, "bundle_name": sn, "stack_trace": s})));
    out.insert(
        "ImportErrorCollectionResponse".into(),
        list_of("import_errors", "ImportErrorResponse"),
    );
    out.insert(
        "Config".into(),
        obj(&["sections"], json!({"sections": {"type": "array"}})),
    );
    Value::Object(out)
}
