//! The pipeline through the real engine and the real binary, and the pipeline bench's path
//! (the bench itself is `updraft bench`).

use std::collections::BTreeMap;
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
