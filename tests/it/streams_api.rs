//! The stream endpoints against the embedded broker and a real Postgres: record schemas per
//! DAG version, replay (API and CLI), the topic monitor (API and Prometheus gauges).

use std::process::Command;

use serde_json::json;
use updraft::dag::{OperatorName, Task, TaskId};
use updraft::operators::kafka::EmbeddedKafka;

use crate::helpers::*;
use crate::pipeline::{assert_table_holds_exactly, sink_env};
use crate::streams::{committed, produce, TOPIC};

/// The record schema of the shipped user_automation's fetch task, downloaded per version.
#[tokio::test]
async fn record_schemas_are_served_per_dag_version() {
    use crate::web_support::TestApp;
    let app = TestApp::spawn().await;
    let token = app.token().await;
    let bag = updraft::dag::DagBag::load(std::path::Path::new("dags"));
    let mut only = updraft::dag::DagBag::default();
    let (id, loaded) = bag
        .dags
        .iter()
        .find(|(id, _)| id.as_str() == "user_automation")
        .unwrap();
    only.dags.insert(id.clone(), loaded.clone());
    updraft::db::dags::sync_bag(app.pool(), &only, &mut Default::default())
        .await
        .unwrap();
    let get = |path: &'static str| {
        let req = app.client.get(app.url(path)).bearer_auth(&token);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = get("/api/v2/dags/user_automation/dagVersions/1/recordSchemas").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_entries"], 1);
    let s = &body["schemas"][0];
    assert_eq!(s["task_id"], "fetch_users");
    assert_eq!(
        s["schema"]["x-updraft-source"],
        "user_automation.fetch_users"
    );
    assert_eq!(s["schema"]["properties"]["id"]["format"], "uuid");
    assert_eq!(s["schema"]["required"].as_array().unwrap().len(), 12);
    let (status, _) = get("/api/v2/dags/user_automation/dagVersions/2/recordSchemas").await;
    assert_eq!(status, 404);
}

/// Replay through the API and the CLI: from the beginning, the next try reads every record
/// again and the table keeps its count (upserts); the CLI moves only the partition named.
/// (The embedded broker keeps a member of a process that exited for its session timeout,
/// so no sink runs after the CLI's replay here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_the_beginning_leaves_the_table_count_unchanged() {
    use std::sync::Arc;
    use updraft::operators::{self, TaskContext};

    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let env = Arc::new(updraft::operators::OperatorEnv {
        kafka_bootstrap_servers: Some(servers.clone()),
        ..Default::default()
    });
    let e = env.clone();
    let app = crate::web_support::TestApp::spawn_with(move |w| w.operator_env = e).await;
    let token = app.token().await;
    let pool = app.pool().clone();
    let sink = Task::new(TaskId::parse("sink").unwrap(), OperatorName::Sink);
    install(&pool, &[dag("replayed", vec![sink])]).await;
    let ids = produce(&servers, 100).await;
    let run_sink = || {
        let (mut ctx, _log) = TaskContext::for_test(sink_env(&kafka, &app.db.url));
        ctx.dag_id = "replayed".into();
        ctx.task_id = "sink".into();
        async move {
            let out = operators::run(OperatorName::Sink, json!({}), &ctx)
                .await
                .unwrap();
            out.xcom[0].1["consumed"].as_i64().unwrap()
        }
    };
    assert_eq!(run_sink().await, 100);
    let group = "updraft.replayed.sink";
    assert_eq!(committed(&servers, group), 100);

    let post = |body: serde_json::Value| {
        let req = app
            .client
            .post(app.url("/api/v2/dags/replayed/tasks/sink/replay"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, _) = post(json!({"to": "offset"})).await;
    assert_eq!(status, 422, "an offset replay needs the offset");
    let (status, body) = post(json!({"to": "beginning"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["group"], group);
    assert_eq!(body["topic"], TOPIC);
    let parts = body["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    let previous: i64 = parts.iter().map(|p| p["previous"].as_i64().unwrap()).sum();
    assert_eq!(previous, 100);
    assert!(parts.iter().all(|p| p["offset"] == 0));
    assert_eq!(committed(&servers, group), 0);

    assert_eq!(run_sink().await, 100, "every record is read again");
    assert_table_holds_exactly(&pool, &ids).await;

    // The CLI, one partition: only its records are read again.
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args([
            "streams",
            "replay",
            "replayed",
            "sink",
            "--to-beginning",
            "--partition",
            "1",
        ])
        .env("DATABASE_URL", &app.db.url)
        .env("KAFKA_BOOTSTRAP_SERVERS", &servers)
        .env("UPDRAFT_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("partition 1: "), "{stdout}");
    assert!(!stdout.contains("partition 0"), "{stdout}");
    // Partition 1 is back at its start; the others are untouched.
    let behind = 100 - committed(&servers, group);
    assert!(
        behind > 0 && behind < 100,
        "partition 1 holds some of the 100 records: {behind}"
    );
    assert!(
        stdout.contains(&format!("partition 1: {behind} -> 0")),
        "the CLI reports the move: {stdout}"
    );
}

/// The topic monitor: a sink's topic with its partitions' end offsets and the group's lag
/// (produced minus committed), from the API and as Prometheus gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_show_end_offsets_and_lag_as_produced_minus_committed() {
    use std::sync::Arc;
    use updraft::operators::{self, TaskContext};

    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let env = Arc::new(updraft::operators::OperatorEnv {
        kafka_bootstrap_servers: Some(servers.clone()),
        ..Default::default()
    });
    let app = crate::web_support::TestApp::spawn_with(move |w| w.operator_env = env).await;
    let token = app.token().await;
    let sink = Task::new(TaskId::parse("sink").unwrap(), OperatorName::Sink);
    install(app.pool(), &[dag("monitored", vec![sink])]).await;
    produce(&servers, 100).await;
    let (mut ctx, _log) = TaskContext::for_test(sink_env(&kafka, &app.db.url));
    ctx.dag_id = "monitored".into();
    ctx.task_id = "sink".into();
    operators::run(OperatorName::Sink, json!({}), &ctx)
        .await
        .unwrap();
    produce(&servers, 20).await;

    let get = |path: &'static str| app.client.get(app.url(path)).bearer_auth(&token).send();
    let body: serde_json::Value = get("/api/v2/streams/topics")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["total_entries"], 1, "{body}");
    let t = &body["topics"][0];
    assert_eq!(t["topic"], TOPIC);
    assert_eq!(t["exists"], true);
    assert_eq!(t["end_offset"], 120);
    assert_eq!(t["tasks"][0]["dag_id"], "monitored");
    assert_eq!(t["tasks"][0]["role"], "consumes");
    let g = &t["groups"][0];
    assert_eq!(g["group"], "updraft.monitored.sink");
    assert_eq!(g["lag"], 20);
    let ends: Vec<i64> = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end"].as_i64().unwrap())
        .collect();
    for (p, end) in g["partitions"].as_array().unwrap().iter().zip(&ends) {
        assert_eq!(
            p["lag"].as_i64().unwrap(),
            end - p["committed"].as_i64().unwrap(),
            "{p}"
        );
    }

    let text = get("/metrics").await.unwrap().text().await.unwrap();
    let lag: i64 = text
        .lines()
        .filter(|l| {
            l.starts_with("updraft_stream_lag{") && l.contains("group=\"updraft.monitored.sink\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, 20, "{text}");
    let end: i64 = text
        .lines()
        .filter(|l| l.starts_with("updraft_stream_end_offset{topic=\"users_created\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(end, 120);
}
