//! The JSON API against a real Postgres, field by field, with every error path.

use serde_json::{json, Value};

use crate::web_support::*;

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let res = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// An error body: `detail` is text, or FastAPI's list of validation errors (422).
fn assert_error(body: &Value, status: u16, detail_part: &str) {
    assert_eq!(body["status"], status, "{body}");
    assert!(body["title"].is_string(), "{body}");
    let detail = match &body["detail"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert!(detail.contains(detail_part), "{body}");
}

#[tokio::test]
async fn auth_token_basic_and_errors() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .get(app.url("/api/v2/dags"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_error(&res.json().await.unwrap(), 401, "not authenticated");

    let (status, body) = get(&app, "made-up", "/api/v2/dags").await;
    assert_eq!(status, 401);
    assert_error(&body, 401, "unknown or expired");

    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&json!({"username": "alice", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_error(
        &res.json().await.unwrap(),
        401,
        "wrong username or password",
    );
    let res = app
        .client
        .post(app.url("/auth/token"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let token = app.token().await;
    assert_eq!(token.len(), 64);
    let (status, body) = get(&app, &token, "/api/v2/dags").await;
    assert_eq!((status, body["total_entries"].clone()), (200, json!(0)));
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth_tokens WHERE kind = 'api' AND token_hash <> $1",
    )
    .bind(&token)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(stored, 1, "only a hash of the token is stored");

    let res = app
        .client
        .get(app.url("/api/v2/dags"))
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/api/v2/dags"))
        .basic_auth("alice", Some("bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A viewer can read but not change anything.
    updraft::web::create_user(app.pool(), "val", "viewer-password", "viewer")
        .await
        .unwrap();
    assert!(updraft::web::create_user(app.pool(), "x", "short", "admin")
        .await
        .is_err());
    assert!(
        updraft::web::create_user(app.pool(), "x", "long enough", "root")
            .await
            .unwrap_err()
            .to_string()
            .contains("unknown role")
    );
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let res = app
        .client
        .patch(app.url("/api/v2/dags/etl"))
        .basic_auth("val", Some("viewer-password"))
        .json(&json!({"is_paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Cookie-authenticated API writes need the CSRF header.
    let s = app.login().await;
    let res = app
        .client
        .patch(app.url("/api/v2/dags/etl"))
        .header("cookie", &s.cookie)
        .json(&json!({"is_paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .patch(app.url("/api/v2/dags/etl"))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .json(&json!({"is_paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Public: health, OpenAPI, static files.
    assert_eq!(
        app.client
            .get(app.url("/api/v2/monitor/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v2/dags/{dag_id}/dagRuns"]["post"].is_object());
    assert_eq!(
        app.client
            .get(app.url("/static/app.js"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = get(&app, &token, "/api/v2/nothing-here").await;
    assert_eq!(status, 404);
    assert_error(&body, 404, "no API endpoint");
}

#[tokio::test]
async fn admin_is_created_once_with_a_private_password_file() {
    let db = crate::helpers::fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/passwords.json.generated");
    let pw = updraft::web::ensure_admin(&db.pool, &file)
        .await
        .unwrap()
        .expect("first start creates admin");
    assert_eq!(pw.len(), 20);
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["admin"], pw.as_str());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        updraft::web::ensure_admin(&db.pool, &file).await.unwrap(),
        None,
        "printed once"
    );
    assert!(updraft::web::auth::check_password(&db.pool, "admin", &pw)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn dags_list_get_and_patch() {
    let app = TestApp::spawn().await;
    store_dags(
        app.pool(),
        vec![
            sample_dag("sales_daily", &["sales"]),
            sample_dag("user_automation", &["users", "sales"]),
            sample_dag("zeta", &[]),
        ],
    )
    .await;
    let token = app.token().await;
    let (_, body) = get(&app, &token, "/api/v2/dags").await;
    assert_eq!(body["total_entries"], 3);
    let d = &body["dags"][0];
    assert_eq!(d["dag_id"], "sales_daily");
    assert_eq!(d["dag_display_name"], "sales_daily");
    assert_eq!(d["is_paused"], false);
    assert_eq!(d["is_active"], true);
    assert_eq!(d["is_stale"], false);
    assert_eq!(d["description"], "sales_daily moves data");
    assert_eq!(
        d["tags"],
        json!([{"name": "sales", "dag_id": "sales_daily", "dag_display_name": "sales_daily"}])
    );
    assert_eq!(d["owners"], json!(["data-team"]));
    assert_eq!(d["timetable_summary"], Value::Null);
    assert_eq!(d["next_dagrun_logical_date"], Value::Null);
    assert_eq!(d["fileloc"], "sales_daily.yaml");
    assert_eq!(d["max_active_runs"], 16);
    assert_eq!(d["has_import_errors"], false);

    let (_, body) = get(&app, &token, "/api/v2/dags?tags=users&tags=nothing").await;
    assert_eq!(body["dags"].as_array().unwrap().len(), 1);
    let (_, body) = get(&app, &token, "/api/v2/dags?dag_id_pattern=AUTO").await;
    assert_eq!(body["dags"][0]["dag_id"], "user_automation");
    let (_, body) = get(&app, &token, "/api/v2/dags?limit=1&offset=2").await;
    assert_eq!(
        (
            body["total_entries"].clone(),
            body["dags"][0]["dag_id"].clone()
        ),
        (json!(3), json!("zeta"))
    );
    let (status, body) = get(&app, &token, "/api/v2/dags?limit=-1").await;
    assert_eq!(status, 422);
    assert_error(&body, 422, "greater_than_equal");
    assert_eq!(body["detail"][0]["loc"], json!(["query", "limit"]));

    let (status, body) = get(&app, &token, "/api/v2/dags/zeta").await;
    assert_eq!((status, body["dag_id"].clone()), (200, json!("zeta")));
    let (status, body) = get(&app, &token, "/api/v2/dags/nope").await;
    assert_eq!(status, 404);
    assert_error(&body, 404, "`nope` was not found");

    let patch = |path: &str, body: Value| {
        app.client
            .patch(app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let res = patch("/api/v2/dags/zeta", json!({"is_paused": true}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["is_paused"], true);
    let (_, body) = get(&app, &token, "/api/v2/dags?paused=true").await;
    assert_eq!(body["total_entries"], 1);
    assert_eq!(
        patch("/api/v2/dags/nope", json!({"is_paused": true}))
            .await
            .unwrap()
            .status(),
        404
    );
    let res = patch("/api/v2/dags/zeta", json!({"is_paused": "yes"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = app
        .client
        .patch(app.url("/api/v2/dags/zeta"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_error(&res.json().await.unwrap(), 400, "not valid JSON");
}

#[tokio::test]
async fn trigger_list_and_get_runs() {
    let app = TestApp::spawn().await;
    store_dags(
        app.pool(),
        vec![sample_dag("etl", &[]), sample_dag("other", &[])],
    )
    .await;
    let token = app.token().await;
    let post = |dag: &str, body: Value| {
        app.client
            .post(app.url(&format!("/api/v2/dags/{dag}/dagRuns")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    let res = post(
        "etl",
        json!({"dag_run_id": "my_run", "logical_date": null, "conf": {"n": 1}, "note": "api"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let run: Value = res.json().await.unwrap();
    assert_eq!(run["dag_run_id"], "my_run");
    assert_eq!(run["dag_id"], "etl");
    assert_eq!(run["state"], "queued");
    assert_eq!(run["run_type"], "manual");
    assert_eq!(run["conf"], json!({"n": 1}));
    assert_eq!(run["note"], "api");
    assert!(
        run["logical_date"].is_string()
            && run["run_after"].is_string()
            && run["queued_at"].is_string()
    );
    assert_eq!(run["start_date"], Value::Null);
    assert_eq!(run["dag_versions"][0]["version_number"], 1);
    assert_eq!(run["dag_versions"][0]["dag_id"], "etl");

    let res = post("etl", json!({"dag_run_id": "my_run"})).await.unwrap();
    assert_eq!(res.status(), 409);
    assert_error(&res.json().await.unwrap(), 409, "already exists");
    let res = post("etl", json!({"conf": [1, 2]})).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_error(
        &res.json().await.unwrap(),
        400,
        "conf must be a JSON object",
    );
    let res = app
        .client
        .post(app.url("/api/v2/dags/etl/dagRuns"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"conf\": {")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = post("nope", json!({})).await.unwrap();
    assert_eq!(res.status(), 404);
    assert_error(&res.json().await.unwrap(), 404, "`nope` was not found");
    post("etl", json!({"logical_date": "2026-01-02T03:04:05Z"}))
        .await
        .unwrap();
    post("other", json!({})).await.unwrap();

    let (_, body) = get(&app, &token, "/api/v2/dags/etl/dagRuns").await;
    assert_eq!(body["total_entries"], 2);
    assert_eq!(
        body["dag_runs"][0]["dag_run_id"], "my_run",
        "oldest first, as Airflow"
    );
    assert_eq!(
        body["dag_runs"][1]["dag_run_id"],
        "manual__2026-01-02T03:04:05.000000+00:00"
    );
    let (_, body) = get(
        &app,
        &token,
        "/api/v2/dags/etl/dagRuns?order_by=-id&limit=1",
    )
    .await;
    assert_eq!(body["dag_runs"].as_array().unwrap().len(), 1);
    assert_eq!(body["dag_runs"][0]["logical_date"], "2026-01-02T03:04:05Z");
    let (_, body) = get(&app, &token, "/api/v2/dags/~/dagRuns").await;
    assert_eq!(body["total_entries"], 3);
    let (status, _) = get(&app, &token, "/api/v2/dags/etl/dagRuns?order_by=color").await;
    assert_eq!(status, 400);
    let (status, _) = get(&app, &token, "/api/v2/dags/nope/dagRuns").await;
    assert_eq!(status, 404);

    let (status, body) = get(&app, &token, "/api/v2/dags/etl/dagRuns/my_run").await;
    assert_eq!((status, body["conf"].clone()), (200, json!({"n": 1})));
    let (status, body) = get(&app, &token, "/api/v2/dags/etl/dagRuns/nope").await;
    assert_eq!(status, 404);
    assert_error(&body, 404, "run_id: `nope`");
}

#[tokio::test]
async fn task_instances_and_logs() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let token = app.token().await;
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some("r1".into()),
        ..Default::default()
    };
    updraft::db::runs::trigger(app.pool(), "etl", req)
        .await
        .unwrap();
    let (_, body) = get(&app, &token, "/api/v2/dags/etl/dagRuns/r1/taskInstances").await;
    assert_eq!(body["total_entries"], 0);
    let pk = start_run(app.pool(), "etl", "r1", &["extract", "load"]).await;
    let ti = set_task(app.pool(), pk, "extract", "running").await;
    let lines: Vec<String> = (1..=1200).map(|i| format!("row {i}")).collect();
    add_log(app.pool(), ti, 1, &lines).await;

    let (_, body) = get(&app, &token, "/api/v2/dags/etl/dagRuns/r1/taskInstances").await;
    let tis = body["task_instances"].as_array().unwrap();
    assert_eq!(tis.len(), 2);
    assert_eq!(tis[0]["task_id"], "extract");
    assert_eq!(tis[0]["state"], "running");
    assert_eq!(tis[0]["try_number"], 1);
    assert_eq!(tis[0]["max_tries"], 1);
    assert_eq!(tis[0]["dag_run_id"], "r1");
    assert_eq!(tis[0]["map_index"], -1);
    assert_eq!(tis[0]["operator"], "bash", "the class name, as Airflow's");
    assert!(tis[0]["start_date"].is_string());
    assert!(uuid::Uuid::parse_str(tis[0]["id"].as_str().unwrap()).is_ok());
    assert_eq!(tis[1]["state"], Value::Null, "Airflow has no `none` state");

    let logs = "/api/v2/dags/etl/dagRuns/r1/taskInstances/extract/logs/1";
    let (_, body) = get(&app, &token, logs).await;
    let content = body["content"].as_array().unwrap();
    assert_eq!(content.len(), 1000);
    assert_eq!(content[0]["event"], "row 1");
    assert!(content[0]["timestamp"].is_string());
    let token_value = body["continuation_token"].as_str().unwrap().to_string();
    let (_, body) = get(&app, &token, &format!("{logs}?token={token_value}")).await;
    assert_eq!(body["content"].as_array().unwrap().len(), 200);
    assert_eq!(body["content"][0]["event"], "row 1001");
    assert!(
        body["continuation_token"].is_string(),
        "still running: more may come"
    );
    set_task(app.pool(), pk, "extract", "success").await;
    let (_, body) = get(&app, &token, &format!("{logs}?full_content=true")).await;
    assert_eq!(body["content"].as_array().unwrap().len(), 1200);
    assert_eq!(body["continuation_token"], Value::Null);
    let text = app
        .client
        .get(app.url(logs))
        .bearer_auth(&token)
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.lines().next().unwrap().ends_with("] row 1"));

    let (status, body) = get(&app, &token, &logs.replace("/1", "/2")).await;
    assert_eq!(status, 404);
    assert_error(&body, 404, "try 2");
    let (status, _) = get(&app, &token, &format!("{logs}?token=abc")).await;
    assert_eq!(status, 400);
    let (status, _) = get(&app, &token, &logs.replace("extract", "nope")).await;
    assert_eq!(status, 404);
    let res = app
        .client
        .get(app.url(&logs.replace("/1", "/x")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_error(&res.json().await.unwrap(), 422, "valid integer");
}

#[tokio::test]
async fn import_errors_and_version() {
    let app = TestApp::spawn().await;
    let token = app.token().await;
    add_import_error(app.pool(), "bad.yaml", "bad.yaml:1:1: not a mapping").await;
    let (_, body) = get(&app, &token, "/api/v2/importErrors").await;
    assert_eq!(body["total_entries"], 1);
    let e = &body["import_errors"][0];
    assert_eq!(e["filename"], "bad.yaml");
    assert_eq!(e["stack_trace"], "bad.yaml:1:1: not a mapping");
    assert!(e["import_error_id"].is_i64() && e["timestamp"].is_string());
    let (_, again) = get(&app, &token, "/api/v2/importErrors").await;
    assert_eq!(
        again["import_errors"][0]["import_error_id"], e["import_error_id"],
        "ids are stable"
    );
    let (_, body) = get(&app, &token, "/api/v2/version").await;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

/// The OpenAPI document describes every API route the router serves, with its method.
#[tokio::test]
async fn openapi_document_covers_the_routes() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("/auth/token", "post"),
        ("/api/v2/dags", "get"),
        ("/api/v2/dags/{dag_id}", "get"),
        ("/api/v2/dags/{dag_id}", "patch"),
        ("/api/v2/dags/{dag_id}/dagRuns", "get"),
        ("/api/v2/dags/{dag_id}/dagRuns", "post"),
        ("/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", "get"),
        (
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
            "get",
        ),
        (
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
            "get",
        ),
        ("/api/v2/importErrors", "get"),
        ("/api/v2/monitor/health", "get"),
        ("/api/v2/version", "get"),
        ("/api/v2/variables", "get"),
        ("/api/v2/variables", "post"),
        ("/api/v2/variables/{variable_key}", "get"),
        ("/api/v2/variables/{variable_key}", "patch"),
        ("/api/v2/variables/{variable_key}", "delete"),
        ("/api/v2/connections", "get"),
        ("/api/v2/connections", "post"),
        ("/api/v2/connections/test", "post"),
        ("/api/v2/connections/{connection_id}", "get"),
        ("/api/v2/connections/{connection_id}", "patch"),
        ("/api/v2/connections/{connection_id}", "delete"),
        ("/api/v2/pools", "get"),
        ("/api/v2/pools", "post"),
        ("/api/v2/pools/{pool_name}", "get"),
        ("/api/v2/pools/{pool_name}", "patch"),
        ("/api/v2/pools/{pool_name}", "delete"),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    assert!(doc["paths"].as_object().unwrap().len() >= 30);
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "missing schema {name}"
        );
    }
}

#[tokio::test]
async fn creating_an_existing_user_resets_its_password_and_ends_its_tokens() {
    let app = TestApp::spawn().await;
    let old_token = app.token().await;
    let session = app.login().await;
    let (status, _) = get(&app, &old_token, "/api/v2/dags").await;
    assert_eq!(status, 200);

    // `alice` exists (TestApp made her); this is `users create` run again for her.
    let created = updraft::web::create_user(app.pool(), "alice", "a brand new password", "viewer")
        .await
        .unwrap();
    assert!(!created, "alice was updated, not created");

    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the old password no longer works");
    let res = app
        .client
        .get(app.url("/api/v2/dags"))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the old bearer token is rejected");
    assert_error(&res.json().await.unwrap(), 401, "unknown or expired");
    let (status, _) = app.page(&session, "/dags").await;
    assert_eq!(status, 303, "the old browser session is gone");

    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&json!({"username": "alice", "password": "a brand new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "the new password works");
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = get(&app, &token, "/api/v2/dags").await;
    assert_eq!(status, 200);
    // The role was updated too: alice is a viewer now.
    let res = app
        .client
        .patch(app.url("/api/v2/dags/etl"))
        .bearer_auth(&token)
        .json(&json!({"is_paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // A new name is still created, and the checks still apply.
    assert!(
        updraft::web::create_user(app.pool(), "bob", "bob-password", "admin")
            .await
            .unwrap()
    );
    assert!(
        updraft::web::create_user(app.pool(), "alice", "short", "admin")
            .await
            .is_err()
    );
}

/// The fastest of a few `/auth/token` attempts.
async fn fastest_token_attempt(app: &TestApp, username: &str) -> std::time::Duration {
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        // Timing the check itself: the sign-in throttle would answer early.
        app.logins.succeeded(LOCALHOST, username);
        let started = std::time::Instant::now();
        let res = app
            .client
            .post(app.url("/auth/token"))
            .json(&json!({"username": username, "password": "not the password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        best = best.min(started.elapsed());
    }
    best
}

#[tokio::test]
async fn unknown_users_look_like_wrong_passwords() {
    let app = TestApp::spawn().await;
    for username in ["alice", "nobody"] {
        let res = app
            .client
            .post(app.url("/auth/token"))
            .json(&json!({"username": username, "password": "not the password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["detail"], "wrong username or password", "{username}");
        let res = app
            .client
            .get(app.url("/api/v2/dags"))
            .basic_auth(username, Some("not the password"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["detail"], "wrong username or password", "{username}");
        let res = app.post_login(username, "not the password", "/dags").await;
        assert_eq!(res.status(), 401);
        let doc = scraper::Html::parse_document(&res.text().await.unwrap());
        assert_eq!(
            texts(&doc, "#login-error"),
            vec!["Wrong username or password. Check both and try again."]
        );
    }

    // An unknown name costs a password verification too, so it is not answered much faster
    // (without the dummy hash it took a millisecond against tens for a wrong password).
    let wrong_password = fastest_token_attempt(&app, "alice").await;
    let unknown_user = fastest_token_attempt(&app, "nobody").await;
    assert!(
        unknown_user * 3 >= wrong_password,
        "unknown user {unknown_user:?}, wrong password {wrong_password:?}"
    );
}

const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn a_burst_of_bad_logins_is_throttled_not_errors() {
    let app = TestApp::spawn().await;
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (client, base) = (app.client.clone(), app.base.clone());
        attempts.spawn(async move {
            let username = if i % 2 == 0 { "alice" } else { "nobody" };
            let res = if i % 4 < 2 {
                client
                    .post(format!("{base}/auth/token"))
                    .json(&json!({"username": username, "password": format!("guess {i}")}))
                    .send()
                    .await
            } else {
                client
                    .get(format!("{base}/api/v2/dags"))
                    .basic_auth(username, Some(format!("guess {i}")))
                    .send()
                    .await
            };
            (username, res.unwrap().status().as_u16())
        });
    }
    let statuses: Vec<(&str, u16)> = attempts.join_all().await;
    for user in ["alice", "nobody"] {
        let mine: Vec<u16> = statuses
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, s)| *s)
            .collect();
        let checked = mine.iter().filter(|s| **s == 401).count();
        let throttled = mine.iter().filter(|s| **s == 429).count();
        // Unknown and known users alike: the free attempts are checked, the rest refused.
        assert_eq!(
            checked + throttled,
            20,
            "{user}: only 401 and 429: {mine:?}"
        );
        assert!(
            (5..20).contains(&checked),
            "{user}: {checked} checked of 20"
        );
    }
    // Even the right password waits for the throttle, then works. The door closed at the
    // fifth attempt, for a second; the burst's password checks may take longer than that on a
    // busy machine, so make sure it is closed now (each attempt while open closes it for
    // longer) instead of relying on the burst being quick.
    while app.logins.attempt(LOCALHOST, "alice").is_ok() {}
    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("too many sign-in attempts for this user from your address"),
        "{body}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    app.token().await;
}

/// The login form says how long to wait, per user: another user from the same address is
/// not held back.
#[tokio::test]
async fn the_login_form_throttles_guessing_per_user() {
    let app = TestApp::spawn().await;
    updraft::web::create_user(app.pool(), "bob", "bob's long password", "viewer")
        .await
        .unwrap();
    for _ in 0..updraft::web::throttle::FREE_ATTEMPTS {
        let res = app.post_login("alice", "a guess", "/dags").await;
        assert_eq!(res.status(), 401);
    }
    let res = app.post_login("alice", PASSWORD, "/dags").await;
    assert_eq!(res.status(), 429, "the right password waits too");
    assert_eq!(res.headers()["retry-after"], "1");
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert_eq!(
        texts(&doc, "#login-error"),
        vec!["Too many sign-in attempts for this user. Wait 1 second, then try again."]
    );
    let res = app.post_login("bob", "bob's long password", "/dags").await;
    assert_eq!(res.status(), 303, "bob is not held back");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = app.post_login("alice", PASSWORD, "/dags").await;
    assert_eq!(res.status(), 303, "after the wait the right password works");
}
