//! A JSON Schema (draft 2020-12) for DAG files, generated from the code that validates them:
//! the `uses:` names, trigger rules, accepted Airflow arguments and each operator's `with:`
//! config all come from the same constants and types the loader uses, so the schema cannot
//! drift from what loads. Editors use it to complete and check files; the loader remains the
//! judge (it also checks references, cycles, cron strings and templates).
//!
//! Two deliberate loosenings: every value inside `with:` may also be a marker (`$t`, `$x`,
//! ...), and an operator's required `with:` keys are not required here, because a task may get
//! them from a template through `extends`.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::read::limits;
use super::task::{TASK_ARGS_IGNORED, TASK_ARGS_WARNED};
use super::validate::{DAG_ARGS_IGNORED, DAG_ARGS_WARNED, SCHEMA_URL, SCHEMA_VERSION};
use crate::core::{Duration, TriggerRule};
use crate::operators::OperatorName;

/// Where the shipped copy lives, relative to the crate root.
pub const SCHEMA_FILE: &str = "schema/updraft-dag.schema.json";

/// The schema for a whole DAG file (one document).
pub fn json_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let duration = generator.subschema_for::<Duration>().to_value();
    let mut ops: Vec<OperatorName> = Vec::new();
    for (_, op) in OperatorName::USES {
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    let with_refs: Vec<(OperatorName, Value)> = ops
        .iter()
        .map(|op| {
            (
                *op,
                crate::operators::with_schema(*op, &mut generator).to_value(),
            )
        })
        .collect();
    let mut defs = generator.take_definitions(true);
    for def in defs.values_mut() {
        allow_markers(def);
    }
    let mut all_of = Vec::new();
    for (op, mut with) in with_refs {
        // Drop `required` on the config itself (see the module docs), wherever it is defined.
        match with
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            Some(name) => {
                if let Some(def) = defs.get_mut(name).and_then(Value::as_object_mut) {
                    def.remove("required");
                }
            }
            None => {
                allow_markers(&mut with);
                if let Some(obj) = with.as_object_mut() {
                    obj.remove("required");
                }
            }
        }
        let names: Vec<&str> = OperatorName::USES
            .iter()
            .filter(|(_, o)| *o == op)
            .map(|(n, _)| *n)
            .collect();
        defs.insert(format!("with_{}", op.as_str()), with);
        all_of.push(json!({
            "if": {"required": ["uses"], "properties": {"uses": {"enum": names}}},
            "then": {"properties": {"with": {"$ref": format!("#/$defs/with_{}", op.as_str())}}}
        }));
    }
    defs.insert("duration".into(), duration);
    defs.insert("marker".into(), marker_schema());
    defs.insert("task_fields".into(), task_fields());
    defs.insert(
        "task".into(),
        json!({
            "description": "A task: `id` and `uses`, the operator's arguments in `with`, upstreams in `needs`.",
            "allOf": [{"$ref": "#/$defs/task_fields"}, {"required": ["id"]}],
            "unevaluatedProperties": false,
        }),
    );
    if let Some(Value::Object(task)) = defs.get_mut("task") {
        if let Some(Value::Array(list)) = task.get_mut("allOf") {
            list.extend(all_of);
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://updraft.dev/schemas/dag/{SCHEMA_VERSION}.json"),
        "title": "updraft DAG file (Airflow 3.4 YAML Dag format)",
        "description": format!("One YAML document is one DAG. Files carry `$schema: {SCHEMA_URL}`."),
        "type": "object",
        "required": ["dag_id"],
        "properties": dag_properties(),
        "additionalProperties": false,
        "$defs": Value::Object(defs),
    })
}

fn dag_properties() -> Map<String, Value> {
    let datetime = json!({
        "type": "string",
        "description": "A date (`2024-01-01`, midnight UTC) or a timestamp (`2024-01-01T10:00:00Z`); naive times are UTC.",
        "pattern": "^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?$"
    });
    let mut p = Map::new();
    p.insert(
        "$schema".into(),
        json!({"type": "string", "pattern": SCHEMA_VERSION, "description": format!("The format version: `{SCHEMA_URL}`.")}),
    );
    p.insert(
        "dag_id".into(),
        json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "maxLength": 250, "description": "The DAG's id: letters, digits, `_`, `.`, `-`."}),
    );
    p.insert(
        "schedule".into(),
        json!({
            "description": "A 5-field cron string (`0 3 * * *`), a preset, `@continuous` (a new run as soon as the previous ends; needs `max_active_runs: 1`), or null for manual runs only.",
            "anyOf": [
                {"type": "null"},
                {"type": "string", "enum": ["@once", "@continuous", "@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"]},
                {"type": "string", "pattern": "^\\s*\\S+(\\s+\\S+){4}\\s*$"}
            ]
        }),
    );
    p.insert("start_date".into(), datetime.clone());
    p.insert("end_date".into(), datetime);
    p.insert("catchup".into(), json!({"type": "boolean", "default": false, "description": "Create runs for past intervals since `start_date`."}));
    p.insert("description".into(), json!({"type": "string"}));
    p.insert("doc_md".into(), json!({"type": "string"}));
    p.insert(
        "tags".into(),
        json!({"type": "array", "items": {"type": "string"}}),
    );
    p.insert(
        "params".into(),
        json!({"type": "object", "description": "Name → default value (or an Airflow Param mapping with `default`)."}),
    );
    p.insert(
        "max_active_runs".into(),
        json!({"type": "integer", "minimum": limits::MAX_ACTIVE.start(), "maximum": limits::MAX_ACTIVE.end(), "default": 16}),
    );
    p.insert(
        "max_active_tasks".into(),
        json!({"type": "integer", "minimum": limits::MAX_ACTIVE.start(), "maximum": limits::MAX_ACTIVE.end(), "default": 16}),
    );
    p.insert("dagrun_timeout".into(), json!({"$ref": "#/$defs/duration"}));
    p.insert("is_paused_upon_creation".into(), json!({"type": "boolean"}));
    p.insert(
        "templates".into(),
        json!({
            "type": "object",
            "description": "Name → partial task, merged into tasks that list the name in `extends`.",
            "additionalProperties": {"$ref": "#/$defs/task_fields", "unevaluatedProperties": false}
        }),
    );
    p.insert(
        "tasks".into(),
        json!({"type": "array", "items": {"$ref": "#/$defs/task"}}),
    );
    for name in DAG_ARGS_IGNORED.iter().chain(DAG_ARGS_WARNED) {
        p.insert(
            (*name).into(),
            json!({"description": "An Airflow DAG argument updraft accepts and ignores."}),
        );
    }
    p
}

fn task_fields() -> Value {
    let uses: Vec<&str> = OperatorName::USES.iter().map(|(n, _)| *n).collect();
    let rules: Vec<&str> = TriggerRule::ALL.iter().map(|(n, _)| *n).collect();
    let mut p = Map::new();
    p.insert(
        "id".into(),
        json!({"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "maxLength": 250}),
    );
    p.insert(
        "uses".into(),
        json!({"enum": uses, "description": "The operator."}),
    );
    p.insert("with".into(), json!({"type": "object", "description": "The operator's arguments; values may be markers."}));
    p.insert(
        "needs".into(),
        json!({"type": "array", "items": {"type": "string"}, "description": "Upstream task ids."}),
    );
    p.insert("extends".into(), json!({"type": "array", "items": {"type": "string"}, "description": "Template names, merged left to right."}));
    p.insert(
        "retries".into(),
        json!({"type": "integer", "minimum": limits::RETRIES.start(), "maximum": limits::RETRIES.end(), "default": 0}),
    );
    p.insert(
        "retry_delay".into(),
        json!({"$ref": "#/$defs/duration", "default": "5m"}),
    );
    p.insert(
        "retry_exponential_backoff".into(),
        json!({"description": "true (2.0: doubling), false, or the multiplier", "anyOf": [{"type": "boolean"}, {"type": "number", "minimum": 0}], "default": false}),
    );
    p.insert(
        "max_retry_delay".into(),
        json!({"$ref": "#/$defs/duration"}),
    );
    p.insert(
        "execution_timeout".into(),
        json!({"$ref": "#/$defs/duration"}),
    );
    p.insert(
        "trigger_rule".into(),
        json!({"enum": rules, "default": "all_success"}),
    );
    p.insert(
        "owner".into(),
        json!({"type": "string", "default": "airflow"}),
    );
    for name in ["doc_md", "pool", "queue"] {
        p.insert(name.into(), json!({"type": "string"}));
    }
    p.insert(
        "pool_slots".into(),
        json!({"type": "integer", "minimum": 1, "default": 1, "description": "slots of the pool one try takes"}),
    );
    for name in TASK_ARGS_IGNORED.iter().chain(TASK_ARGS_WARNED) {
        p.insert(
            (*name).into(),
            json!({"description": "An Airflow task argument updraft accepts and ignores."}),
        );
    }
    json!({"type": "object", "properties": p})
}

fn marker_schema() -> Value {
    let one = |key: &str, value: Value, description: &str| {
        json!({
            "type": "object",
            "description": description,
            "properties": {key: value},
            "required": [key],
            "additionalProperties": false
        })
    };
    let xcom = json!({"anyOf": [
        {"type": "string"},
        {"type": "object", "properties": {"task": {"type": "string"}, "key": {"type": "string"}}, "required": ["task"], "additionalProperties": false}
    ]});
    let template = "A Jinja template rendered when the task runs.";
    let xcom_doc = "An upstream task's XCom: `task` or `{task, key}`.";
    json!({"oneOf": [
        one("$t", json!({"type": "string"}), template),
        one("$template", json!({"type": "string"}), template),
        one("$x", xcom.clone(), xcom_doc),
        one("$xcom", xcom, xcom_doc),
        one("$const", json!(true), "A value taken verbatim; markers inside are not interpreted."),
        one("$f", json!({"type": "string"}), "A file's content; the path is relative to the DAG file."),
    ]})
}

/// Lets every value below `schema` (properties, items, map values) also be a marker.
fn allow_markers(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let wrap = |v: &mut Value| {
        allow_markers(v);
        let inner = std::mem::take(v);
        *v = json!({"anyOf": [inner, {"$ref": "#/$defs/marker"}]});
    };
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(wrap);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v @ Value::Object(_)) = obj.get_mut(key) {
            wrap(v);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            list.iter_mut().for_each(allow_markers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_what_the_loader_knows() {
        let s = json_schema();
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        let uses = s["$defs"]["task_fields"]["properties"]["uses"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(uses.len(), OperatorName::USES.len());
        let rules = s["$defs"]["task_fields"]["properties"]["trigger_rule"]["enum"]
            .as_array()
            .unwrap();
        assert!(rules.contains(&json!("none_failed_min_one_success")));
        let bash = serde_json::to_string(&s["$defs"]).unwrap();
        assert!(bash.contains("bash_command"), "{bash}");
        assert!(s["$defs"]["with_bash"].is_object());
        assert!(s["properties"]["owner_links"].is_object());
        assert!(s["properties"].get("default_args").is_none());
    }

    #[test]
    fn markers_are_allowed_inside_with() {
        let mut v = json!({"type": "object", "properties": {"a": {"type": "string"}, "m": {"type": "object", "additionalProperties": {"type": "string"}}}});
        allow_markers(&mut v);
        assert_eq!(v["properties"]["a"]["anyOf"][1]["$ref"], "#/$defs/marker");
        assert_eq!(
            v["properties"]["m"]["anyOf"][0]["additionalProperties"]["anyOf"][1]["$ref"],
            "#/$defs/marker"
        );
    }

    /// The shipped file must match the code. Regenerate with
    /// `UPDATE_SCHEMA=1 cargo test --lib dag::schema` (or `updraft dags schema > schema/updraft-dag.schema.json`).
    #[test]
    fn shipped_schema_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_FILE);
        let generated = format!(
            "{}\n",
            serde_json::to_string_pretty(&json_schema()).unwrap()
        );
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == generated,
            "{SCHEMA_FILE} is out of date: run `UPDATE_SCHEMA=1 cargo test --lib dag::schema` \
             (or `cargo run -- dags schema > {SCHEMA_FILE}`)"
        );
    }
}
