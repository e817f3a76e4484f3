//! `/api/v2/variables`, `/api/v2/connections` and `/api/v2/pools`: Airflow's shapes, codes and
//! parameters, secrets never answered, and Airflow's own Python client against them.

use serde_json::{json, Value};

use crate::web_support::*;
use updraft::core::fernet::{FernetKeys, Vault};

async fn app() -> TestApp {
    let key = FernetKeys::generate_key();
    TestApp::spawn_with(move |s| s.vault = Vault::from_setting(Some(&key)).unwrap()).await
}

async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn variables_endpoints_follow_airflow() {
    let app = app().await;
    let t = app.token().await;
    let (s, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/variables",
        Some(json!({"key": "region", "value": "eu", "description": "where"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v,
        json!({"key": "region", "value": "eu", "description": "where", "is_encrypted": true, "team_name": null})
    );
    let (s, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/variables",
        Some(json!({"key": "region", "value": "x"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = call(
        &app,
        &t,
        "POST",
        "/api/v2/variables",
        Some(json!({"key": "cfg", "value": {"a": [1, 2], "password": "p4ss"}})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(
        &app,
        &t,
        "POST",
        "/api/v2/variables",
        Some(json!({"key": "db_password", "value": "hunter22"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/variables",
        Some(json!({"key": "x", "value": "y", "colour": 1})),
    )
    .await;
    assert_eq!(s, 422, "{v}");

    let (_, v) = call(&app, &t, "GET", "/api/v2/variables/db_password", None).await;
    assert_eq!(v["value"], "***", "{v}");
    let (_, v) = call(&app, &t, "GET", "/api/v2/variables/cfg", None).await;
    assert_eq!(v["value"], r#"{"a": [1, 2], "password": "***"}"#, "{v}");
    let (s, v) = call(
        &app,
        &t,
        "GET",
        "/api/v2/variables?variable_key_pattern=re|cf&order_by=-key&limit=",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let keys: Vec<&str> = v["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        (keys, v["total_entries"].as_i64()),
        (vec!["region", "cfg"], Some(2))
    );
    let (s, v) = call(
        &app,
        &t,
        "GET",
        "/api/v2/variables?limit=1&offset=1&order_by=key",
        None,
    )
    .await;
    assert_eq!(
        (
            s,
            v["variables"][0]["key"].as_str(),
            v["total_entries"].as_i64()
        ),
        (200, Some("db_password"), Some(3))
    );
    let (s, v) = call(&app, &t, "GET", "/api/v2/variables?order_by=colour", None).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains("'colour' is disallowed"));
    let (s, v) = call(&app, &t, "GET", "/api/v2/variables?colour=1", None).await;
    assert!(
        s == 400 && v["detail"].as_str().unwrap().contains("colour"),
        "{v}"
    );

    let (s, v) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/variables/region?update_mask=description",
        Some(json!({"key": "region", "value": "ignored", "description": "new"})),
    )
    .await;
    assert_eq!(
        (s, v["value"].as_str(), v["description"].as_str()),
        (200, Some("eu"), Some("new")),
        "{v}"
    );
    let (s, _) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/variables/region",
        Some(json!({"key": "other", "value": "x"})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/variables/nope",
        Some(json!({"key": "nope", "value": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(&app, &t, "DELETE", "/api/v2/variables/region", None).await;
    assert_eq!(s, 204);
    let (s, v) = call(&app, &t, "GET", "/api/v2/variables/region", None).await;
    assert_eq!(s, 404);
    assert_eq!(v["detail"], "The Variable with key: `region` was not found");
}

#[tokio::test]
async fn connections_never_answer_their_secrets() {
    let app = app().await;
    let t = app.token().await;
    let body = json!({"connection_id": "wh", "conn_type": "postgres", "host": "db", "port": 5432, "login": "etl",
                      "password": "S3cr3t-pw", "schema": "dw", "extra": "{\"sslmode\": \"require\", \"api_token\": \"tok\"}"});
    let (s, v) = call(&app, &t, "POST", "/api/v2/connections", Some(body.clone())).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["password"], "***");
    assert_eq!(v["extra"], r#"{"sslmode": "require", "api_token": "***"}"#);
    let (s, _) = call(&app, &t, "POST", "/api/v2/connections", Some(body)).await;
    assert_eq!(s, 409);
    let (s, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/connections",
        Some(json!({"connection_id": "bad id", "conn_type": "http"})),
    )
    .await;
    assert_eq!(s, 422, "{v}");

    let (s, v) = call(
        &app,
        &t,
        "GET",
        "/api/v2/connections?connection_id_pattern=w",
        None,
    )
    .await;
    assert_eq!((s, v["total_entries"].as_i64()), (200, Some(1)));
    let text = v.to_string();
    assert!(
        !text.contains("S3cr3t-pw") && !text.contains("\"tok\""),
        "{text}"
    );

    // The UI and clients send `***` back: the stored secrets stay.
    let (s, v) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/connections/wh",
        Some(json!({"connection_id": "wh", "conn_type": "postgres",
        "host": "db2", "port": 5432, "login": "etl", "password": "***", "schema": "dw",
        "extra": "{\"sslmode\": \"require\", \"api_token\": \"***\"}"})),
    )
    .await;
    assert_eq!((s, v["host"].as_str()), (200, Some("db2")), "{v}");
    let vault = app.pool().clone();
    let stored = updraft::db::connections::get(&vault, &Vault::without_keys(), "wh").await;
    assert!(stored.is_err(), "encrypted: unreadable without the key");
    let (s, v) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/connections/wh?update_mask=port",
        Some(json!({"connection_id": "wh", "conn_type": "x", "port": 6432})),
    )
    .await;
    assert_eq!(
        (
            s,
            v["port"].as_i64(),
            v["conn_type"].as_str(),
            v["host"].as_str()
        ),
        (200, Some(6432), Some("postgres"), Some("db2")),
        "{v}"
    );
    let (s, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/connections/test",
        Some(json!({"connection_id": "wh", "conn_type": "postgres"})),
    )
    .await;
    assert_eq!(s, 403, "testing is off by default: {v}");
    let (s, _) = call(&app, &t, "DELETE", "/api/v2/connections/wh", None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, &t, "DELETE", "/api/v2/connections/wh", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn the_password_survives_an_update_that_sends_it_masked() {
    let key = FernetKeys::generate_key();
    let vault = Vault::from_setting(Some(&key)).unwrap();
    let v2 = vault.clone();
    let app = TestApp::spawn_with(move |s| {
        s.vault = v2;
        s.test_connection = true;
    })
    .await;
    let t = app.token().await;
    let url = crate::helpers::admin_url();
    let pg = updraft::core::connection::Connection::from_uri("meta", &url).unwrap();
    let mut body = json!({"connection_id": "meta", "conn_type": "postgres", "host": pg.host, "port": pg.port,
                          "login": pg.login, "schema": pg.schema, "password": "not-needed"});
    let (s, _) = call(&app, &t, "POST", "/api/v2/connections", Some(body.clone())).await;
    assert_eq!(s, 201);
    body["password"] = json!("***");
    let (s, _) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/connections/meta",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 200);
    let stored = updraft::db::connections::get(app.pool(), &vault, "meta")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.conn.password.as_deref(), Some("not-needed"));
    // Testing is on here: a real round trip to this Postgres.
    let (s, v) = call(&app, &t, "POST", "/api/v2/connections/test", Some(body)).await;
    assert_eq!((s, v["status"].as_bool()), (200, Some(true)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("PostgreSQL"), "{v}");
    assert!(!v.to_string().contains("not-needed"));
    let (_, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/connections/test",
        Some(json!({"connection_id": "x", "conn_type": "http", "host": "127.0.0.1", "port": 9})),
    )
    .await;
    assert_eq!(v["status"], false, "{v}");
}

#[tokio::test]
async fn pools_endpoints_follow_airflow() {
    let app = app().await;
    let t = app.token().await;
    let (s, v) = call(&app, &t, "GET", "/api/v2/pools", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"pools": [{"name": "default_pool", "slots": 128, "description": "Default pool", "include_deferred": false,
        "occupied_slots": 0, "running_slots": 0, "queued_slots": 0, "scheduled_slots": 0, "open_slots": 128, "deferred_slots": 0,
        "team_name": null}], "total_entries": 1})
    );
    let (s, v) = call(
        &app,
        &t,
        "POST",
        "/api/v2/pools",
        Some(json!({"name": "etl", "slots": 4, "description": "ETL"})),
    )
    .await;
    assert_eq!((s, v["open_slots"].as_i64()), (201, Some(4)), "{v}");
    let (s, _) = call(
        &app,
        &t,
        "POST",
        "/api/v2/pools",
        Some(json!({"name": "etl", "slots": 4})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        &app,
        &t,
        "POST",
        "/api/v2/pools",
        Some(json!({"name": "neg", "slots": -2})),
    )
    .await;
    assert_eq!(s, 422);
    let (s, v) = call(
        &app,
        &t,
        "PATCH",
        "/api/v2/pools/etl",
        Some(json!({"slots": -1})),
    )
    .await;
    assert_eq!(
        (
            s,
            v["slots"].as_i64(),
            v["open_slots"].as_i64(),
            v["description"].as_str()
        ),
        (200, Some(-1), Some(-1), Some("ETL")),
        "{v}"
    );
    let (s, v) = call(
        &app,
        &t,
        "GET",
        "/api/v2/pools?pool_name_pattern=et&order_by=-name",
        None,
    )
    .await;
    assert_eq!((s, v["total_entries"].as_i64()), (200, Some(1)), "{v}");
    let (s, v) = call(&app, &t, "DELETE", "/api/v2/pools/default_pool", None).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (400, Some("Default Pool can't be deleted"))
    );
    let (s, _) = call(&app, &t, "DELETE", "/api/v2/pools/etl", None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, &t, "GET", "/api/v2/pools/etl", None).await;
    assert_eq!(s, 404);
    let (_, spec) = call(&app, &t, "GET", "/openapi.json", None).await;
    for p in [
        "/api/v2/variables",
        "/api/v2/connections/{connection_id}",
        "/api/v2/pools/{pool_name}",
        "/api/v2/connections/test",
    ] {
        assert!(
            spec["paths"].get(p).is_some(),
            "{p} in the OpenAPI document"
        );
    }
}

/// Airflow's own Python client against the variables, connections and pools endpoints.
#[tokio::test]
async fn airflow_python_client_manages_variables_connections_and_pools() {
    let python = crate::api_client::test_python();
    assert!(crate::api_client::has_client(&python), "Airflow's Python client is missing: run `scripts/test`, or `python3 -m pip install apache-airflow-client==3.3.2`");
    let app = app().await;
    let token = app.token().await;
    let script = r#"
import sys, airflow_client.client as c
from airflow_client.client.api import variable_api, connection_api, pool_api
from airflow_client.client.models import VariableBody, ConnectionBody, PoolBody, PoolPatchBody
conf = c.Configuration(host=sys.argv[1], access_token=sys.argv[2])
with c.ApiClient(conf) as api:
    va = variable_api.VariableApi(api)
    v = va.post_variable(VariableBody(key="region", value="eu", description="where"))
    assert v.key == "region" and v.value == "eu" and v.is_encrypted, v
    va.post_variable(VariableBody(key="api_key", value="k-123"))
    va.post_variable(VariableBody(key="cfg", value={"n": 1}))
    assert va.get_variable("api_key").value == "***"
    got = va.get_variables(variable_key_pattern="reg", order_by=["-key"])
    assert got.total_entries == 1 and got.variables[0].key == "region", got
    v = va.patch_variable("region", VariableBody(key="region", value="us"), update_mask=["value"])
    assert v.value == "us" and v.description == "where", v
    va.delete_variable("cfg")
    try:
        va.get_variable("cfg")
        raise SystemExit("expected 404")
    except c.exceptions.NotFoundException:
        pass

    ca = connection_api.ConnectionApi(api)
    cn = ca.post_connection(ConnectionBody(connection_id="kafka_default", conn_type="kafka", host="k1:9092,k2:9092", password="pw-xyz"))
    assert cn.connection_id == "kafka_default" and cn.password == "***", cn
    cn = ca.patch_connection("kafka_default", ConnectionBody(connection_id="kafka_default", conn_type="kafka", host="k3:9092"), update_mask=["host"])
    assert cn.host == "k3:9092" and cn.password == "***", cn
    lst = ca.get_connections(connection_id_pattern="kafka")
    assert lst.total_entries == 1 and lst.connections[0].conn_type == "kafka"
    try:
        ca.test_connection(ConnectionBody(connection_id="kafka_default", conn_type="kafka"))
        raise SystemExit("expected 403")
    except c.exceptions.ForbiddenException:
        pass
    ca.delete_connection("kafka_default")
    assert ca.get_connections().total_entries == 0

    pa = pool_api.PoolApi(api)
    p = pa.post_pool(PoolBody(name="etl", slots=3, description="ETL"))
    assert p.name == "etl" and p.open_slots == 3 and p.occupied_slots == 0, p
    p = pa.patch_pool("etl", PoolPatchBody(slots=5), update_mask=["slots"])
    assert p.slots == 5 and p.description == "ETL", p
    pools = pa.get_pools(order_by=["name"])
    assert [x.name for x in pools.pools] == ["default_pool", "etl"], pools
    assert pa.get_pool("default_pool").slots == 128
    pa.delete_pool("etl")
    try:
        pa.delete_pool("default_pool")
        raise SystemExit("expected 400")
    except c.exceptions.BadRequestException:
        pass
print("ok")
"#;
    let out = tokio::process::Command::new(&python)
        .args(["-c", script, &app.base, &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed:\n{stdout}\n{stderr}"
    );
}
