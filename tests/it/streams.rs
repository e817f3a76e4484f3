//! Continuous streams (`@continuous` + a `mode: continuous` sink) through the real engine,
//! against librdkafka's mock cluster and a real Postgres sink, with records from an outside
//! producer (a plain rdkafka producer, not updraft's publish task).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use updraft::core::Schedule;
use updraft::dag::{Arg, Dag, OperatorName, Task, TaskId};
use updraft::operators::kafka::EmbeddedKafka;

use crate::helpers::*;
use crate::pipeline::{assert_table_holds_exactly, sink_env};

pub(crate) const TOPIC: &str = "users_created";

/// A manual DAG whose fetch task declares the record (never run: only its schema is used).
fn source_dag() -> Dag {
    let fetch = Task {
        args: Arg::Map(vec![(
            "fields".into(),
            Arg::Value(json!({"id": "$uuid", "first_name": "name.first"})),
        )]),
        ..Task::new(TaskId::parse("fetch").unwrap(), OperatorName::Fetch)
    };
    dag("records", vec![fetch])
}

/// A `@continuous` DAG whose one task streams `users_created` into Postgres, held to the
/// record schema of `records.fetch`.
fn stream_dag(id: &str, retries: u32) -> Dag {
    let sink = Task {
        args: Arg::Map(vec![
            ("mode".into(), Arg::Value("continuous".into())),
            (
                "schema_from".into(),
                Arg::Value(json!({"dag_id": "records", "task_id": "fetch"})),
            ),
            ("linger".into(), Arg::Value("50ms".into())),
            ("batch_size".into(), Arg::Value(100.into())),
            (
                "properties".into(),
                Arg::Value(json!({"session.timeout.ms": "2000"})),
            ),
        ]),
        retries,
        retry_delay: updraft::dag::Duration::ZERO,
        ..Task::new(TaskId::parse("stream").unwrap(), OperatorName::Sink)
    };
    Dag {
        schedule: Schedule::Continuous,
        max_active_runs: 1,
        ..dag(id, vec![sink])
    }
}

pub(crate) fn producer(servers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("log_level", "3")
        .create()
        .unwrap()
}

/// Publishes `n` records the way any producer might, and returns their ids.
pub(crate) async fn produce(servers: &str, n: usize) -> BTreeSet<String> {
    let p = producer(servers);
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let payload = json!({"id": id, "first_name": format!("outside{i}")}).to_string();
        p.send(
            FutureRecord::to(TOPIC).key(&id).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        ids.insert(id);
    }
    ids
}

/// Publishes one record as given.
pub(crate) async fn send(servers: &str, record: serde_json::Value) {
    let payload = record.to_string();
    producer(servers)
        .send(
            FutureRecord::<(), _>::to(TOPIC).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

pub(crate) async fn rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM spark_streams.created_users")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn wait_rows(pool: &sqlx::PgPool, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let have = rows(pool).await;
        if have == n {
            return;
        }
        assert!(have <= n, "more rows ({have}) than records ({n})");
        assert!(
            Instant::now() < deadline,
            "{have} rows of {n} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the DAG has no queued or running run.
async fn wait_idle(pool: &sqlx::PgPool, dag_id: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(dag_id)
        .fetch_one(pool)
        .await
        .unwrap();
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{dag_id} still has {open} open runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (run_id, run state, task state, task's `consumed` XCom) of each run, oldest first.
async fn runs(pool: &sqlx::PgPool, dag_id: &str) -> Vec<(String, String, String, Option<i64>)> {
    sqlx::query_as(
        "SELECT r.run_id, r.state, t.state, (x.value->>'consumed')::bigint
         FROM dag_runs r JOIN task_instances t ON t.run_pk = r.id
         LEFT JOIN xcom x ON x.run_pk = r.id AND x.task_id = t.task_id AND x.key = 'return_value'
         WHERE r.dag_id = $1 ORDER BY r.id",
    )
    .bind(dag_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The group's committed offsets, summed over the topic's three partitions.
pub(crate) fn committed(servers: &str, group: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .set("log_level", "3")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(TOPIC, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_records_land_continuously_and_pause_resumes_from_the_committed_offset() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    install(&db.pool, &[source_dag(), stream_dag("stream_pg", 2)]).await;
    let folder = empty_folder();
    let mut settings = fast_settings(folder.path());
    settings.operator_env = sink_env(&kafka, &db.url);
    // No trigger: `@continuous` starts the first run by itself.
    let engine = Engine::start(&db.pool, settings, 1, 1);

    // Two bursts while the stream runs: each lands without another run or trigger. Two
    // records of the first break the record schema of `records.fetch`: dead letters.
    let mut ids = produce(&servers, 50).await;
    send(&servers, json!({"id": uuid::Uuid::new_v4().to_string()})).await;
    send(&servers, json!({"id": "7", "first_name": "x"})).await;
    wait_rows(&db.pool, 50, Duration::from_secs(60)).await;
    ids.extend(produce(&servers, 50).await);
    wait_rows(&db.pool, 100, Duration::from_secs(30)).await;
    let r = runs(&db.pool, "stream_pg").await;
    assert_eq!(r.len(), 1, "one run holds the stream: {r:?}");
    assert_eq!((r[0].1.as_str(), r[0].2.as_str()), ("running", "running"));

    // Pause: the stream stops cleanly (the run succeeds), and no new run starts.
    updraft::db::dags::set_paused(&db.pool, "stream_pg", true)
        .await
        .unwrap();
    wait_idle(&db.pool, "stream_pg", Duration::from_secs(30)).await;
    let r = runs(&db.pool, "stream_pg").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].1.as_str(), r[0].2.as_str()), ("success", "success"));
    assert_eq!(r[0].3, Some(102), "the first run consumed both bursts");
    let group = "updraft.stream_pg.stream";
    assert_eq!(
        committed(&servers, group),
        102,
        "every record's offset is committed"
    );
    let mut dead: Vec<String> =
        sqlx::query_scalar("SELECT error FROM spark_streams.created_users_dead_letter")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    dead.sort();
    assert_eq!(
        dead,
        [
            "breaks the record schema of records.fetch: `first_name` is missing",
            "breaks the record schema of records.fetch: `id` is not a UUID",
        ]
    );

    // Records published while paused wait in the topic.
    ids.extend(produce(&servers, 30).await);
    assert_eq!(rows(&db.pool).await, 100);

    // Unpause: a new run resumes from the committed offsets: it reads the 30, not all 130.
    updraft::db::dags::set_paused(&db.pool, "stream_pg", false)
        .await
        .unwrap();
    wait_rows(&db.pool, 130, Duration::from_secs(60)).await;
    updraft::db::dags::set_paused(&db.pool, "stream_pg", true)
        .await
        .unwrap();
    wait_idle(&db.pool, "stream_pg", Duration::from_secs(30)).await;
    engine.stop().await;
    let r = runs(&db.pool, "stream_pg").await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!((r[1].1.as_str(), r[1].2.as_str()), ("success", "success"));
    assert_eq!(r[1].3, Some(30), "resumed from the committed offsets");
    assert_eq!(committed(&servers, group), 132);
    assert_table_holds_exactly(&db.pool, &ids).await;
}

fn sigkill(child: &mut std::process::Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// The stream's worker process is SIGKILLed mid-stream while an outside producer keeps
/// publishing: another worker takes the stream over and every record is in the table exactly
/// once. Then that worker shuts down: the stream stops at once (not after the grace period)
/// and goes back to the queue with its try uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stream_worker_is_taken_over_and_every_record_lands_exactly_once() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    install(&db.pool, &[source_dag(), stream_dag("stream_kill", 3)]).await;
    let folder = empty_folder();
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .arg("worker")
        .env("DATABASE_URL", &db.url)
        .env("UPDRAFT_DAGS_FOLDER", folder.path())
        .env("KAFKA_BOOTSTRAP_SERVERS", &servers)
        .env("SINK_POSTGRES_URL", &db.url)
        .env("UPDRAFT_LEASE_TTL", "2s")
        .env("UPDRAFT_POLL_INTERVAL", "200ms")
        .env("UPDRAFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // An outside producer publishes 3,000 records over about 6 s, in bursts of 50.
    let s = servers.clone();
    let producer = tokio::spawn(async move {
        let mut ids = BTreeSet::new();
        for _ in 0..60 {
            ids.extend(produce(&s, 50).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&db.pool).await < 300 {
        assert!(Instant::now() < deadline, "the child's stream never wrote");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigkill(&mut child);
    let at_kill = rows(&db.pool).await;
    let killed_at = Instant::now();

    let mut settings = fast_settings(folder.path());
    settings.operator_env = sink_env(&kafka, &db.url);
    let worker = Engine::start(&db.pool, settings, 0, 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&db.pool).await <= at_kill {
        assert!(Instant::now() < deadline, "no worker took the stream over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover = killed_at.elapsed();
    let ids = producer.await.unwrap();
    assert_eq!(ids.len(), 3000);
    wait_rows(&db.pool, 3000, Duration::from_secs(60)).await;
    assert_table_holds_exactly(&db.pool, &ids).await;
    eprintln!("stream failover after SIGKILL: {failover:?} (lease 2 s)");
    assert!(failover < Duration::from_secs(20), "{failover:?}");

    // The same run, its killed try reaped and retried by the other worker.
    let r: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT r.state, t.state, t.try_number FROM dag_runs r JOIN task_instances t ON t.run_pk = r.id
         WHERE r.dag_id = 'stream_kill'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].0.as_str(), r[0].1.as_str(), r[0].2),
        ("running", "running", 2)
    );

    // Shutdown stops the stream at once and hands it back, try not counted.
    let stopping = Instant::now();
    worker.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "the stream held the shutdown for {:?} (grace 5 s)",
        stopping.elapsed()
    );
    let state: (String, i32) =
        sqlx::query_as("SELECT state, try_number FROM task_instances WHERE dag_id = 'stream_kill'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(state, ("queued".into(), 1), "handed back untried");
    scheduler.stop().await;
}

/// Dead letters are logged and counted by default; beyond `max_dead_letters` the task fails,
/// permanently, after the batch (dead letters included) is written and committed.
#[tokio::test]
async fn dead_letters_beyond_the_tolerance_fail_the_task() {
    use std::sync::Arc;
    use updraft::operators::contract::{record_schema, Contract};
    use updraft::operators::{self, fetch::Fields, Reason, TaskContext};

    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    produce(&servers, 5).await;
    for _ in 0..3 {
        send(&servers, json!({"id": uuid::Uuid::new_v4().to_string()})).await;
    }
    let fields = Fields(vec![
        ("id".into(), "$uuid".into()),
        ("first_name".into(), "name.first".into()),
    ]);
    let contract = Contract::compile(&record_schema("records.fetch", &fields).unwrap()).unwrap();
    let (mut ctx, _log) = TaskContext::for_test(sink_env(&kafka, &db.url));
    ctx.contract = Some(Arc::new(contract));

    let out = operators::run(OperatorName::Sink, json!({"group_id": "tolerant"}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["rows"], 5);
    assert_eq!(out.xcom[0].1["dead_letters"], 3);

    let with = json!({"group_id": "strict", "max_dead_letters": 2});
    let err = operators::run(OperatorName::Sink, with, &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::Schema);
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("3 dead letters, more than max_dead_letters (2)"),
        "{err}"
    );
    assert_eq!(
        committed(&servers, "strict"),
        8,
        "written and committed first"
    );
    assert_eq!(rows(&db.pool).await, 5);
}

/// A short run of the stream bench's path, so the bench itself cannot rot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bench_path_measures_every_record() {
    let db = fresh_db().await;
    let f = updraft::bench::stream::measure(&db.url, 1_000, 2)
        .await
        .unwrap();
    eprintln!("{f:?}");
    assert_eq!(f.records, 2_000);
    assert!(
        f.p50_ms > 0.0 && f.p50_ms <= f.p99_ms && f.p99_ms <= f.max_ms,
        "{f:?}"
    );
    assert!(f.peak_rss_mb > 0.0);
}

/// Publish checks records against the contract too: breaking ones go to `<topic>.dlq` with
/// the reason in a header; beyond `max_dead_letters` nothing is published.
#[tokio::test]
async fn publish_sends_records_that_break_the_contract_to_the_dead_letter_topic() {
    use std::sync::Arc;
    use updraft::operators::contract::{record_schema, Contract};
    use updraft::operators::kafka::read_topic;
    use updraft::operators::{self, fetch::Fields, Reason, TaskContext};

    let kafka = EmbeddedKafka::start(1).unwrap();
    let servers = kafka.bootstrap_servers();
    let fields = Fields(vec![
        ("id".into(), "$uuid".into()),
        ("first_name".into(), "name.first".into()),
    ]);
    let contract = Contract::compile(&record_schema("records.fetch", &fields).unwrap()).unwrap();
    let (mut ctx, _log) = TaskContext::for_test(updraft::operators::OperatorEnv {
        kafka_bootstrap_servers: Some(servers.clone()),
        ..Default::default()
    });
    ctx.contract = Some(Arc::new(contract));
    let good = |n: &str| json!({"id": uuid::Uuid::new_v4().to_string(), "first_name": n});
    let records = json!([good("a"), {"id": "x", "first_name": "b"}, good("c"), {"id": uuid::Uuid::new_v4().to_string()}]);

    let with = json!({"records": records, "topic": TOPIC, "max_dead_letters": 1});
    let err = operators::run(OperatorName::Publish, with, &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::Schema);
    let t = Duration::from_secs(10);
    assert!(
        read_topic(&servers, TOPIC, t).unwrap().is_empty(),
        "nothing published"
    );

    let with = json!({"records": records, "topic": TOPIC});
    let out = operators::run(OperatorName::Publish, with, &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["published"], 2);
    assert_eq!(out.xcom[0].1["dead_letters"], 2);
    assert_eq!(read_topic(&servers, TOPIC, t).unwrap().len(), 2);
    let dead = read_topic(&servers, "users_created.dlq", t).unwrap();
    assert_eq!(dead.len(), 2);
    let payloads: Vec<serde_json::Value> = dead
        .iter()
        .map(|(_, _, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert!(payloads.iter().any(|p| p["id"] == "x"));
}
