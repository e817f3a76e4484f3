//! The REST API's Airflow conventions against a real Postgres: filters that filter (never
//! silently ignored), unknown parameters refused by name, empty values as absent, JSON 405s,
//! the unauthenticated version route, the CLI token route, and the endpoints Airflow's
//! clients call beyond the basics.

use serde_json::{json, Value};

use crate::web_support::*;

async fn call(app: &TestApp, token: &str, method: reqwest::Method, path: &str) -> (u16, Value) {
    let res = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    call(app, token, reqwest::Method::GET, path).await
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn ids(body: &Value, list: &str, field: &str) -> Vec<String> {
    body[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {body}"))
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

/// Three runs of `etl`: r1 success (scheduled), r2 failed, r3 running (manual).
pub async fn seed(app: &TestApp) {
    store_dags(
        app.pool(),
        vec![
            sample_dag("etl", &["daily", "core"]),
            sample_dag("etl_backup", &["core"]),
            sample_dag("report", &["daily"]),
        ],
    )
    .await;
    for (run, state) in [("r1", "success"), ("r2", "failed"), ("r3", "running")] {
        let req = updraft::db::runs::TriggerRequest {
            run_id: Some(run.into()),
            conf: Some(json!({"region": format!("eu-{run}")})),
            ..Default::default()
        };
        updraft::db::runs::trigger(app.pool(), "etl", req)
            .await
            .unwrap();
        let pk = start_run(app.pool(), "etl", run, &["extract", "load"]).await;
        let ti = set_task(app.pool(), pk, "extract", "running").await;
        add_log(app.pool(), ti, 1, &["first try"]).await;
        if run == "r2" {
            // A second try, as after a retry.
            set_task(app.pool(), pk, "extract", "running").await;
            add_log(app.pool(), ti, 2, &["second try"]).await;
            set_task(app.pool(), pk, "extract", "failed").await;
        } else if state != "running" {
            set_task(app.pool(), pk, "extract", "success").await;
        }
        if state != "running" {
            finish_run(app.pool(), pk, state).await;
        }
        sqlx::query("INSERT INTO xcom (run_pk, task_id, key, value) VALUES ($1, 'extract', 'return_value', $2), ($1, 'extract', 'rows', '42')")
            .bind(pk)
            .bind(json!({"run": run}))
            .execute(app.pool())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE dag_runs SET run_type = 'scheduled' WHERE run_id = 'r1'")
        .execute(app.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn version_needs_no_token_and_airflowctl_can_log_in() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/api/v2/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["version"],
        env!("CARGO_PKG_VERSION")
    );
    let res = app
        .client
        .post(app.url("/auth/token/cli"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cli_token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = get(&app, &cli_token, "/api/v2/dags").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unknown_parameters_empty_values_and_wrong_methods() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let token = app.token().await;
    let (status, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns?state=failed&colour=red",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`colour`"),
        "{body}"
    );
    // airflowctl sends `limit=` for "no limit given".
    let (status, body) = get(&app, &token, "/api/v2/dags/~/dagRuns?limit=").await;
    assert_eq!((status, body["total_entries"].clone()), (200, json!(3)));
    let (status, body) = get(&app, &token, "/api/v2/dags?limit=x").await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "int_parsing");
    let (status, body) = call(
        &app,
        &token,
        reqwest::Method::DELETE,
        "/api/v2/dags/etl/dagRuns/r1/taskInstances",
    )
    .await;
    assert_eq!(status, 405);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Method Not Allowed"),
        "{body}"
    );
    let (status, body) = get(&app, &token, "/api/v2/config").await;
    assert_eq!(status, 403);
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn run_lists_filter_order_and_page() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let token = app.token().await;
    let runs = |body: &Value| ids(body, "dag_runs", "dag_run_id");
    let (_, body) = get(&app, &token, "/api/v2/dags/~/dagRuns?state=failed").await;
    assert_eq!(runs(&body), ["r2"]);
    assert_eq!(body["total_entries"], 1);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns?state=failed&state=success&order_by=-id",
    )
    .await;
    assert_eq!(runs(&body), ["r2", "r1"]);
    let (_, body) = get(&app, &token, "/api/v2/dags/etl/dagRuns?run_type=scheduled").await;
    assert_eq!(runs(&body), ["r1"]);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns?run_type=manual&order_by=-run_id&limit=1",
    )
    .await;
    assert_eq!(
        (runs(&body), body["total_entries"].clone()),
        (vec!["r3".to_string()], json!(2))
    );
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns?run_id_pattern=R%25&dag_id_pattern=et_",
    )
    .await;
    assert_eq!(
        runs(&body).len(),
        3,
        "`%` and `_` are wildcards, case-insensitive"
    );
    let (_, body) = get(&app, &token, "/api/v2/dags/~/dagRuns?run_id_pattern=r1|r3").await;
    assert_eq!(runs(&body), ["r1", "r3"]);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns?end_date_gte=2000-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(runs(&body), ["r1", "r2"]);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns?start_date_lt=2000-01-01",
    )
    .await;
    assert_eq!(body["total_entries"], 0);
    let (_, body) = get(&app, &token, "/api/v2/dags/~/dagRuns?conf_contains=eu-r2").await;
    assert_eq!(runs(&body), ["r2"]);
    let (status, body) = get(&app, &token, "/api/v2/dags/~/dagRuns?state=sleeping").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get(&app, &token, "/api/v2/dags/~/dagRuns?order_by=colour").await;
    assert_eq!(status, 400);
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("Ordering with 'colour' is disallowed"));
    // The batch list takes the same filters in a body.
    let (status, body) = post(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/list",
        json!({"dag_ids": ["etl"], "states": ["failed", "running"], "order_by": "-id", "page_limit": 10}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(runs(&body), ["r3", "r2"]);
    let (status, _) = post(&app, &token, "/api/v2/dags/etl/dagRuns/list", json!({})).await;
    assert_eq!(status, 422, "only `~` as the DAG");
}

#[tokio::test]
async fn dag_lists_filter_order_and_page() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let token = app.token().await;
    add_import_error(app.pool(), "report.yaml", "report.yaml:1:1: broken").await;
    let dags = |body: &Value| ids(body, "dags", "dag_id");
    let (_, body) = get(&app, &token, "/api/v2/dags?order_by=-dag_id").await;
    assert_eq!(dags(&body), ["report", "etl_backup", "etl"]);
    let (_, body) = get(&app, &token, "/api/v2/dags?dag_id_pattern=etl%25backup").await;
    assert_eq!(dags(&body), ["etl_backup"]);
    let (_, body) = get(&app, &token, "/api/v2/dags?dag_id_prefix_pattern=etl_b").await;
    assert_eq!(dags(&body), ["etl_backup"], "prefix patterns are literal");
    let (_, body) = get(&app, &token, "/api/v2/dags?dag_id_prefix_pattern=etl_").await;
    assert_eq!(
        dags(&body),
        ["etl", "etl_backup"],
        "trailing symbols dropped, as Airflow"
    );
    let (_, body) = get(&app, &token, "/api/v2/dags?has_import_errors=true").await;
    assert_eq!(dags(&body), ["report"]);
    let (_, body) = get(&app, &token, "/api/v2/dags?has_import_errors=false").await;
    assert_eq!(dags(&body), ["etl", "etl_backup"]);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags?tags=daily&tags=core&tags_match_mode=all",
    )
    .await;
    assert_eq!(dags(&body), ["etl"]);
    let (_, body) = get(&app, &token, "/api/v2/dags?last_dag_run_state=running").await;
    assert_eq!(dags(&body), ["etl"]);
    let (_, body) = get(&app, &token, "/api/v2/dags?owners=DATA").await;
    assert_eq!(body["total_entries"], 3);
    let (_, body) = get(&app, &token, "/api/v2/dags?owners=nobody").await;
    assert_eq!(body["total_entries"], 0);
    let (_, body) = get(&app, &token, "/api/v2/dagTags?order_by=-name").await;
    assert_eq!(body["tags"], json!(["daily", "core"]));
    let (_, body) = get(&app, &token, "/api/v2/dagStats?dag_ids=etl").await;
    let stats = &body["dags"][0]["stats"];
    assert_eq!(body["total_entries"], 1);
    assert_eq!(stats.as_array().unwrap().len(), 4);
    assert!(stats
        .as_array()
        .unwrap()
        .contains(&json!({"state": "failed", "count": 1})));
    let (_, body) = get(&app, &token, "/api/v2/dagWarnings?dag_id=etl").await;
    assert_eq!(body, json!({"dag_warnings": [], "total_entries": 0}));
}

#[tokio::test]
async fn dag_details_tasks_source_and_versions() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let token = app.token().await;
    let (status, body) = get(&app, &token, "/api/v2/dags/etl/details").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["params"]["target"]["value"], "warehouse");
    assert_eq!(body["latest_dag_version"]["version_number"], 1);
    assert_eq!(body["timezone"], "UTC");
    let (_, body) = get(&app, &token, "/api/v2/dags/etl/tasks").await;
    assert_eq!(
        ids(&body, "tasks", "task_id"),
        ["extract", "load", "notify", "transform"]
    );
    assert_eq!(
        body["tasks"][0]["downstream_task_ids"],
        json!(["notify", "transform"])
    );
    assert_eq!(body["tasks"][0]["retry_delay"]["seconds"], 300);
    let (_, body) = get(&app, &token, "/api/v2/dags/etl/tasks/load").await;
    assert_eq!(body["owner"], "data-team");
    let (status, _) = get(&app, &token, "/api/v2/dags/etl/tasks/nope").await;
    assert_eq!(status, 404);
    let (_, body) = get(&app, &token, "/api/v2/dagSources/etl").await;
    assert!(body["content"].as_str().unwrap().contains("dag_id: etl"));
    assert_eq!(body["version_number"], 1);
    let text = app
        .client
        .get(app.url("/api/v2/dagSources/etl"))
        .bearer_auth(&token)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("dag_id: etl"));
    let (_, body) = get(&app, &token, "/api/v2/dags/etl/dagVersions").await;
    assert_eq!(body["total_entries"], 1);
    let (_, body) = get(&app, &token, "/api/v2/dags/etl/dagVersions/1").await;
    assert_eq!(body["version_number"], 1);
    let (status, _) = get(&app, &token, "/api/v2/dags/etl/dagVersions/9").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn task_instances_tries_and_xcoms() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let token = app.token().await;
    let (status, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns/r2/taskInstances/extract",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["state"].clone(), body["try_number"].clone()),
        (json!("failed"), json!(2))
    );
    assert_eq!(body["pool"], "default_pool");
    let (status, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns/r2/taskInstances/nope",
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("task_id: `nope`"));
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns/r2/taskInstances/extract/tries",
    )
    .await;
    let tries = body["task_instances"].as_array().unwrap();
    assert_eq!(tries.len(), 2);
    assert_eq!(
        (tries[0]["try_number"].clone(), tries[0]["state"].clone()),
        (json!(1), json!("failed"))
    );
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns/r2/taskInstances/extract/tries/2",
    )
    .await;
    assert_eq!(body["try_number"], 2);
    // `~` for every DAG and run, with filters.
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/~/taskInstances?state=success&order_by=-id",
    )
    .await;
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["task_instances"][0]["dag_run_id"], "r1");
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/~/taskInstances?state=none&task_id=load",
    )
    .await;
    assert_eq!(body["total_entries"], 3);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/~/taskInstances?pool=default_pool&try_number=2",
    )
    .await;
    assert_eq!(body["total_entries"], 1);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/~/taskInstances?pool=other",
    )
    .await;
    assert_eq!(body["total_entries"], 0);
    let (status, body) = post(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/~/taskInstances/list",
        json!({"dag_ids": ["etl"], "dag_run_ids": ["r1", "r3"], "task_ids": ["extract"], "order_by": "-start_date"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_entries"], 2);
    // XComs.
    let base = "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/xcomEntries";
    let (_, body) = get(&app, &token, base).await;
    assert_eq!(ids(&body, "xcom_entries", "key"), ["return_value", "rows"]);
    let (_, body) = get(&app, &token, &format!("{base}/return_value")).await;
    assert_eq!(body["value"], json!({"run": "r1"}));
    let (_, body) = get(&app, &token, &format!("{base}/return_value?stringify=true")).await;
    assert_eq!(body["value"], "{'run': 'r1'}");
    let (status, _) = get(&app, &token, &format!("{base}/nope")).await;
    assert_eq!(status, 404);
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?xcom_key=rows",
    )
    .await;
    assert_eq!(body["total_entries"], 3);
}

#[tokio::test]
async fn wait_streams_states_until_the_run_ends() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let token = app.token().await;
    let (status, _) = get(&app, &token, "/api/v2/dags/etl/dagRuns/r3/wait").await;
    assert_eq!(status, 422, "interval is required");
    // A finished run: one line with its state and the asked-for results.
    let text = app
        .client
        .get(app.url("/api/v2/dags/etl/dagRuns/r1/wait?interval=0.05&result=extract"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        line,
        json!({"state": "success", "results": {"extract": {"run": "r1"}}})
    );
    // A running run: polls until it ends.
    let res = app
        .client
        .get(app.url("/api/v2/dags/etl/dagRuns/r3/wait?interval=0.05"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let pk: i64 = sqlx::query_scalar("SELECT id FROM dag_runs WHERE run_id = 'r3'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    finish_run(app.pool(), pk, "failed").await;
    let text = res.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{text}");
    assert_eq!(lines[0], json!({"state": "running"}));
    assert_eq!(lines.last().unwrap(), &json!({"state": "failed"}));
}
