//! `/openapi.json`: every route of updraft's Airflow-shaped API, with its path and query
//! parameters (taken from the same [`Params`] the handlers parse with, so the two cannot
//! drift apart), request bodies and response codes. Schemas name Airflow's
//! (`v2-rest-api-generated.yaml`); each lists the fields updraft fills.

use axum::Json;
use serde_json::{json, Map, Value};

use super::query::{Kind, Params};
use super::{backfills, dags, events, misc, operate, runs, streams, task_instances};

/// One operation of the API.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    params: Params,
    body: Option<&'static str>,
    ok: (u16, Option<&'static str>),
    errors: &'static [u16],
    public: bool,
}

fn op(method: &'static str, path: &'static str, id: &'static str, summary: &'static str) -> Op {
    Op {
        method,
        path,
        id,
        summary,
        params: Params::new(),
        body: None,
        ok: (200, None),
        errors: &[401, 403, 404, 422],
        public: false,
    }
}

impl Op {
    fn q(mut self, p: Params) -> Self {
        self.params = p;
        self
    }
    fn body(mut self, schema: &'static str) -> Self {
        self.body = Some(schema);
        self
    }
    fn ok(mut self, status: u16, schema: &'static str) -> Self {
        self.ok = (status, Some(schema));
        self
    }
    fn no_content(mut self) -> Self {
        self.ok = (204, None);
        self
    }
    fn errors(mut self, e: &'static [u16]) -> Self {
        self.errors = e;
        self
    }
    fn public(mut self) -> Self {
        self.public = true;
        self.errors = &[];
        self
    }
}

fn operations() -> Vec<Op> {
    vec![
        op("post", "/auth/token", "create_token", "Get a bearer token")
            .body("LoginBody").ok(201, "TokenResponse").public().errors(&[400, 401, 429]),
        op("post", "/auth/token/cli", "create_token_cli", "Get a bearer token for airflowctl")
            .body("LoginBody").ok(201, "TokenResponse").public().errors(&[400, 401, 429]),
        op("get", "/api/v2/version", "get_version", "updraft's version")
            .ok(200, "VersionInfo").public(),
        op("get", "/api/v2/monitor/health", "get_health", "Database and scheduler health")
            .ok(200, "HealthInfoResponse").public(),
        op("get", "/api/v2/dags", "get_dags", "List DAGs")
            .q(dags::list_params()).ok(200, "DAGCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/dags/{dag_id}", "get_dag", "Get a DAG").ok(200, "DAGResponse"),
        op("patch", "/api/v2/dags/{dag_id}", "patch_dag", "Pause or unpause a DAG")
            .q(dags::patch_params()).body("DAGPatchBody").ok(200, "DAGResponse").errors(&[400, 401, 403, 404, 422]),
        op("get", "/api/v2/dags/{dag_id}/details", "get_dag_details", "Get a DAG with its file's settings")
            .ok(200, "DAGDetailsResponse"),
        op("get", "/api/v2/dags/{dag_id}/tasks", "get_tasks", "List a DAG's tasks")
            .q(dags::tasks_params()).ok(200, "TaskCollectionResponse").errors(&[400, 401, 403, 404, 422]),
        op("get", "/api/v2/dags/{dag_id}/tasks/{task_id}", "get_task", "Get a task").ok(200, "TaskResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagVersions", "get_dag_versions", "List a DAG's versions")
            .q(dags::versions_params()).ok(200, "DAGVersionCollectionResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagVersions/{version_number}", "get_dag_version", "Get a DAG version")
            .ok(200, "DagVersionResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagVersions/{version_number}/recordSchemas", "get_record_schemas",
           "updraft: the record schemas (JSON Schema) a DAG version's fetch tasks declare; publish and sink check records against them")
            .ok(200, "RecordSchemaCollectionResponse"),
        op("post", "/api/v2/dags/{dag_id}/tasks/{task_id}/replay", "replay_sink",
           "updraft: move a sink task's consumer group to the beginning, an offset or a time (pause a continuous DAG first)")
            .body("ReplayBody").ok(200, "ReplayResponse").errors(&[400, 401, 403, 404, 409, 422]),
        op("get", "/api/v2/streams/topics", "get_stream_topics",
           "updraft: the topics the DAGs publish to and consume from; per partition the offsets, per consumer group the committed offsets and lag")
            .ok(200, "StreamTopicCollectionResponse").errors(&[401, 403, 422]),
        op("get", "/api/v2/streams/topics/{topic}", "get_stream_topic",
           "updraft: one topic as in the list, plus its end-offset samples and messages/s over the last 15 minutes (sampled every 5 s by this web server)")
            .q(streams::topic_params()).ok(200, "StreamTopicResponse").errors(&[400, 401, 403, 404, 422]),
        op("get", "/api/v2/streams/topics/{topic}/partitions/{partition}/messages", "get_stream_messages",
           "updraft: the latest messages of a partition before offset `before` (default: the end), newest first, `limit` 1-100 (default 20); read without joining a group")
            .q(streams::messages_params()).ok(200, "StreamMessageCollectionResponse").errors(&[400, 401, 403, 404, 422, 502]),
        op("get", "/api/v2/dagSources/{dag_id}", "get_dag_source", "A DAG's file (JSON, or text/plain)")
            .q(dags::source_params()).ok(200, "DAGSourceResponse").errors(&[400, 401, 403, 404, 406, 422]),
        op("get", "/api/v2/dagStats", "get_dag_stats", "Runs per state of each DAG")
            .q(dags::stats_params()).ok(200, "DagStatsCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/dagWarnings", "list_dag_warnings", "DAG warnings (updraft raises none)")
            .q(dags::warnings_params()).ok(200, "DAGWarningCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/dagTags", "get_dag_tags", "Tags of live DAGs")
            .q(dags::tags_params()).ok(200, "DAGTagCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/dags/{dag_id}/dagRuns", "get_dag_runs", "List runs (`~` as dag_id: every DAG's)")
            .q(runs::list_params()).ok(200, "DAGRunCollectionResponse").errors(&[400, 401, 403, 404, 422]),
        op("post", "/api/v2/dags/{dag_id}/dagRuns", "trigger_dag_run", "Trigger a run with conf")
            .body("TriggerDAGRunPostBody").ok(200, "DAGRunResponse").errors(&[400, 401, 403, 404, 409, 422]),
        op("post", "/api/v2/dags/{dag_id}/dagRuns/list", "get_list_dag_runs_batch", "List runs with a JSON body (dag_id must be `~`)")
            .body("DAGRunsBatchBody").ok(200, "DAGRunCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", "get_dag_run", "Get a run")
            .ok(200, "DAGRunResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait", "wait_dag_run_until_finished", "Stream a run's state (NDJSON) until it finishes")
            .q(runs::wait_params()).ok(200, "NDJSON"),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", "get_task_instances", "List task instances (`~` for any DAG or run)")
            .q(task_instances::list_params()).ok(200, "TaskInstanceCollectionResponse").errors(&[400, 401, 403, 404, 422]),
        op("post", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list", "get_task_instances_batch", "List task instances with a JSON body (both ids `~`)")
            .body("TaskInstancesBatchBody").ok(200, "TaskInstanceCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", "get_task_instance", "Get a task instance")
            .ok(200, "TaskInstanceResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries", "get_task_instance_tries", "Every try of a task instance")
            .q(task_instances::map_index_params()).ok(200, "TaskInstanceHistoryCollectionResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}", "get_task_instance_try_details", "One try of a task instance")
            .q(task_instances::map_index_params()).ok(200, "TaskInstanceHistoryResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}", "get_log", "A try's log, paged (text/plain on request)")
            .q(task_instances::log_params()).ok(200, "TaskInstancesLogResponse"),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries", "get_xcom_entries", "List XCom entries (`~` for any DAG, run or task)")
            .q(task_instances::xcoms_params()).ok(200, "XComCollectionResponse").errors(&[400, 401, 403, 404, 422]),
        op("get", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}", "get_xcom_entry", "Get an XCom entry with its value")
            .q(task_instances::xcom_params()).ok(200, "XComResponseNative").errors(&[400, 401, 403, 404, 422]),
        op("post", "/api/v2/dags/{dag_id}/clearTaskInstances", "post_clear_task_instances", "Clear task instances so they run again (dry run by default, as Airflow)")
            .body("ClearTaskInstancesBody").ok(200, "TaskInstanceCollectionResponse"),
        op("post", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear", "clear_dag_run", "Clear a run's task instances (dry run: the task instances; else the run)")
            .body("DAGRunClearBody").ok(200, "DAGRunResponse"),
        op("patch", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", "patch_dag_run", "Mark a run success, failed or queued; set its note")
            .q(Params::new().list("update_mask")).body("DAGRunPatchBody").ok(200, "DAGRunResponse"),
        op("delete", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", "delete_dag_run", "Delete a run with its task instances, logs and XComs")
            .no_content(),
        op("patch", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", "patch_task_instance", "Mark a task instance (with upstream/downstream); set its note")
            .q(operate::patch_params()).body("PatchTaskInstanceBody").ok(200, "TaskInstanceCollectionResponse"),
        op("patch", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run", "patch_task_instance_dry_run", "The task instances a mark would change")
            .q(operate::patch_params()).body("PatchTaskInstanceBody").ok(200, "TaskInstanceCollectionResponse"),
        op("post", "/api/v2/backfills", "create_backfill", "Create a backfill: runs of type backfill for each schedule tick in the range")
            .body("BackfillPostBody").ok(200, "BackfillResponse").errors(&[401, 403, 404, 409, 422]),
        op("post", "/api/v2/backfills/dry_run", "create_backfill_dry_run", "The logical dates a backfill would run")
            .body("BackfillPostBody").ok(200, "DryRunBackfillCollectionResponse"),
        op("get", "/api/v2/backfills", "list_backfills", "List backfills (of one DAG with dag_id), newest first")
            .q(backfills::list_params()).ok(200, "BackfillCollectionResponse"),
        op("get", "/api/v2/backfills/{backfill_id}", "get_backfill", "Get a backfill with its progress")
            .ok(200, "BackfillResponse"),
        op("put", "/api/v2/backfills/{backfill_id}/pause", "pause_backfill", "Pause a backfill: no new runs start")
            .ok(200, "BackfillResponse").errors(&[401, 403, 404, 409]),
        op("put", "/api/v2/backfills/{backfill_id}/unpause", "unpause_backfill", "Unpause a backfill")
            .ok(200, "BackfillResponse").errors(&[401, 403, 404, 409]),
        op("put", "/api/v2/backfills/{backfill_id}/cancel", "cancel_backfill", "Cancel a backfill: dates not started are dropped, queued runs fail")
            .ok(200, "BackfillResponse").errors(&[401, 403, 404, 409]),
        op("get", "/api/v2/eventLogs", "get_event_logs", "The audit log (oldest first; order_by=-id for newest first)")
            .q(events::list_params()).ok(200, "EventLogCollectionResponse"),
        op("get", "/api/v2/eventLogs/{event_log_id}", "get_event_log", "One audit log entry")
            .ok(200, "EventLogResponse"),
        op("get", "/api/v2/importErrors", "get_import_errors", "List import errors")
            .q(misc::import_errors_params()).ok(200, "ImportErrorCollectionResponse").errors(&[400, 401, 403, 422]),
        op("get", "/api/v2/importErrors/{import_error_id}", "get_import_error", "Get an import error")
            .ok(200, "ImportErrorResponse"),
        op("get", "/api/v2/config", "get_config", "Configuration (403: never exposed, as Airflow's default)")
            .q(misc::config_params()).ok(200, "Config").errors(&[401, 403, 404, 406, 422]),
        op("get", "/api/v2/config/section/{section}/option/{option}", "get_config_value", "One option (403: never exposed)")
            .ok(200, "Config").errors(&[401, 403, 404, 406, 422]),
    ]
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request (e.g. a query parameter this endpoint does not implement)",
        401 => "Not authenticated",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        422 => "Validation Error",
        429 => "Too Many Requests (sign-in attempts with basic auth; see Retry-After)",
        502 => "Bad Gateway (the Kafka brokers did not answer in time)",
        503 => "Service Unavailable (too many sign-in attempts being checked; try again)",
        _ => "Error",
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn operation(o: &Op) -> Value {
    let mut params: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let mut schema = Kind::Str.schema();
            if name == "partition" {
                schema = json!({"type": "integer", "minimum": 0});
            }
            if name == "dag_run_id" {
                // Airflow's allowed_run_id_pattern (updraft also refuses `..`).
                schema["pattern"] = json!("^[A-Za-z0-9_.~:+-]+$");
                schema["maxLength"] = json!(250);
            }
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    for (name, kind) in &o.params.names {
        let mut p = json!({"name": name, "in": "query", "required": name == "interval", "schema": kind.schema()});
        if *kind == Kind::StrList || *kind == Kind::IntList {
            p["explode"] = json!(true);
        }
        if name == "order_by" && !o.params.sort_fields.is_empty() {
            p["description"] = json!(format!(
                "Repeatable; `-` for descending. Fields: {}",
                o.params.sort_fields.join(", ")
            ));
        }
        params.push(p);
    }
    let mut responses = Map::new();
    let ok = match o.ok.1 {
        Some("NDJSON") => {
            json!({"description": reason(o.ok.0), "content": {"application/x-ndjson": {"schema": {"type": "string"}}}})
        }
        Some(schema) => {
            json!({"description": reason(o.ok.0), "content": {"application/json": {"schema": reference(schema)}}})
        }
        None => json!({"description": reason(o.ok.0)}),
    };
    responses.insert(o.ok.0.to_string(), ok);
    // Every route: what the request guard refuses (a NUL byte, bad UTF-8, an oversized field,
    // a value Postgres cannot store), and, with basic auth, the sign-in throttle and the
    // hashing pool's queue.
    let mut errors: Vec<u16> = o.errors.to_vec();
    errors.push(400);
    if !o.public {
        errors.extend([429, 503]);
    }
    errors.sort_unstable();
    errors.dedup();
    for code in &errors {
        let schema = if *code == 422 {
            "HTTPValidationError"
        } else {
            "HTTPExceptionResponse"
        };
        responses.insert(
            code.to_string(),
            json!({"description": reason(*code), "content": {"application/json": {"schema": reference(schema)}}}),
        );
    }
    let mut v = json!({
        "operationId": o.id,
        "summary": o.summary,
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = o.body {
        v["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
    }
    if o.public {
        v["security"] = json!([]);
    }
    v
}

pub fn spec() -> Value {
    let mut doc = core_spec();
    // Variables, connections and pools (their own table of operations).
    super::openapi_admin::extend(&mut doc);
    super::openapi_operate::extend(&mut doc);
    doc
}

fn core_spec() -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let entry = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        entry[o.method] = operation(&o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "updraft API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Airflow 3's public REST API (/api/v2) as far as updraft implements it. Authenticate with a bearer token from POST /auth/token or HTTP basic auth. A query parameter an endpoint does not implement is a 400 naming it; an empty value counts as absent."},
        "security": [{"HTTPBearer": []}, {"HTTPBasic": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}, "HTTPBasic": {"type": "http", "scheme": "basic"}},
            "schemas": super::openapi_schemas::schemas(),
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation's response schema exists, and every route the router serves is in
    /// the document.
    #[test]
    fn the_document_is_complete() {
        let s = spec();
        let schemas = s["components"]["schemas"].as_object().unwrap();
        for o in operations() {
            for name in [o.body, o.ok.1]
                .into_iter()
                .flatten()
                .filter(|n| *n != "NDJSON")
            {
                assert!(
                    schemas.contains_key(name),
                    "{} {}: no schema {name}",
                    o.method,
                    o.path
                );
            }
        }
        for name in ["HTTPExceptionResponse", "HTTPValidationError"] {
            assert!(schemas.contains_key(name));
        }
        let paths = s["paths"].as_object().unwrap();
        let src = include_str!("mod.rs");
        let mut routes = 0;
        for line in src.lines().filter(|l| {
            l.contains(".route(") || l.trim_start().starts_with('"') || l.contains("&format!(")
        }) {
            let Some(p) = line.split('"').nth(1) else {
                continue;
            };
            if !p.contains("/api/") && !p.contains("{RUN}") && !p.contains("{TI}") {
                continue;
            }
            let p = p
                .replace("{RUN}", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}")
                .replace(
                    "{TI}",
                    "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
                )
                .replace("{{", "{")
                .replace("}}", "}")
                // Catch-all segments (keys with slashes) carry Airflow's parameter names.
                .replace("/variables/{*key}", "/variables/{variable_key}")
                .replace("/pools/{*name}", "/pools/{pool_name}");
            assert!(
                paths.contains_key(&p),
                "route {p} is not in the OpenAPI document"
            );
            routes += 1;
        }
        assert!(routes >= 25, "{routes}");
        assert!(paths.len() >= 30, "{}", paths.len());
    }
}
