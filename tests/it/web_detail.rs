//! DAG detail, run detail, task logs (paging, SSE tail, download), import errors, health,
//! metrics and a database outage, against a real Postgres.

use crate::web_support::*;

#[tokio::test]
async fn dag_detail_draws_graph_grid_source_versions_and_import_error() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &["x"])]).await;
    let s = app.login().await;
    let (_, doc) = app.page(&s, "/dags/etl").await;
    assert_eq!(doc.select(&sel("svg#graph g.node")).count(), 4);
    assert_eq!(doc.select(&sel("svg#graph path.edge")).count(), 3);
    assert_eq!(doc.select(&sel("svg#graph rect.state-none")).count(), 4);
    assert!(texts(&doc, "#no-runs")[0].starts_with("No runs yet."));
    assert!(texts(&doc, "#source")[0].starts_with("dag_id: etl"));
    assert_eq!(doc.select(&sel("table.versions tbody tr")).count(), 1);
    assert_eq!(doc.select(&sel("#dag-import-error")).count(), 0);

    let run = updraft::db::runs::trigger(app.pool(), "etl", Default::default())
        .await
        .unwrap();
    let pk = start_run(
        app.pool(),
        "etl",
        &run.run_id,
        &["extract", "transform", "notify", "load"],
    )
    .await;
    set_task(app.pool(), pk, "extract", "success").await;
    set_task(app.pool(), pk, "transform", "running").await;
    add_import_error(
        app.pool(),
        "etl.yaml",
        "etl.yaml:3:1: tasks.load: unknown field `bogus`",
    )
    .await;
    let (_, doc) = app.page(&s, "/dags/etl").await;
    assert_eq!(doc.select(&sel("svg#graph rect.state-success")).count(), 1);
    assert_eq!(doc.select(&sel("svg#graph rect.state-running")).count(), 1);
    assert_eq!(
        texts(&doc, "table.grid tbody th.task"),
        vec!["extract", "transform", "notify", "load"]
    );
    assert_eq!(doc.select(&sel("table.grid tbody a.cell")).count(), 4);
    assert_eq!(
        doc.select(&sel("table.grid a.cell.state-success")).count(),
        1
    );
    assert_eq!(
        doc.select(&sel("#dag-live[data-refresh]")).count(),
        1,
        "live while a run is unfinished"
    );
    assert!(texts(&doc, "#dag-import-error pre")[0].contains("unknown field `bogus`"));

    let (status, doc) = app.page(&s, "/dags/missing").await;
    assert_eq!(status, 404);
    assert!(texts(&doc, ".error")[0].contains("DAG `missing` not found"));
    // An error page keeps a way on: links to the main pages.
    let links: Vec<String> = doc
        .select(&sel(".error-nav a"))
        .filter_map(|a| a.value().attr("href").map(str::to_string))
        .collect();
    assert!(
        links.contains(&"/dags".to_string()) && links.contains(&"/import-errors".to_string()),
        "{links:?}"
    );
    // And every page has an icon, also where browsers look for one on their own.
    assert_eq!(doc.select(&sel("link[rel=icon]")).count(), 1);
    let icon = reqwest::get(format!("{}/favicon.ico", app.base))
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn run_detail_shows_states_tries_and_timeline_then_stops_refreshing() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = app.login().await;
    let run = updraft::db::runs::trigger(app.pool(), "etl", Default::default())
        .await
        .unwrap();
    let pk = start_run(
        app.pool(),
        "etl",
        &run.run_id,
        &["load", "extract", "transform", "notify"],
    )
    .await;
    set_task(app.pool(), pk, "extract", "success").await;
    set_task(app.pool(), pk, "transform", "running").await;
    let path = format!(
        "/dags/etl/runs/{}",
        run.run_id.replace(':', "%3A").replace('+', "%2B")
    );
    let (status, doc) = app.page(&s, &path).await;
    assert_eq!(status, 200);
    assert_eq!(
        texts(&doc, ".task-row .task-link"),
        vec!["extract", "transform", "notify", "load"],
        "DAG order"
    );
    assert_eq!(
        texts(&doc, ".task-row .task-state"),
        vec!["success", "running", "none", "none"]
    );
    assert_eq!(
        texts(&doc, ".task-row td:nth-child(3)")[0],
        "1 of 2",
        "max_tries counts retries"
    );
    assert_eq!(doc.select(&sel(".task-row .gantt")).count(), 2);
    assert_eq!(doc.select(&sel("#run-live[data-refresh]")).count(), 1);

    finish_run(app.pool(), pk, "success").await;
    let (_, doc) = app.page(&s, &path).await;
    assert_eq!(texts(&doc, "#run-state"), vec!["success"]);
    assert_eq!(doc.select(&sel("#run-live[data-refresh]")).count(), 0);
    let (status, _) = app.page(&s, "/dags/etl/runs/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn task_log_pages_streams_and_downloads() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = app.login().await;
    let run = updraft::db::runs::trigger(app.pool(), "etl", Default::default())
        .await
        .unwrap();
    let pk = start_run(app.pool(), "etl", &run.run_id, &["extract"]).await;
    let ti = set_task(app.pool(), pk, "extract", "running").await;
    let lines: Vec<String> = (1..=1500).map(|i| format!("line {i}")).collect();
    add_log(app.pool(), ti, 1, &lines).await;
    let base = format!(
        "/dags/etl/runs/{}/tasks/extract/logs/1",
        run.run_id.replace(':', "%3A").replace('+', "%2B")
    );

    let (_, doc) = app.page(&s, &base).await;
    let shown = texts(&doc, "#log .line .text");
    assert_eq!(shown.len(), 1000);
    assert_eq!(shown[0], "line 1");
    assert_eq!(
        doc.select(&sel("#log[data-stream]")).count(),
        0,
        "not the last page"
    );
    let next = doc
        .select(&sel("#log-next"))
        .next()
        .unwrap()
        .value()
        .attr("href")
        .unwrap()
        .to_string();
    let (_, doc) = app.page(&s, &next).await;
    let shown = texts(&doc, "#log .line .text");
    assert_eq!((shown.len(), shown[0].as_str()), (500, "line 1001"));
    let stream = doc
        .select(&sel("#log"))
        .next()
        .unwrap()
        .value()
        .attr("data-stream")
        .unwrap()
        .to_string();
    assert!(
        stream.contains("/stream?after="),
        "last page of a running try is tailed"
    );

    // The tail sends new lines, then `end` once the task finishes.
    add_log(app.pool(), ti, 1, &["late line"]).await;
    set_task(app.pool(), pk, "extract", "success").await;
    let body = app
        .client
        .get(app.url(&stream))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("event: line") && body.contains("late line"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("data: success"), "{body}");
    assert!(!body.contains("line 1500\""), "only lines after the page");

    let res = app
        .client
        .get(app.url(&format!("{base}/download")))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let text = res.text().await.unwrap();
    assert_eq!(text.lines().count(), 1501);
    assert!(text.lines().last().unwrap().ends_with("] late line"));

    let (status, _) = app.page(&s, &base.replace("/logs/1", "/logs/zero")).await;
    assert_eq!(status, 404);
    // A try the task never had: 404 with the tries it did have, not an empty page.
    let (status, doc) = app.page(&s, &base.replace("/logs/1", "/logs/7")).await;
    assert_eq!(status, 404);
    assert!(texts(&doc, ".error")[0].contains("no try 7"));
    let (status, doc) = app.page(&s, &base.replace("extract", "nope")).await;
    assert_eq!(status, 404);
    assert!(texts(&doc, ".error")[0].contains("Task `nope`"));
}

#[tokio::test]
async fn import_errors_page_lists_broken_files() {
    let app = TestApp::spawn().await;
    let s = app.login().await;
    let (_, doc) = app.page(&s, "/import-errors").await;
    assert_eq!(
        texts(&doc, "#no-import-errors"),
        vec!["No import errors: every DAG file loaded."]
    );
    add_import_error(
        app.pool(),
        "broken.yaml",
        "broken.yaml:2:5: schedule: not a cron expression\nbroken.yaml:9:1: tasks: empty",
    )
    .await;
    let (_, doc) = app.page(&s, "/import-errors").await;
    assert_eq!(texts(&doc, ".import-error .file"), vec!["broken.yaml"]);
    assert_eq!(texts(&doc, ".import-error .messages li").len(), 2);
    let (_, doc) = app.page(&s, "/dags").await;
    assert_eq!(
        texts(&doc, "#import-error-banner"),
        vec!["1 file(s) failed to load"]
    );
}

#[tokio::test]
async fn health_is_public_metrics_are_not() {
    let app = TestApp::spawn().await;
    let health: serde_json::Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["metadatabase"]["status"], "healthy");
    assert_eq!(
        health["scheduler"]["status"], "unhealthy",
        "no heartbeat yet"
    );
    sqlx::query("INSERT INTO scheduler_heartbeats (id, hostname) VALUES (gen_random_uuid(), 'h')")
        .execute(app.pool())
        .await
        .unwrap();
    let health: serde_json::Value = app
        .client
        .get(app.url("/api/v2/monitor/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["scheduler"]["status"], "healthy");
    assert!(
        health["scheduler"]["heartbeat_age_seconds"]
            .as_f64()
            .unwrap()
            < 5.0
    );

    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let run = updraft::db::runs::trigger(app.pool(), "etl", Default::default())
        .await
        .unwrap();
    let pk = start_run(app.pool(), "etl", &run.run_id, &["extract", "load"]).await;
    set_task(app.pool(), pk, "extract", "queued").await;
    let body = app
        .client
        .get(app.url("/metrics"))
        .basic_auth("alice", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("updraft_dag_runs{state=\"running\"} 1"),
        "{body}"
    );
    assert!(body.contains("updraft_task_instances{state=\"queued\"} 1"));
    assert!(body.contains("updraft_queue_depth 1"));
    assert!(body.contains("updraft_task_handoff_seconds_count 1"));
    assert!(
        body.contains(
            "updraft_http_request_duration_seconds_count{method=\"GET\",route=\"/health\"} 1"
        ),
        "{body}"
    );
}

/// With the database gone: health says so with a 503, pages and the API answer 500 with a
/// message that points at the server log and leaks nothing of the cause.
#[tokio::test]
async fn database_down_is_reported_without_leaking_internals() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = updraft::web::AppState::new(
        pool,
        updraft::web::WebSettings::new(addr, "dags".into()),
        shutdown.clone(),
    );
    tokio::spawn(updraft::web::serve_router(
        updraft::web::router(state),
        listener,
        shutdown.clone(),
    ));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let res = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["metadatabase"]["status"], "unhealthy");

    let res = client
        .get(format!("http://{addr}/api/v2/dags"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "internal server error; the cause is in the server log"
    );

    let res = client
        .get(format!("http://{addr}/dags"))
        .header("cookie", "updraft_session=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let html = res.text().await.unwrap();
    let doc = scraper::Html::parse_document(&html);
    assert!(texts(&doc, ".error")[0].starts_with("Something went wrong on the server."));
    assert!(
        !html.contains("127.0.0.1:1") && !html.to_lowercase().contains("pool"),
        "{html}"
    );
    shutdown.cancel();
}
