//! Record schemas as contracts: the record a `fetch` task declares (its `fields:` mapping)
//! as a JSON Schema, and the check that `publish` and `sink` run on each record against it.
//!
//! Why a subset: the schema is always generated here from a mapping, so the checker needs
//! only what the generator writes: an object, every declared key `required`, per key a
//! `type` (one or a list) and `format: uuid`. Extra keys are allowed (`additionalProperties`
//! is true): a record from another producer may carry more than the contract asks. What a
//! mapping spec says about a value's type:
//! - `$uuid` → a string in UUID form; `$now`, `=literal` and `"{a} {b}"` formats → a string;
//! - a path `a.b` → any JSON value but null (the API decides: `post_code` is a number or a
//!   string); an optional path `a.b?` → any value, null included.
//!
//! The schema carries `x-updraft-source` (`dag_id.task_id`), and is served per DAG version:
//! each stored version has its own, so a contract changes only with a new version.

use serde_json::{json, Map, Value};

use super::fetch::mapping::{Mapping, Spec};
use super::fetch::Fields;

/// Where the JSON Schema vocabulary is defined.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

const ANY_BUT_NULL: [&str; 5] = ["string", "number", "boolean", "object", "array"];

/// The JSON Schema of the records a fetch task's `fields:` produce; `None` if the mapping
/// does not compile (the DAG would not have loaded).
pub fn record_schema(source: &str, fields: &Fields) -> Option<Value> {
    let mapping = Mapping::compile(&fields.0).ok()?;
    let mut properties = Map::new();
    for (key, spec) in &mapping.fields {
        let p = match spec {
            Spec::Uuid => json!({"type": "string", "format": "uuid"}),
            Spec::Now | Spec::Literal(_) | Spec::Format(_) => json!({"type": "string"}),
            Spec::Path {
                optional: false, ..
            } => json!({"type": ANY_BUT_NULL}),
            Spec::Path { optional: true, .. } => json!({}),
        };
        properties.insert(key.clone(), p);
    }
    let required: Vec<&String> = mapping.fields.iter().map(|(k, _)| k).collect();
    Some(json!({
        "$schema": DIALECT,
        "title": format!("The record of {source}"),
        "x-updraft-source": source,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": true,
    }))
}

/// `schema_from:` of a publish or sink task: the fetch task whose declared record the
/// task's records must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaFrom {
    /// The DAG of the fetch task (its current version); default: this task's DAG.
    #[serde(default)]
    pub dag_id: Option<String>,
    /// The fetch task.
    pub task_id: String,
}

/// A record schema compiled for checking many records.
#[derive(Clone, Debug, PartialEq)]
pub struct Contract {
    /// `dag_id.task_id` of the fetch task that declares it, for dead letters' reasons.
    pub source: String,
    fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq)]
struct Field {
    name: String,
    required: bool,
    /// Allowed JSON types; empty: any.
    types: Vec<String>,
    uuid: bool,
}

impl Contract {
    /// Compiles a schema [`record_schema`] wrote (or one of the same subset).
    pub fn compile(schema: &Value) -> Result<Contract, String> {
        let source = schema
            .get("x-updraft-source")
            .and_then(Value::as_str)
            .unwrap_or("a record schema")
            .to_string();
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err("a record schema must have `type: object`".into());
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut fields = Vec::new();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let types = match p.get("type") {
                    None => Vec::new(),
                    Some(Value::String(t)) => vec![t.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    Some(other) => return Err(format!("`{name}`: `type` {other} is not a type")),
                };
                fields.push(Field {
                    name: name.clone(),
                    required: required.contains(&name.as_str()),
                    types,
                    uuid: p.get("format").and_then(Value::as_str) == Some("uuid"),
                });
            }
        }
        Ok(Contract { source, fields })
    }

    /// Checks one record; the error lists every field that breaks the contract.
    pub fn check(&self, record: &Value) -> Result<(), String> {
        let Some(object) = record.as_object() else {
            return Err(format!(
                "breaks the record schema of {}: not a JSON object",
                self.source
            ));
        };
        let mut problems = Vec::new();
        for f in &self.fields {
            let Some(v) = object.get(&f.name) else {
                if f.required {
                    problems.push(format!("`{}` is missing", f.name));
                }
                continue;
            };
            if !f.types.is_empty() && !f.types.iter().any(|t| is_type(v, t)) {
                problems.push(format!(
                    "`{}` is {}, not {}",
                    f.name,
                    type_name(v),
                    f.types.join(" or ")
                ));
            } else if f.uuid
                && v.as_str()
                    .is_some_and(|s| uuid::Uuid::parse_str(s).is_err())
            {
                problems.push(format!("`{}` is not a UUID", f.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "breaks the record schema of {}: {}",
                self.source,
                problems.join("; ")
            ))
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        other => type_name(v) == other,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design() -> Value {
        let fields: Fields = serde_json::from_value(super::super::fetch::design_fields()).unwrap();
        record_schema("user_automation.fetch_users", &fields).unwrap()
    }

    #[test]
    fn the_design_record_becomes_a_schema() {
        let s = design();
        assert_eq!(s["$schema"], DIALECT);
        assert_eq!(s["required"][0], "id");
        assert_eq!(s["required"].as_array().unwrap().len(), 12);
        assert_eq!(
            s["properties"]["id"],
            json!({"type": "string", "format": "uuid"})
        );
        assert_eq!(s["properties"]["address"], json!({"type": "string"}));
        assert_eq!(s["properties"]["post_code"]["type"][1], "number");
    }

    #[test]
    fn records_are_checked_field_by_field() {
        let c = Contract::compile(&design()).unwrap();
        let mut good = json!({
            "id": "6f1c8a52-3f55-4c38-9d2c-6a0f2a7b9e11", "first_name": "A", "last_name": "B",
            "gender": "f", "address": "1 Road, C, S, X", "post_code": 12345, "email": "a@b",
            "username": "ab", "dob": "d", "registered_date": "r", "phone": "p", "picture": "u",
            "extra": {"allowed": true},
        });
        assert_eq!(c.check(&good), Ok(()));
        good["post_code"] = json!("AB1 2CD");
        assert_eq!(c.check(&good), Ok(()));

        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove("email");
        bad["id"] = json!("not-a-uuid");
        bad["post_code"] = Value::Null;
        bad["address"] = json!(7);
        let e = c.check(&bad).unwrap_err();
        assert!(
            e.starts_with("breaks the record schema of user_automation.fetch_users: "),
            "{e}"
        );
        for part in [
            "`id` is not a UUID",
            "`email` is missing",
            "`post_code` is null, not string or number or boolean or object or array",
            "`address` is number, not string",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        assert!(c
            .check(&json!([1]))
            .unwrap_err()
            .contains("not a JSON object"));
    }

    #[test]
    fn optional_paths_allow_null_and_bad_schemas_are_refused() {
        let fields = Fields(vec![("nick".into(), "login.nick?".into())]);
        let c = Contract::compile(&record_schema("d.t", &fields).unwrap()).unwrap();
        assert_eq!(c.check(&json!({"nick": null})), Ok(()));
        assert!(c
            .check(&json!({}))
            .unwrap_err()
            .contains("`nick` is missing"));
        assert!(Contract::compile(&json!({"type": "array"})).is_err());
    }
}
