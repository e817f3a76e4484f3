//! Clear, mark, notes, delete and the audit log through the REST API (Airflow's shapes),
//! against a real Postgres; the run's tasks are staged by hand as in the other API tests.

use serde_json::{json, Value};

use crate::web_support::*;

/// A failed run of `extract → transform → load` (+ `notify`): transform failed.
async fn failed_run(app: &TestApp, run_id: &str) -> i64 {
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some(run_id.into()),
        ..Default::default()
    };
    updraft::db::runs::trigger(app.pool(), "etl", req)
        .await
        .unwrap();
    let pk = start_run(
        app.pool(),
        "etl",
        run_id,
        &["extract", "transform", "notify", "load"],
    )
    .await;
    set_task(app.pool(), pk, "extract", "success").await;
    set_task(app.pool(), pk, "notify", "success").await;
    set_task(app.pool(), pk, "transform", "failed").await;
    set_task(app.pool(), pk, "load", "upstream_failed").await;
    finish_run(app.pool(), pk, "failed").await;
    pk
}

async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let req = match method {
        "POST" => app.client.post(app.url(path)),
        "PATCH" => app.client.patch(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        _ => app.client.get(app.url(path)),
    };
    let req = if method == "GET" || method == "DELETE" {
        req
    } else {
        req.json(&body)
    };
    let res = req.bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn states(body: &Value) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = body["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_string(),
                t["state"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn clear_through_the_api_dry_then_for_real() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    failed_run(&app, "r1").await;
    let token = app.token().await;

    // Airflow's defaults: a dry run of the failed task instances.
    let (status, dry) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/clearTaskInstances",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["total_entries"], 2, "{dry}");
    assert_eq!(
        states(&dry),
        vec![
            ("load".into(), json!("upstream_failed")),
            ("transform".into(), json!("failed"))
        ]
    );

    let body = json!({"dry_run": false, "dag_run_id": "r1", "task_ids": ["transform"],
                      "include_downstream": true, "only_failed": false, "note": "fixed the source"});
    let (status, cleared) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/clearTaskInstances",
        body,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        states(&cleared),
        vec![
            ("load".into(), Value::Null),
            ("transform".into(), json!("queued"))
        ]
    );
    assert_eq!(cleared["task_instances"][0]["note"], "fixed the source");
    let (_, run) = call(
        &app,
        &token,
        "GET",
        "/api/v2/dags/etl/dagRuns/r1",
        Value::Null,
    )
    .await;
    assert_eq!(run["state"], "running");

    // The run's own clear: dry lists every finished task instance; for real, the run.
    let (status, dry) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/dagRuns/r1/clear",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, dry["total_entries"].clone()),
        (200, json!(3)),
        "{dry}"
    );
    let (status, run) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/dagRuns/r1/clear",
        json!({"dry_run": false}),
    )
    .await;
    assert_eq!(
        (status, run["state"].clone()),
        (200, json!("running")),
        "{run}"
    );
    let (_, tis) = call(
        &app,
        &token,
        "GET",
        "/api/v2/dags/etl/dagRuns/r1/taskInstances",
        Value::Null,
    )
    .await;
    assert_eq!(
        states(&tis),
        vec![
            ("extract".into(), json!("queued")),
            ("load".into(), Value::Null),
            ("notify".into(), Value::Null),
            ("transform".into(), Value::Null),
        ]
    );

    let (status, err) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/nope/clearTaskInstances",
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/clearTaskInstances",
        json!({"dag_run_id": "missing"}),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn mark_notes_delete_and_the_audit_log() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    failed_run(&app, "r1").await;
    let token = app.token().await;
    let ti = "/api/v2/dags/etl/dagRuns/r1/taskInstances/transform";

    let (status, dry) = call(
        &app,
        &token,
        "PATCH",
        &format!("{ti}/dry_run"),
        json!({"new_state": "success"}),
    )
    .await;
    assert_eq!(
        (status, states(&dry)),
        (200, vec![("transform".into(), json!("failed"))]),
        "{dry}"
    );
    let (status, marked) = call(
        &app,
        &token,
        "PATCH",
        ti,
        json!({"new_state": "success", "note": "**checked** by hand"}),
    )
    .await;
    assert_eq!(status, 200, "{marked}");
    assert_eq!(marked["task_instances"][0]["state"], "success");
    assert_eq!(marked["task_instances"][0]["note"], "**checked** by hand");
    // load stays upstream_failed (finished); the run is still failed until it is cleared.
    let (status, bad) = call(&app, &token, "PATCH", ti, json!({"new_state": "running"})).await;
    assert_eq!(status, 422, "{bad}");

    // A note alone, through update_mask.
    let (status, noted) = call(
        &app,
        &token,
        "PATCH",
        &format!("{ti}?update_mask=note"),
        json!({"new_state": "failed", "note": "only the note"}),
    )
    .await;
    assert_eq!(status, 200, "{noted}");
    assert_eq!(noted["task_instances"][0]["state"], "success");
    assert_eq!(noted["task_instances"][0]["note"], "only the note");

    let (status, run) = call(
        &app,
        &token,
        "PATCH",
        "/api/v2/dags/etl/dagRuns/r1",
        json!({"state": "success", "note": "all good"}),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["state"].clone(), run["note"].clone()),
        (json!("success"), json!("all good"))
    );
    let (_, tis) = call(
        &app,
        &token,
        "GET",
        "/api/v2/dags/etl/dagRuns/r1/taskInstances",
        Value::Null,
    )
    .await;
    assert!(states(&tis).iter().all(|(_, s)| s == "success"), "{tis}");
    let (status, _) = call(
        &app,
        &token,
        "PATCH",
        "/api/v2/dags/etl/dagRuns/r1",
        json!({"state": "running"}),
    )
    .await;
    assert_eq!(status, 422);

    let (status, _) = call(
        &app,
        &token,
        "DELETE",
        "/api/v2/dags/etl/dagRuns/r1",
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        &token,
        "GET",
        "/api/v2/dags/etl/dagRuns/r1",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        &token,
        "DELETE",
        "/api/v2/dags/etl/dagRuns/r1",
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);

    let (status, log) = call(
        &app,
        &token,
        "GET",
        "/api/v2/eventLogs?dag_id=etl",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let events: Vec<&str> = log["event_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["mark", "note", "mark", "delete"], "{log}");
    assert_eq!(log["total_entries"], 4);
    let first = &log["event_logs"][0];
    assert_eq!(
        (
            first["owner"].clone(),
            first["task_id"].clone(),
            first["run_id"].clone()
        ),
        (json!("alice"), json!("transform"), json!("r1"))
    );
    let extra: Value = serde_json::from_str(first["extra"].as_str().unwrap()).unwrap();
    assert_eq!(
        (extra["new_state"].clone(), extra["source"].clone()),
        (json!("success"), json!("api"))
    );
    let (_, newest) = call(
        &app,
        &token,
        "GET",
        "/api/v2/eventLogs?order_by=-id&limit=1",
        Value::Null,
    )
    .await;
    assert_eq!(newest["event_logs"][0]["event"], "delete");
    let id = newest["event_logs"][0]["event_log_id"].as_i64().unwrap();
    let (status, one) = call(
        &app,
        &token,
        "GET",
        &format!("/api/v2/eventLogs/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!((status, one["event"].clone()), (200, json!("delete")));
    let (_, signins) = call(
        &app,
        &token,
        "GET",
        "/api/v2/eventLogs?event=sign_in",
        Value::Null,
    )
    .await;
    assert_eq!(signins["total_entries"], 1, "the token request: {signins}");
}

#[tokio::test]
async fn a_viewer_may_not_clear_or_mark() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    failed_run(&app, "r1").await;
    updraft::web::create_user(app.pool(), "vera", PASSWORD, "viewer")
        .await
        .unwrap();
    let res = app
        .client
        .post(app.url("/api/v2/dags/etl/clearTaskInstances"))
        .basic_auth("vera", Some(PASSWORD))
        .json(&json!({"dry_run": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .patch(app.url("/api/v2/dags/etl/dagRuns/r1"))
        .basic_auth("vera", Some(PASSWORD))
        .json(&json!({"state": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let run = updraft::db::runs::get(app.pool(), "etl", "r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state.as_str(), "failed");
}

/// The same through Airflow's own Python client (`tests/it/python/client_operate.py`).
#[tokio::test]
async fn airflow_python_client_clears_marks_and_deletes() {
    let python = crate::api_client::test_python();
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    failed_run(&app, "r1").await;
    let token = app.token().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/python/client_operate.py"
    );
    let out = tokio::process::Command::new(&python)
        .args([script, &app.base, &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed (is its virtualenv there? run `scripts/test`):\n{stdout}\n{stderr}"
    );
}

/// Clearing across runs: a logical-date range, and `include_past`/`include_future` from a run.
#[tokio::test]
async fn clear_across_runs_by_logical_date() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    for (run_id, date) in [
        ("old", "2026-01-01T00:00:00Z"),
        ("mid", "2026-01-02T00:00:00Z"),
        ("new", "2026-01-03T00:00:00Z"),
    ] {
        let req = updraft::db::runs::TriggerRequest {
            run_id: Some(run_id.into()),
            logical_date: Some(date.parse().unwrap()),
            ..Default::default()
        };
        updraft::db::runs::trigger(app.pool(), "etl", req)
            .await
            .unwrap();
        let pk = start_run(
            app.pool(),
            "etl",
            run_id,
            &["extract", "transform", "notify", "load"],
        )
        .await;
        for t in ["extract", "transform", "notify", "load"] {
            set_task(app.pool(), pk, t, "failed").await;
        }
        finish_run(app.pool(), pk, "failed").await;
    }
    let token = app.token().await;
    let runs_of = |body: &Value| -> Vec<String> {
        let mut v: Vec<String> = body["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["dag_run_id"].as_str().unwrap().to_string())
            .collect();
        v.dedup();
        v
    };
    let body = json!({"start_date": "2026-01-02T00:00:00Z", "end_date": "2026-01-03T00:00:00Z", "task_ids": ["extract"]});
    let (status, dry) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/clearTaskInstances",
        body,
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(runs_of(&dry), vec!["mid", "new"]);
    let body = json!({"dag_run_id": "mid", "include_past": true, "task_ids": ["extract"]});
    let (_, dry) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/clearTaskInstances",
        body,
    )
    .await;
    assert_eq!(runs_of(&dry), vec!["old", "mid"]);
    let body = json!({"dag_run_id": "mid", "include_future": true, "task_ids": ["extract"], "dry_run": false});
    let (_, done) = call(
        &app,
        &token,
        "POST",
        "/api/v2/dags/etl/clearTaskInstances",
        body,
    )
    .await;
    assert_eq!(runs_of(&done), vec!["mid", "new"]);
    let old = updraft::db::runs::get(app.pool(), "etl", "old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.state.as_str(), "failed", "an earlier run is left alone");
    let new = updraft::db::runs::get(app.pool(), "etl", "new")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.state.as_str(), "running");
}
