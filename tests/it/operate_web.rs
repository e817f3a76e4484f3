//! The run page's actions in the web UI: buttons only for those who may use them, a
//! confirmation listing what will change, then the change; notes; delete.

use crate::web_support::*;

async fn failed_run(app: &TestApp) -> i64 {
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some("r1".into()),
        ..Default::default()
    };
    updraft::db::runs::trigger(app.pool(), "etl", req)
        .await
        .unwrap();
    let pk = start_run(
        app.pool(),
        "etl",
        "r1",
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

async fn state_of(app: &TestApp, task: &str) -> String {
    sqlx::query_scalar("SELECT state FROM task_instances WHERE task_id = $1")
        .bind(task)
        .fetch_one(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn clear_and_mark_from_the_run_page_with_a_confirmation() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    failed_run(&app).await;
    let s = app.login().await;
    let (status, page) = app.page(&s, "/dags/etl/runs/r1").await;
    assert_eq!(status, 200);
    assert_eq!(
        texts(&page, "#run-clear-failed"),
        vec!["Clear failed tasks"]
    );
    assert_eq!(page.select(&sel(".task-clear")).count(), 4);
    // The task instance's own page (where a grid cell leads) has the same actions.
    let (_, ti_page) = app
        .page(&s, "/dags/etl/runs/r1/tasks/transform/logs/1")
        .await;
    let action = ti_page
        .select(&sel("#ti-actions"))
        .next()
        .and_then(|f| f.value().attr("action").map(str::to_string));
    assert_eq!(
        action.as_deref(),
        Some("/dags/etl/runs/r1/tasks/transform/action")
    );

    // First post: a confirmation listing exactly what will change; nothing changes yet.
    let csrf = s.csrf.clone();
    let res = app
        .post_form(
            &s,
            "/dags/etl/runs/r1/action",
            &[("csrf_token", &csrf), ("action", "clear_failed")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    let mut listed = texts(&doc, ".confirm-row td:first-child");
    listed.sort();
    assert_eq!(listed, vec!["load", "transform"]);
    assert_eq!(state_of(&app, "transform").await, "failed");

    // Confirm: cleared, back to the run page.
    let res = app
        .post_form(
            &s,
            "/dags/etl/runs/r1/action",
            &[
                ("csrf_token", &csrf),
                ("action", "clear_failed"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/dags/etl/runs/r1");
    assert_eq!(state_of(&app, "transform").await, "queued");
    assert_eq!(state_of(&app, "load").await, "none");

    // A task's mark, with its downstream.
    let path = "/dags/etl/runs/r1/tasks/transform/action";
    let form = [
        ("csrf_token", csrf.as_str()),
        ("action", "success"),
        ("downstream", "on"),
    ];
    let res = app.post_form(&s, path, &form).await;
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    let mut listed = texts(&doc, ".confirm-row td:first-child");
    listed.sort();
    assert_eq!(listed, vec!["load", "transform"]);
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "yes"));
    assert_eq!(app.post_form(&s, path, &confirmed).await.status(), 303);
    assert_eq!(state_of(&app, "load").await, "success");
    let run = updraft::db::runs::get(app.pool(), "etl", "r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state.as_str(), "success", "every task has succeeded");

    // Notes: Markdown rendered, HTML in them escaped.
    let res = app
        .post_form(
            &s,
            "/dags/etl/runs/r1/note",
            &[
                ("csrf_token", &csrf),
                ("note", "<b>fixed</b> **upstream**"),
                ("task_id", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = app.page(&s, "/dags/etl/runs/r1").await;
    assert_eq!(texts(&page, "#run-note")[0].trim(), "<b>fixed</b> upstream");
    assert_eq!(
        page.select(&sel("#run-note b")).count(),
        0,
        "escaped, not HTML"
    );
    assert_eq!(page.select(&sel("#run-note strong")).count(), 1, "Markdown");

    let logged: Vec<(String, String)> =
        sqlx::query_as("SELECT event, source FROM event_log WHERE source = 'ui' AND event <> 'sign_in' ORDER BY id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    let ui = |e: &str| (e.to_string(), "ui".to_string());
    assert_eq!(logged, vec![ui("clear"), ui("mark"), ui("note")]);

    // Delete, after its confirmation.
    let del = [
        ("csrf_token", csrf.as_str()),
        ("action", "delete"),
        ("confirm", "yes"),
    ];
    let res = app.post_form(&s, "/dags/etl/runs/r1/action", &del).await;
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["location"].to_str().unwrap()
        ),
        (303, "/dags/etl")
    );
    assert!(updraft::db::runs::get(app.pool(), "etl", "r1")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_viewer_sees_no_action_buttons_and_cannot_post_them() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    failed_run(&app).await;
    updraft::web::create_user(app.pool(), "vera", PASSWORD, "viewer")
        .await
        .unwrap();
    let s = app.login_as("vera", PASSWORD).await;
    let (status, page) = app.page(&s, "/dags/etl/runs/r1").await;
    assert_eq!(status, 200);
    assert_eq!(page.select(&sel("#run-actions")).count(), 0);
    assert_eq!(page.select(&sel(".task-clear")).count(), 0);
    assert_eq!(page.select(&sel("#note-form")).count(), 0);
    let (_, ti_page) = app
        .page(&s, "/dags/etl/runs/r1/tasks/transform/logs/1")
        .await;
    assert_eq!(ti_page.select(&sel("#ti-actions")).count(), 0);
    let csrf = s.csrf.clone();
    let form = [
        ("csrf_token", csrf.as_str()),
        ("action", "clear"),
        ("confirm", "yes"),
    ];
    let res = app.post_form(&s, "/dags/etl/runs/r1/action", &form).await;
    assert_eq!(res.status(), 403);
    assert_eq!(state_of(&app, "transform").await, "failed");
}

#[tokio::test]
async fn the_audit_log_page_lists_and_filters_changes() {
    let app = TestApp::spawn().await;
    for (event, dag) in [("trigger", "etl"), ("clear", "etl"), ("pause", "other")] {
        let e = updraft::db::events::Event {
            event,
            owner: Some("alice"),
            dag_id: Some(dag),
            source: "api",
            extra: serde_json::json!({"why": "<script>"}),
            ..Default::default()
        };
        updraft::db::events::record(app.pool(), &e).await.unwrap();
    }
    let s = app.login().await;
    let (status, page) = app.page(&s, "/audit-log").await;
    assert_eq!(status, 200);
    // The sign-in of this session is there too, newest first.
    assert_eq!(
        texts(&page, ".event-row .event"),
        vec!["sign_in", "pause", "clear", "trigger"]
    );
    let (_, page) = app.page(&s, "/audit-log?dag_id=etl&event=clear").await;
    assert_eq!(texts(&page, ".event-row .event"), vec!["clear"]);
    assert_eq!(
        page.select(&sel("#events script")).count(),
        0,
        "details are escaped"
    );
    let (_, page) = app.page(&s, "/audit-log?owner=nobody").await;
    assert_eq!(page.select(&sel("#no-events")).count(), 1);
}
