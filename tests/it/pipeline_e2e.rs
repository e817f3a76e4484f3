//! The pipeline through the real engine and the real binary, and the pipeline bench's path
//! (the bench itself is `updraft bench`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::Row as _;
use updraft::operators::fetch::stub::RandomUserStub;
use updraft::operators::kafka::EmbeddedKafka;

use crate::helpers::fresh_db;
use crate::pipeline::{env_for, expected_row, fixture, COLUMNS};

/// A small run of the bench's path, so the bench itself cannot rot.
#[tokio::test]
async fn bench_path_moves_every_record() {
    let db = fresh_db().await;
    let figures = updraft::bench::pipeline::measure(&db.url, 12_000)
        .await
        .unwrap();
    assert_eq!(figures.stages.len(), 4);
    assert!(figures
        .stages
        .iter()
        .all(|s| s.records == 12_000 && s.seconds > 0.0));
    assert!(!figures.cold_start.is_zero());
}

/// The whole job through the real engine (scheduler + worker in this process): the shipped
/// DAG file, loaded by the real parser, triggered, with the data source at the stub and the
/// sink at Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_automation_through_the_engine_fills_the_table() {
    use crate::helpers::{fast_settings, trigger, wait_run, Engine};
    let db = fresh_db().await;
    let stub = RandomUserStub::start(&fixture()).await.unwrap();
    let kafka = EmbeddedKafka::start(3).unwrap();
    let bag = updraft::dag::DagBag::load(std::path::Path::new("dags"));
    let mut only = updraft::dag::DagBag::default();
    let (id, loaded) = bag
        .dags
        .iter()
        .find(|(id, _)| id.as_str() == "user_automation")
        .unwrap();
    only.dags.insert(id.clone(), loaded.clone());
    updraft::db::dags::sync_bag(&db.pool, &only, &mut BTreeMap::new())
        .await
        .unwrap();

    let folder = tempfile::tempdir().unwrap();
    let mut settings = fast_settings(folder.path());
    settings.operator_env = env_for(&stub, &kafka, &db.url);
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let run_id = trigger(&db.pool, "user_automation", json!({})).await;
    assert_eq!(
        wait_run(
            &db.pool,
            "user_automation",
            &run_id,
            Duration::from_secs(90)
        )
        .await,
        "success"
    );
    // The @daily schedule (catchup off) adds a run of its own; let every run finish. Their
    // sinks share one consumer group, so each may stop having drained only its partitions;
    // together they drain the topic.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE dag_id = 'user_automation' AND state NOT IN ('success', 'failed')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} runs still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.stop().await;

    // Every successful run adds its 50 users.
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dag_runs WHERE dag_id = 'user_automation' AND state = 'success'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let sql = format!("SELECT {COLUMNS} FROM spark_streams.created_users");
    let all = sqlx::query(&sql).fetch_all(&db.pool).await.unwrap();
    if all.len() as i64 != 50 * runs {
        let lines: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT r.run_id, t.task_id, l.line FROM task_logs l JOIN task_instances t ON t.id = l.ti_id JOIN dag_runs r ON r.id = t.run_pk ORDER BY l.id",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap_or_default();
        for l in lines {
            eprintln!("{l:?}");
        }
    }
    assert_eq!(all.len() as i64, 50 * runs);
    let expected: BTreeMap<String, Vec<Option<String>>> = stub
        .users(50)
        .iter()
        .map(|u| {
            (
                u["login"]["username"].as_str().unwrap().to_string(),
                expected_row(u),
            )
        })
        .collect();
    for r in &all {
        let values: Vec<Option<String>> = (0..10).map(|i| r.get::<Option<String>, _>(i)).collect();
        let want = &expected[values[6].as_deref().unwrap()];
        assert_eq!(values[..5], want[..5]);
        assert_eq!(values[6..], want[6..]);
    }
}

/// The "done when": `updraft standalone` with nothing but DATABASE_URL and
/// DATASOURCE_URL (pointing at the stub) runs `user_automation` triggered from the CLI, with
/// the embedded Kafka and its own database as the sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_cli_runs_user_automation_with_embedded_kafka() {
    use std::process::{Command, Stdio};
    let db = fresh_db().await;
    let stub = RandomUserStub::start(&fixture()).await.unwrap();
    let dags = tempfile::tempdir().unwrap();
    std::fs::copy(
        "dags/user_automation.yaml",
        dags.path().join("user_automation.yaml"),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    // Standalone also serves the web UI; keep it off 8080, which other tests may hold.
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let updraft = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_updraft"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("UPDRAFT_DAGS_FOLDER", dags.path())
            .env("UPDRAFT_HOME", home.path())
            .env("UPDRAFT_WEB_PORT", &web_port)
            .env("DATASOURCE_URL", stub.url())
            .env("UPDRAFT_POLL_INTERVAL", "200ms")
            .env("UPDRAFT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut standalone = updraft(&["standalone"]).spawn().unwrap();

    // Trigger from the CLI once the DAG folder has been processed, and wait for the run.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let mut trigger = updraft(&["dags", "trigger", "user_automation", "--wait"]);
        let status = tokio::task::spawn_blocking(move || trigger.status())
            .await
            .unwrap()
            .unwrap();
        if status.success() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Wait for the scheduled run too, then stop standalone.
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE dag_id = 'user_automation' AND state NOT IN ('success', 'failed')",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if open == 0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: SIGTERM to the child we started; standalone shuts down gracefully on it.
    unsafe {
        libc::kill(standalone.id() as i32, libc::SIGTERM);
    }
    let _ = tokio::task::spawn_blocking(move || standalone.wait()).await;
    assert!(status.success(), "`dags trigger --wait` failed");
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dag_runs WHERE dag_id = 'user_automation' AND state = 'success'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM spark_streams.created_users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(runs >= 1);
    assert_eq!(rows, 50 * runs);
}

/// An HTTP API whose `/gone` answers 404 and `/down` 503, counting the requests to each.
async fn failing_api() -> (String, Arc<[AtomicUsize; 2]>) {
    use axum::http::StatusCode;
    let hits: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let (gone, down) = (hits.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/gone",
            axum::routing::get(move || async move {
                gone[0].fetch_add(1, Ordering::SeqCst);
                (StatusCode::NOT_FOUND, "no such thing")
            }),
        )
        .route(
            "/down",
            axum::routing::get(move || async move {
                down[1].fetch_add(1, Ordering::SeqCst);
                (StatusCode::SERVICE_UNAVAILABLE, "try later")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

/// Through the real engine: with `retries: 3`, a permanent operator error (a 404, a command
/// that cannot start) fails the task after its first try, while a transient one (a 503) is
/// retried per the policy; the log says which kind each failure was.
#[tokio::test]
async fn permanent_errors_fail_at_once_and_transient_ones_are_retried() {
    use crate::helpers::{dag, fast_settings, install, states, task, trigger, wait_run, Engine};
    use updraft::dag::OperatorName;
    let db = fresh_db().await;
    let (base, hits) = failing_api().await;
    let get = |endpoint: &str| json!({"endpoint": endpoint, "method": "GET"});
    let mut gone = task("gone", OperatorName::Http, get("gone"), &[]);
    let mut down = task("down", OperatorName::Http, get("down"), &[]);
    let mut nowhere = task(
        "nowhere",
        OperatorName::Bash,
        json!({"bash_command": "true", "cwd": "/nonexistent/updraft-it"}),
        &[],
    );
    for t in [&mut gone, &mut down, &mut nowhere] {
        t.retries = 3;
    }
    install(&db.pool, &[dag("op_errors", vec![gone, down, nowhere])]).await;
    let folder = tempfile::tempdir().unwrap();
    let mut settings = fast_settings(folder.path());
    settings
        .operator_env
        .set_env_connection("http_default", &base);
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let run_id = trigger(&db.pool, "op_errors", json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "op_errors", &run_id, Duration::from_secs(60)).await,
        "failed"
    );
    engine.stop().await;

    let s = states(&db.pool, "op_errors", &run_id).await;
    assert_eq!(s["gone"], ("failed".into(), 1), "a 404 is not retried");
    assert_eq!(
        s["nowhere"],
        ("failed".into(), 1),
        "nor a command that cannot start"
    );
    assert_eq!(
        s["down"],
        ("failed".into(), 4),
        "a 503 is: one try and three retries"
    );
    assert_eq!(hits[0].load(Ordering::SeqCst), 1);
    assert_eq!(hits[1].load(Ordering::SeqCst), 4);

    let failures = |task_id: &str| {
        let pool = db.pool.clone();
        let task_id = task_id.to_string();
        async move {
            let lines: Vec<String> = sqlx::query_scalar(
                "SELECT l.line FROM task_logs l JOIN task_instances t ON t.id = l.ti_id \
                 WHERE t.task_id = $1 AND l.line LIKE 'Task failed%' ORDER BY l.id",
            )
            .bind(task_id)
            .fetch_all(&pool)
            .await
            .unwrap();
            lines
        }
    };
    let gone = failures("gone").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(
        gone[0].starts_with("Task failed (permanent: request rejected; not retrying): ")
            && gone[0].contains("404"),
        "{gone:?}"
    );
    let nowhere = failures("nowhere").await;
    assert!(
        nowhere[0].starts_with("Task failed (permanent: command cannot start; not retrying): "),
        "{nowhere:?}"
    );
    let down = failures("down").await;
    assert_eq!(down.len(), 4, "{down:?}");
    assert!(
        down[..3].iter().all(|l| l
            .starts_with("Task failed (transient: server error; retrying per policy): ")
            && l.contains("503")),
        "{down:?}"
    );
    assert!(
        down[3].starts_with("Task failed (transient: server error; no retries left): "),
        "{down:?}"
    );
}

/// A sink table that exists with another shape (here `id` is a number, not a uuid) rejects every
/// batch the same way: a permanent schema error naming the column type, not a retry loop.
#[tokio::test]
async fn a_sink_table_of_another_shape_is_a_permanent_error() {
    use crate::pipeline::{publish, sink_env};
    use updraft::dag::OperatorName;
    use updraft::operators::{self, ErrorKind, Reason, TaskContext};
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(1).unwrap();
    publish(&kafka, "users_created", 10).await;
    sqlx::query("CREATE SCHEMA spark_streams")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE spark_streams.created_users (id bigint PRIMARY KEY, first_name text)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (ctx, _log) = TaskContext::for_test(sink_env(&kafka, &db.url));
    let err = operators::run(OperatorName::Sink, json!({"columns": ["first_name"]}), &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::Schema),
        "{err}"
    );
    assert!(err.to_string().contains("writing 10 rows failed"), "{err}");
}
