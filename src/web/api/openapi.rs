//! `/openapi.json`: what updraft implements of Airflow 3's public API, written by hand from
//! the handlers (field names follow Airflow's `v2-rest-api-generated.yaml`).

use axum::Json;
use serde_json::{json, Value};

fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn ok(schema: Value) -> Value {
    let error = |what: &str| json!({"description": what, "content": {"application/json": {"schema": r("HTTPExceptionResponse")}}});
    json!({
        "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
        "400": error("Bad request: a NUL byte, bytes that are not UTF-8 or a field that is too long in the URL, or a value that cannot be stored"),
        "401": error("Not authenticated"),
        "404": error("Not found"),
        "429": error("Too many sign-in attempts (basic auth) for this user from this address; see Retry-After"),
        "503": error("Too many sign-in attempts (basic auth) are being checked; try again"),
    })
}

/// What a text parameter may hold (`web::guard`): no NUL byte, at most 1,024 characters.
fn text() -> Value {
    json!({"type": "string", "pattern": "^[^\\u0000]*$", "maxLength": 1024})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": text()})
}

fn query(name: &str, ty: &str) -> Value {
    let schema = if ty == "string" {
        text()
    } else {
        json!({"type": ty})
    };
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}

pub fn spec() -> Value {
    let s = json!({"type": "string"});
    let sn = json!({"type": ["string", "null"]});
    let dt = json!({"type": ["string", "null"], "format": "date-time"});
    let b = json!({"type": "boolean"});
    let i = json!({"type": "integer"});
    let page = [query("limit", "integer"), query("offset", "integer")];
    json!({
        "openapi": "3.1.0",
        "info": {"title": "updraft API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A subset of Airflow 3's public REST API (/api/v2). Authenticate with a bearer token from POST /auth/token or HTTP basic auth."},
        "security": [{"HTTPBearer": []}, {"HTTPBasic": []}],
        "paths": {
            "/auth/token": {"post": {"summary": "Get a bearer token", "security": [],
                "requestBody": {"required": true, "content": {"application/json": {"schema": obj(&["username", "password"], json!({"username": s, "password": s}))}}},
                "responses": {"201": {"description": "Created", "content": {"application/json": {"schema": obj(&["access_token"], json!({"access_token": s}))}}},
                              "401": {"description": "Wrong username or password"}}}},
            "/api/v2/dags": {"get": {"operationId": "get_dags", "parameters": [page[0], page[1], query("tags", "string"), query("dag_id_pattern", "string"), query("paused", "boolean"), query("exclude_stale", "boolean")],
                "responses": ok(r("DAGCollectionResponse"))}},
            "/api/v2/dags/{dag_id}": {
                "get": {"operationId": "get_dag", "parameters": [path_param("dag_id")], "responses": ok(r("DAGResponse"))},
                "patch": {"operationId": "patch_dag", "parameters": [path_param("dag_id"), query("update_mask", "string")],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": r("DAGPatchBody")}}},
                    "responses": ok(r("DAGResponse"))}},
            "/api/v2/dags/{dag_id}/dagRuns": {
                "get": {"operationId": "get_dag_runs", "description": "`~` as dag_id lists every DAG's runs.",
                    "parameters": [path_param("dag_id"), page[0], page[1], query("order_by", "string")], "responses": ok(r("DAGRunCollectionResponse"))},
                "post": {"operationId": "trigger_dag_run", "parameters": [path_param("dag_id")],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": r("TriggerDAGRunPostBody")}}},
                    "responses": ok(r("DAGRunResponse"))}},
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}": {"get": {"operationId": "get_dag_run",
                "parameters": [path_param("dag_id"), path_param("dag_run_id")], "responses": ok(r("DAGRunResponse"))}},
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances": {"get": {"operationId": "get_task_instances",
                "parameters": [path_param("dag_id"), path_param("dag_run_id")], "responses": ok(r("TaskInstanceCollectionResponse"))}},
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}": {"get": {"operationId": "get_log",
                "parameters": [path_param("dag_id"), path_param("dag_run_id"), path_param("task_id"), path_param("try_number"), query("token", "string"), query("full_content", "boolean")],
                "responses": ok(r("TaskInstancesLogResponse"))}},
            "/api/v2/importErrors": {"get": {"operationId": "get_import_errors", "parameters": page, "responses": ok(r("ImportErrorCollectionResponse"))}},
            "/api/v2/monitor/health": {"get": {"operationId": "get_health", "security": [], "responses": ok(r("HealthInfoResponse"))}},
            "/api/v2/version": {"get": {"operationId": "get_version", "responses": ok(obj(&["version"], json!({"version": s, "git_version": sn})))}},
        },
        "components": {
            "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}, "HTTPBasic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "HTTPExceptionResponse": obj(&["detail"], json!({"detail": s, "status": i, "title": s})),
                "DAGPatchBody": obj(&["is_paused"], json!({"is_paused": b})),
                "DagTagResponse": obj(&["name", "dag_id"], json!({"name": s, "dag_id": s, "dag_display_name": s})),
                "DAGResponse": obj(&["dag_id", "dag_display_name", "is_paused", "is_stale", "fileloc", "tags", "owners"], json!({
                    "dag_id": s, "dag_display_name": s, "is_paused": b, "is_stale": b, "is_active": b, "description": sn,
                    "tags": {"type": "array", "items": r("DagTagResponse")}, "owners": {"type": "array", "items": s},
                    "timetable_summary": sn, "timetable_description": sn, "fileloc": s, "relative_fileloc": sn, "file_token": s,
                    "last_parsed_time": dt, "max_active_tasks": i, "max_active_runs": i, "has_import_errors": b,
                    "next_dagrun_logical_date": dt, "next_dagrun_data_interval_start": dt, "next_dagrun_data_interval_end": dt, "next_dagrun_run_after": dt})),
                "DAGCollectionResponse": obj(&["dags", "total_entries"], json!({"dags": {"type": "array", "items": r("DAGResponse")}, "total_entries": i})),
                "TriggerDAGRunPostBody": obj(&[], json!({"dag_run_id": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.~:+-]*$", "maxLength": 250,
                    "description": "Airflow's allowed_run_id_pattern, without `..`; empty or null: generated"}, "logical_date": dt, "conf": {"type": ["object", "null"]}, "note": sn})),
                "DagVersionResponse": obj(&["id", "version_number", "dag_id", "created_at"], json!({"id": {"type": "string", "format": "uuid"}, "version_number": i, "dag_id": s, "bundle_name": sn, "created_at": dt})),
                "DAGRunResponse": obj(&["dag_run_id", "dag_id", "run_type", "state", "run_after", "dag_versions"], json!({
                    "dag_run_id": s, "dag_id": s, "dag_display_name": s, "logical_date": dt, "queued_at": dt, "start_date": dt, "end_date": dt,
                    "duration": {"type": ["number", "null"]}, "data_interval_start": dt, "data_interval_end": dt, "run_after": dt,
                    "run_type": {"enum": ["scheduled", "manual", "backfill"]}, "state": {"enum": ["queued", "running", "success", "failed"]},
                    "conf": {"type": "object"}, "note": sn, "dag_versions": {"type": "array", "items": r("DagVersionResponse")}})),
                "DAGRunCollectionResponse": obj(&["dag_runs", "total_entries"], json!({"dag_runs": {"type": "array", "items": r("DAGRunResponse")}, "total_entries": i})),
                "TaskInstanceResponse": obj(&["id", "task_id", "dag_id", "dag_run_id", "try_number", "max_tries"], json!({
                    "id": {"type": "string", "format": "uuid"}, "task_id": s, "dag_id": s, "dag_run_id": s, "map_index": i,
                    "state": {"type": ["string", "null"], "enum": [null, "scheduled", "queued", "running", "success", "failed", "up_for_retry", "upstream_failed", "skipped"]},
                    "try_number": i, "max_tries": i, "start_date": dt, "end_date": dt, "duration": {"type": ["number", "null"]}, "hostname": sn, "operator": sn})),
                "TaskInstanceCollectionResponse": obj(&["task_instances", "total_entries"], json!({"task_instances": {"type": "array", "items": r("TaskInstanceResponse")}, "total_entries": i})),
                "TaskInstancesLogResponse": obj(&["content"], json!({"content": {"type": "array", "items": obj(&["event"], json!({"event": s, "timestamp": dt, "stream": s}))}, "continuation_token": sn})),
                "ImportErrorResponse": obj(&["import_error_id", "timestamp", "filename", "stack_trace"], json!({"import_error_id": i, "timestamp": dt, "filename": s, "bundle_name": sn, "stack_trace": s})),
                "ImportErrorCollectionResponse": obj(&["import_errors", "total_entries"], json!({"import_errors": {"type": "array", "items": r("ImportErrorResponse")}, "total_entries": i})),
                "HealthInfoResponse": obj(&["metadatabase", "scheduler"], json!({"metadatabase": obj(&[], json!({"status": sn})), "scheduler": obj(&[], json!({"status": sn, "latest_scheduler_heartbeat": sn}))})),
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    let mut spec = spec();
    super::openapi_admin::extend(&mut spec);
    Json(spec)
}
