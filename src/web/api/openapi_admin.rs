//! The OpenAPI entries of the variables, connections and pools endpoints (Airflow 3's
//! shapes), merged into [`super::openapi::spec`].

use serde_json::{json, Value};

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn err(code: &str, what: &str) -> (String, Value) {
    (
        code.to_string(),
        json!({"description": what, "content": {"application/json": {"schema": r("HTTPExceptionResponse")}}}),
    )
}

fn responses(code: &str, schema: Option<Value>, errors: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    let ok = match schema {
        Some(s) => json!({"description": "OK", "content": {"application/json": {"schema": s}}}),
        None => json!({"description": "No content"}),
    };
    m.insert(code.into(), ok);
    for (c, w) in [("401", "Not authenticated"), ("403", "Forbidden")]
        .iter()
        .chain(errors)
    {
        let (k, v) = err(c, w);
        m.insert(k, v);
    }
    Value::Object(m)
}

fn q(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}})
}

fn order_by() -> Value {
    json!({"name": "order_by", "in": "query", "required": false, "schema": {"type": "array", "items": {"type": "string"}}})
}

fn path(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": r(name)}}})
}

/// The three collections' paths: (collection path, item path, item parameter, tag, schema
/// prefix, pattern parameter).
fn crud(
    base: &str,
    item: &str,
    param: &str,
    op: &str,
    schema: &str,
    pattern: &str,
) -> [(String, Value); 2] {
    let list_params = json!([
        q("limit", "integer"),
        q("offset", "integer"),
        order_by(),
        q(&format!("{pattern}_pattern"), "string"),
        q(&format!("{pattern}_prefix_pattern"), "string")
    ]);
    [
        (
            base.to_string(),
            json!({
                "get": {"operationId": format!("get_{op}s"), "parameters": list_params,
                        "responses": responses("200", Some(r(&format!("{schema}CollectionResponse"))), &[("400", "Bad order_by or unknown parameter"), ("422", "Bad parameter value")])},
                "post": {"operationId": format!("post_{op}"), "requestBody": body(&format!("{schema}Body")),
                         "responses": responses("201", Some(r(&format!("{schema}Response"))), &[("400", "Bad request"), ("409", "Already exists"), ("422", "Invalid body")])},
            }),
        ),
        (
            item.to_string(),
            json!({
                "get": {"operationId": format!("get_{op}"), "parameters": [path(param)],
                        "responses": responses("200", Some(r(&format!("{schema}Response"))), &[("404", "Not found")])},
                "patch": {"operationId": format!("patch_{op}"), "parameters": [path(param), {"name": "update_mask", "in": "query", "required": false, "schema": {"type": "array", "items": {"type": "string"}}}],
                          "requestBody": body(&format!("{schema}Body")),
                          "responses": responses("200", Some(r(&format!("{schema}Response"))), &[("400", "Bad request"), ("404", "Not found"), ("422", "Invalid body")])},
                "delete": {"operationId": format!("delete_{op}"), "parameters": [path(param)],
                           "responses": responses("204", None, &[("400", "Cannot be deleted"), ("404", "Not found")])},
            }),
        ),
    ]
}

/// Adds the paths and schemas to `spec`.
pub fn extend(spec: &mut Value) {
    let s = json!({"type": "string"});
    let sn = json!({"type": ["string", "null"]});
    let i = json!({"type": "integer"});
    let inn = json!({"type": ["integer", "null"]});
    let b = json!({"type": "boolean"});
    let mut paths = Vec::new();
    paths.extend(crud(
        "/api/v2/variables",
        "/api/v2/variables/{variable_key}",
        "variable_key",
        "variable",
        "Variable",
        "variable_key",
    ));
    paths.extend(crud(
        "/api/v2/connections",
        "/api/v2/connections/{connection_id}",
        "connection_id",
        "connection",
        "Connection",
        "connection_id",
    ));
    paths.extend(crud(
        "/api/v2/pools",
        "/api/v2/pools/{pool_name}",
        "pool_name",
        "pool",
        "Pool",
        "pool_name",
    ));
    paths.push((
        "/api/v2/connections/test".into(),
        json!({"post": {"operationId": "test_connection", "description": "Off unless core.test_connection (UPDRAFT_TEST_CONNECTION) is set: 403.",
            "requestBody": body("ConnectionBody"),
            "responses": responses("200", Some(r("ConnectionTestResponse")), &[("400", "Bad request"), ("422", "Invalid body")])}}),
    ));
    let schemas = [
        (
            "VariableBody",
            json!({"type": "object", "required": ["key", "value"], "additionalProperties": false,
            "properties": {"key": {"type": "string", "maxLength": 250}, "value": {}, "description": sn, "team_name": sn}}),
        ),
        (
            "VariableResponse",
            json!({"type": "object", "required": ["key", "is_encrypted"],
            "properties": {"key": s, "value": sn, "description": sn, "is_encrypted": b, "team_name": sn}}),
        ),
        (
            "VariableCollectionResponse",
            json!({"type": "object", "required": ["variables", "total_entries"],
            "properties": {"variables": {"type": "array", "items": r("VariableResponse")}, "total_entries": i}}),
        ),
        (
            "ConnectionBody",
            json!({"type": "object", "required": ["connection_id", "conn_type"], "additionalProperties": false,
            "properties": {"connection_id": {"type": "string", "maxLength": 200, "pattern": "^[\\w.-]+$"}, "conn_type": s, "description": sn,
                           "host": sn, "login": sn, "schema": sn, "port": inn, "password": sn, "extra": sn, "team_name": sn}}),
        ),
        (
            "ConnectionResponse",
            json!({"type": "object", "required": ["connection_id", "conn_type"],
            "properties": {"connection_id": s, "conn_type": s, "description": sn, "host": sn, "login": sn, "schema": sn,
                           "port": inn, "password": sn, "extra": sn, "team_name": sn}}),
        ),
        (
            "ConnectionCollectionResponse",
            json!({"type": "object", "required": ["connections", "total_entries"],
            "properties": {"connections": {"type": "array", "items": r("ConnectionResponse")}, "total_entries": i}}),
        ),
        (
            "ConnectionTestResponse",
            json!({"type": "object", "required": ["status", "message"], "properties": {"status": b, "message": s}}),
        ),
        (
            "PoolBody",
            json!({"type": "object", "required": ["name", "slots"], "additionalProperties": false,
            "properties": {"name": s, "slots": {"type": "integer", "minimum": -1}, "description": sn, "include_deferred": b, "team_name": sn}}),
        ),
        (
            "PoolResponse",
            json!({"type": "object",
            "required": ["name", "slots", "include_deferred", "occupied_slots", "running_slots", "queued_slots", "scheduled_slots", "open_slots", "deferred_slots"],
            "properties": {"name": s, "slots": i, "description": sn, "include_deferred": b, "occupied_slots": i, "running_slots": i,
                           "queued_slots": i, "scheduled_slots": i, "open_slots": i, "deferred_slots": i, "team_name": sn}}),
        ),
        (
            "PoolCollectionResponse",
            json!({"type": "object", "required": ["pools", "total_entries"],
            "properties": {"pools": {"type": "array", "items": r("PoolResponse")}, "total_entries": i}}),
        ),
    ];
    if let Some(p) = spec.get_mut("paths").and_then(Value::as_object_mut) {
        for (k, v) in paths {
            p.insert(k, v);
        }
    }
    if let Some(c) = spec
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (k, v) in schemas {
            c.insert(k.to_string(), v);
        }
    }
}
