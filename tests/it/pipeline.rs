//! The `user_automation` pipeline against real components: an HTTP stub serving the
//! randomuser.me fixture, librdkafka's mock cluster (fresh per test), a real Postgres (a fresh
//! database per test). Real Kafka and Cassandra are used only when their env vars are set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::Row as _;
use updraft::dag::OperatorName;
use updraft::operators::fetch::stub::RandomUserStub;
use updraft::operators::kafka::EmbeddedKafka;
use updraft::operators::{self, OperatorEnv, Outcome, TaskContext};
use yaml_rust2::{Yaml, YamlLoader};

use crate::helpers::fresh_db;

pub fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/randomuser_sample.json")).unwrap()
}

/// A YAML value as JSON, with `{$x: task}` markers replaced by that task's `return_value`
/// (what the engine does before calling `operators::run`).
fn resolve(y: &Yaml, xcom: &BTreeMap<String, Value>) -> Value {
    match y {
        Yaml::Hash(h) => {
            if h.len() == 1 {
                if let Some((Yaml::String(k), Yaml::String(task))) = h.iter().next() {
                    if k == "$x" || k == "$xcom" {
                        return xcom.get(task).cloned().unwrap_or(Value::Null);
                    }
                }
            }
            Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), resolve(v, xcom)))
                    .collect(),
            )
        }
        Yaml::Array(a) => Value::Array(a.iter().map(|v| resolve(v, xcom)).collect()),
        Yaml::String(s) => json!(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => json!(b),
        _ => Value::Null,
    }
}

/// Runs a DAG file's tasks in the order listed (they are listed upstream first), the way a
/// worker would run each one; returns each task's `return_value`.
pub async fn run_dag_file(path: &str, env: OperatorEnv) -> anyhow::Result<BTreeMap<String, Value>> {
    let text = std::fs::read_to_string(path)?;
    let doc = YamlLoader::load_from_str(&text)?.remove(0);
    let mut xcom = BTreeMap::new();
    for task in doc["tasks"].as_vec().unwrap() {
        let id = task["id"].as_str().unwrap().to_string();
        let op = OperatorName::from_uses(task["uses"].as_str().unwrap()).unwrap();
        let with = resolve(&task["with"], &xcom);
        let (mut ctx, _log) = TaskContext::for_test(env.clone());
        ctx.dag_id = doc["dag_id"].as_str().unwrap().into();
        ctx.task_id = id.clone();
        let out: Outcome = operators::run(op, with, &ctx)
            .await
            .map_err(|e| anyhow::anyhow!("task {id}: {e}"))?;
        let value = out
            .xcom
            .into_iter()
            .find(|(k, _)| k == "return_value")
            .map(|(_, v)| v)
            .unwrap_or(Value::Null);
        xcom.insert(id, value);
    }
    Ok(xcom)
}

/// The `with:` of one task of a DAG file, literal values only.
pub fn task_with(path: &str, task_id: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let task = doc["tasks"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|t| t["id"].as_str() == Some(task_id))
        .unwrap()
        .clone();
    resolve(&task["with"], &BTreeMap::new())
}

/// DESIGN.md §6's record for one API result, as the sink stores it (no `id`, no `dob`).
pub fn expected_row(u: &Value) -> Vec<Option<String>> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let l = &u["location"];
    vec![
        Some(text(&u["name"]["first"])),
        Some(text(&u["name"]["last"])),
        Some(text(&u["gender"])),
        Some(format!(
            "{} {}, {}, {}, {}",
            text(&l["street"]["number"]),
            text(&l["street"]["name"]),
            text(&l["city"]),
            text(&l["state"]),
            text(&l["country"])
        )),
        Some(text(&l["postcode"])),
        Some(text(&u["email"])),
        Some(text(&u["login"]["username"])),
        Some(text(&u["registered"]["date"])),
        Some(text(&u["phone"])),
        Some(text(&u["picture"]["medium"])),
    ]
}

pub const COLUMNS: &str =
    "first_name, last_name, gender, address, post_code, email, username, registered_date, phone, picture";

/// All sink rows, keyed by username, plus the total count.
async fn rows(pool: &sqlx::PgPool) -> (i64, BTreeMap<String, (uuid::Uuid, Vec<Option<String>>)>) {
    let sql = format!("SELECT id, {COLUMNS} FROM spark_streams.created_users");
    let all = sqlx::query(&sql).fetch_all(pool).await.unwrap();
    let mut out = BTreeMap::new();
    for r in &all {
        let values: Vec<Option<String>> = (1..=10).map(|i| r.get::<Option<String>, _>(i)).collect();
        out.insert(
            values[6].clone().unwrap(),
            (r.get::<uuid::Uuid, _>(0), values),
        );
    }
    (all.len() as i64, out)
}

pub fn env_for(stub: &RandomUserStub, kafka: &EmbeddedKafka, db_url: &str) -> OperatorEnv {
    OperatorEnv {
        datasource_url: Some(stub.url()),
        ..sink_env(kafka, db_url)
    }
}

#[tokio::test]
async fn user_automation_end_to_end_rows_equal_the_fixture_and_reruns_add_no_duplicates() {
    let db = fresh_db().await;
    let stub = RandomUserStub::start(&fixture()).await.unwrap();
    let kafka = EmbeddedKafka::start(3).unwrap();
    let env = env_for(&stub, &kafka, &db.url);

    let out = run_dag_file("dags/user_automation.yaml", env.clone())
        .await
        .unwrap();
    let records = out["fetch_users"].as_array().unwrap();
    assert_eq!(records.len(), 50);
    assert_eq!(out["publish_users"]["published"], 50);
    assert_eq!(out["sink_users"]["rows"], 50);

    let (count, by_user) = rows(&db.pool).await;
    assert_eq!(count, 50);
    for (i, u) in stub.users(50).iter().enumerate() {
        let name = u["login"]["username"].as_str().unwrap();
        let (id, values) = by_user
            .get(name)
            .unwrap_or_else(|| panic!("user {i} ({name}) missing"));
        assert_eq!(values[..5], expected_row(u)[..5], "user {i}");
        assert_eq!(values[6..], expected_row(u)[6..], "user {i}");
        // The record published for it carries the same id.
        let rec = records.iter().find(|r| r["username"] == name).unwrap();
        assert_eq!(rec["id"], id.to_string());
    }
    // The fixture's own three users, field by field, including the number-or-string postcode.
    for u in fixture()["results"].as_array().unwrap() {
        let (_, values) = &by_user[u["login"]["username"].as_str().unwrap()];
        assert_eq!(values, &expected_row(u));
    }

    // Rerunning the sink (same group) finds nothing new; a fresh group replays every message
    // and the upserts leave the table as it was.
    let mut sink_with = task_with("dags/user_automation.yaml", "sink_users");
    let (ctx, _log) = TaskContext::for_test(env.clone());
    let again = operators::run(OperatorName::Sink, sink_with.clone(), &ctx)
        .await
        .unwrap();
    assert_eq!(again.xcom[0].1["consumed"], 0);
    sink_with["group_id"] = json!("a.fresh.group");
    let replay = operators::run(OperatorName::Sink, sink_with, &ctx)
        .await
        .unwrap();
    assert_eq!(replay.xcom[0].1["rows"], 50);
    assert_eq!(rows(&db.pool).await.1, by_user);

    // A second DAG run adds its own 50 new users and nothing else.
    run_dag_file("dags/user_automation.yaml", env)
        .await
        .unwrap();
    let (count, _) = rows(&db.pool).await;
    assert_eq!(count, 100);
}

/// Publishes `n` records with fresh ids; returns the ids.
pub(crate) async fn publish(kafka: &EmbeddedKafka, topic: &str, n: usize) -> BTreeSet<String> {
    let records: Vec<Value> = (0..n)
        .map(|i| json!({"id": uuid::Uuid::new_v4().to_string(), "first_name": format!("u{i}"), "username": format!("user{i}")}))
        .collect();
    let ids = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        ..Default::default()
    };
    let (ctx, _log) = TaskContext::for_test(env);
    let with = json!({"records": records, "topic": topic, "key_field": "id"});
    operators::run(OperatorName::Publish, with, &ctx)
        .await
        .unwrap();
    ids
}

async fn ids_in_table(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM spark_streams.created_users")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.to_string())
        .collect()
}

/// The table holds each of `ids` once, and nothing else.
pub(crate) async fn assert_table_holds_exactly(pool: &sqlx::PgPool, ids: &BTreeSet<String>) {
    let stored = ids_in_table(pool).await;
    assert_eq!(stored.len(), ids.len(), "rows vs distinct ids published");
    assert_eq!(&stored.into_iter().collect::<BTreeSet<_>>(), ids);
}

pub(crate) fn sink_env(kafka: &EmbeddedKafka, db_url: &str) -> OperatorEnv {
    OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        sink_postgres_url: Some(db_url.to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn sink_aborted_mid_batch_then_rerun_has_every_record_exactly_once() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let ids = publish(&kafka, "users_created", 20_000).await;
    let env = sink_env(&kafka, &db.url);
    let with = json!({"batch_size": 250, "properties": {"session.timeout.ms": "2000"}});

    let (ctx, _log) = TaskContext::for_test(env.clone());
    let w = with.clone();
    let handle = tokio::spawn(async move { operators::run(OperatorName::Sink, w, &ctx).await });
    // Kill it once some, but not all, batches are in.
    let mut seen = 0;
    for _ in 0..2000 {
        seen = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM spark_streams.created_users")
            .fetch_one(&db.pool)
            .await
            .unwrap_or(0);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.abort();
    let _ = handle.await;
    assert!(
        seen > 0 && seen < 20_000,
        "the abort should land mid-run, saw {seen} rows"
    );

    let (ctx, _log) = TaskContext::for_test(env);
    let out = operators::run(OperatorName::Sink, with, &ctx)
        .await
        .unwrap();
    assert!(out.xcom[0].1["consumed"].as_u64().unwrap() > 0);
    assert_table_holds_exactly(&db.pool, &ids).await;
}

#[tokio::test]
async fn rows_written_but_offsets_not_committed_are_replayed_without_duplicates() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(2).unwrap();
    let ids = publish(&kafka, "users_created", 1_000).await;
    let env = sink_env(&kafka, &db.url);
    // Every offset commit fails: the try writes rows, then cannot commit, and fails.
    kafka.push_request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE; 500],
    );
    let (ctx, _log) = TaskContext::for_test(env.clone());
    let err = operators::run(
        OperatorName::Sink,
        json!({"batch_size": 100, "properties": {"session.timeout.ms": "2000"}}),
        &ctx,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("offsets could not be committed"), "{err}");
    assert_eq!(ids_in_table(&db.pool).await.len(), 1_000);

    kafka.clear_request_errors(RDKafkaApiKey::OffsetCommit);
    let out = operators::run(
        OperatorName::Sink,
        json!({"batch_size": 100, "properties": {"session.timeout.ms": "2000"}}),
        &ctx,
    )
    .await
    .unwrap();
    // Everything is replayed (nothing was committed) and upserted onto the same rows.
    assert_eq!(out.xcom[0].1["consumed"], 1_000);
    assert_table_holds_exactly(&db.pool, &ids).await;
}

#[tokio::test]
async fn malformed_messages_go_to_the_dead_letter_table_and_are_counted() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(1).unwrap();
    let ids = publish(&kafka, "users_created", 10).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    for bad in [
        "<html>nope</html>",
        r#"{"first_name": "no id"}"#,
        r#"{"id": "not-a-uuid"}"#,
        "[1,2]",
    ] {
        producer
            .send(
                FutureRecord::<(), str>::to("users_created").payload(bad),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let (ctx, _log) = TaskContext::for_test(sink_env(&kafka, &db.url));
    let out = operators::run(OperatorName::Sink, json!({}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["rows"], 10);
    assert_eq!(out.xcom[0].1["dead_letters"], 4);
    assert_eq!(
        ids_in_table(&db.pool)
            .await
            .into_iter()
            .collect::<BTreeSet<_>>(),
        ids
    );
    let dead: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT error, payload FROM spark_streams.created_users_dead_letter ORDER BY \"offset\"",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let errors: Vec<&str> = dead.iter().map(|(e, _)| e.as_str()).collect();
    assert!(errors[0].contains("not JSON"), "{errors:?}");
    assert!(errors[1].contains("missing `id`"), "{errors:?}");
    assert!(errors[2].contains("not a UUID"), "{errors:?}");
    assert!(errors[3].contains("not a JSON object"), "{errors:?}");
    assert_eq!(dead[0].1, b"<html>nope</html>");
    // A replay with a fresh group keeps one dead letter per message, not two.
    let out = operators::run(OperatorName::Sink, json!({"group_id": "replay"}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["dead_letters"], 4);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM spark_streams.created_users_dead_letter")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn two_sink_tasks_in_one_group_share_the_partitions() {
    let db = fresh_db().await;
    let kafka = Arc::new(EmbeddedKafka::start(4).unwrap());
    let ids = publish(&kafka, "users_created", 4_000).await;
    let env = sink_env(&kafka, &db.url);
    let with = json!({"group_id": "shared", "batch_size": 200, "properties": {"session.timeout.ms": "2000"}});
    let (a, _la) = TaskContext::for_test(env.clone());
    let (b, _lb) = TaskContext::for_test(env);
    let (ra, rb) = tokio::join!(
        operators::run(OperatorName::Sink, with.clone(), &a),
        operators::run(OperatorName::Sink, with.clone(), &b)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let consumed =
        ra.xcom[0].1["consumed"].as_u64().unwrap() + rb.xcom[0].1["consumed"].as_u64().unwrap();
    assert!(consumed >= 4_000, "{consumed}");
    assert_table_holds_exactly(&db.pool, &ids).await;
}

/// Another member of the group (a consumer that never commits, like a stuck sink of another
/// run) holding partitions, on its own thread until `release` is set.
struct Holder {
    release: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    /// Joins `group` and returns once it holds every partition of `topic`.
    fn start(kafka: &EmbeddedKafka, topic: &str, group: &str, partitions: usize) -> Holder {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "2000")
            .set("heartbeat.interval.ms", "500")
            .set("log_level", "3")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while consumer.assignment().unwrap().count() < partitions {
            assert!(
                std::time::Instant::now() < deadline,
                "the holder never got its partitions"
            );
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = release.clone();
        let thread = std::thread::spawn(move || {
            // Polling keeps the membership (and takes part in rebalances); nothing is committed.
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            drop(consumer);
        });
        Holder {
            release,
            thread: Some(thread),
        }
    }

    /// Leaves the group, handing its partitions to the others.
    fn release(&mut self) {
        self.release
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.release();
    }
}

/// A run's sink succeeds only when the whole topic, as of its start, is in the table: a
/// partition another member holds is waited for (and taken over when that member leaves), and
/// a member that makes no progress fails the try with the partitions' numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_waits_for_partitions_other_members_hold_and_fails_if_they_stall() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let ids = publish(&kafka, "users_created", 300).await;
    let env = sink_env(&kafka, &db.url);
    let kafka_ref = &kafka;
    let mut holder =
        tokio::task::block_in_place(|| Holder::start(kafka_ref, "users_created", "shared", 3));

    // The holder never commits: after its own partitions, the sink waits, then gives up.
    let with = json!({"group_id": "shared", "batch_size": 50, "stall_timeout": 5,
        "properties": {"session.timeout.ms": "2000"}});
    let (ctx, _log) = TaskContext::for_test(env.clone());
    let err = operators::run(OperatorName::Sink, with, &ctx)
        .await
        .expect_err("the group made no progress on the held partitions")
        .to_string();
    assert!(
        err.contains("are held by other members of consumer group `shared`")
            && err.contains("stall_timeout"),
        "{err}"
    );
    let written = ids_in_table(&db.pool).await.len();
    assert!(
        (1..300).contains(&written),
        "the sink wrote its own partitions only: {written}"
    );

    // A fresh group (so no partition is settled by the first sink's commits) with a holder
    // that leaves while the sink waits: the sink takes its partitions over.
    tokio::task::block_in_place(|| holder.release());
    let mut holder =
        tokio::task::block_in_place(|| Holder::start(kafka_ref, "users_created", "shared2", 3));
    let with = json!({"group_id": "shared2", "batch_size": 50,
        "properties": {"session.timeout.ms": "2000"}});
    let (ctx, mut log) = TaskContext::for_test(env);
    let sink = tokio::spawn(async move { operators::run(OperatorName::Sink, with, &ctx).await });
    let mut seen = Vec::new();
    let waiting = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = log.recv().await {
            if line.text.contains("waiting for other members of the group") {
                return Some(line.text);
            }
            seen.push(line.text);
        }
        None
    })
    .await
    .expect("the sink says it waits for the held partitions");
    let Some(waiting) = waiting else {
        panic!(
            "the sink ended without waiting for the group: {:?}\n{}",
            sink.await.unwrap().map(|o| o.xcom),
            seen.join("\n")
        );
    };
    assert!(waiting.contains("partitions "), "{waiting}");
    tokio::task::block_in_place(|| holder.release());
    let out = tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .expect("the sink stops once it has taken the partitions over")
        .unwrap()
        .unwrap();
    assert_eq!(
        out.xcom[0].1["stopped"],
        "caught up with the end offsets as of start"
    );
    assert_table_holds_exactly(&db.pool, &ids).await;
}

/// A partition's last record can arrive before the task has looked at its assignment; the
/// task must still count it as read, not wait for a record that never comes.
#[tokio::test]
async fn a_single_record_is_read_and_the_sink_stops_caught_up() {
    let db = fresh_db().await;
    let mut all = BTreeSet::new();
    for partitions in [1, 3] {
        let kafka = EmbeddedKafka::start(partitions).unwrap();
        all.extend(publish(&kafka, "users_created", 1).await);
        let (ctx, _log) = TaskContext::for_test(sink_env(&kafka, &db.url));
        let with = json!({"group_id": format!("single{partitions}"), "max_duration": 20});
        let out = operators::run(OperatorName::Sink, with, &ctx)
            .await
            .unwrap();
        assert_eq!(
            out.xcom[0].1["stopped"], "caught up with the end offsets as of start",
            "{partitions} partitions"
        );
        assert_eq!(out.xcom[0].1["consumed"], 1);
    }
    assert_table_holds_exactly(&db.pool, &all).await;
}

/// Each run's sink leaves the group and the next run's joins it. The embedded broker holds a
/// group its last member left in rebalance for the session timeout less a second, which with
/// the 6 s default made every run's sink wait 5 s; against it the default is 1.2 s.
#[tokio::test]
async fn consecutive_sinks_in_one_group_on_the_embedded_broker_do_not_wait_out_a_rebalance() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let env = sink_env(&kafka, &db.url);
    let mut all = BTreeSet::new();
    for run in 0..3 {
        all.extend(publish(&kafka, "users_created", 30).await);
        let (ctx, _log) = TaskContext::for_test(env.clone());
        let started = std::time::Instant::now();
        let out = operators::run(OperatorName::Sink, json!({"group_id": "runs"}), &ctx)
            .await
            .unwrap();
        assert_eq!(out.xcom[0].1["consumed"], 30, "run {run}");
        // 5 s is what waiting out the broker's rebalance costs; joining takes well under 1 s.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "run {run} took {:?}",
            started.elapsed()
        );
    }
    assert_table_holds_exactly(&db.pool, &all).await;
}

#[tokio::test]
async fn sink_stops_at_max_records_and_resumes_from_committed_offsets() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(1).unwrap();
    let ids = publish(&kafka, "users_created", 300).await;
    let (ctx, _log) = TaskContext::for_test(sink_env(&kafka, &db.url));
    let out = operators::run(
        OperatorName::Sink,
        json!({"max_records": 100, "batch_size": 50, "properties": {"session.timeout.ms": "2000"}}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.xcom[0].1["stopped"], "reached max_records");
    assert_eq!(ids_in_table(&db.pool).await.len(), 100);
    let out = operators::run(
        OperatorName::Sink,
        json!({"batch_size": 50, "properties": {"session.timeout.ms": "2000"}}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.xcom[0].1["consumed"], 200);
    assert_eq!(
        ids_in_table(&db.pool)
            .await
            .into_iter()
            .collect::<BTreeSet<_>>(),
        ids
    );
}

/// Runs against a real Kafka only when KAFKA_BOOTSTRAP_SERVERS is set.
#[tokio::test]
async fn real_kafka_publish_and_sink() {
    let Ok(servers) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") else {
        println!("SKIPPED real_kafka_publish_and_sink: KAFKA_BOOTSTRAP_SERVERS is not set (only the mock cluster was used)");
        return;
    };
    let db = fresh_db().await;
    let topic = format!("updraft_it_{}", uuid::Uuid::new_v4().simple());
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(servers),
        sink_postgres_url: Some(db.url.clone()),
        ..Default::default()
    };
    let records: Vec<Value> = (0..100)
        .map(|i| json!({"id": uuid::Uuid::new_v4().to_string(), "username": format!("u{i}")}))
        .collect();
    let (ctx, _log) = TaskContext::for_test(env);
    let out = operators::run(
        OperatorName::Publish,
        json!({"records": records, "topic": topic, "partitions": 2}),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.xcom[0].1["published"], 100);
    let out = operators::run(OperatorName::Sink, json!({"topic": topic}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["rows"], 100);
    assert_eq!(ids_in_table(&db.pool).await.len(), 100);
}

/// Runs against a real Cassandra only when CASSANDRA_CONTACT_POINTS is set.
#[tokio::test]
async fn real_cassandra_sink() {
    let Ok(points) = std::env::var("CASSANDRA_CONTACT_POINTS") else {
        println!("SKIPPED real_cassandra_sink: CASSANDRA_CONTACT_POINTS is not set (Cassandra statements are unit-tested only)");
        return;
    };
    let kafka = EmbeddedKafka::start(1).unwrap();
    let ids = publish(&kafka, "users_created", 200).await;
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        cassandra_contact_points: Some(points.clone()),
        ..Default::default()
    };
    let table = format!("it_{}", uuid::Uuid::new_v4().simple());
    let (ctx, _log) = TaskContext::for_test(env);
    let out = operators::run(OperatorName::Sink, json!({"table": table}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["rows"], 200);
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(updraft::operators::sink::split_hosts(&points, 9042))
        .build()
        .await
        .unwrap();
    let result = session
        .query_unpaged(format!("SELECT id FROM spark_streams.{table}"), ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let stored: BTreeSet<String> = result
        .rows::<(uuid::Uuid,)>()
        .unwrap()
        .map(|r| r.unwrap().0.to_string())
        .collect();
    assert_eq!(stored, ids);
}

#[tokio::test]
async fn passwords_in_connection_urls_never_reach_the_log() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(1).unwrap();
    publish(&kafka, "users_created", 20).await;
    // Local test Postgres trusts loopback, so any password connects; it must not be logged.
    let url = db.url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    assert!(url.contains("s3cret-pw"));
    let (ctx, mut log) = TaskContext::for_test(sink_env(&kafka, &url));
    let out = operators::run(OperatorName::Sink, json!({}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["rows"], 20);
    drop(ctx);
    let mut lines = 0;
    while let Some(l) = log.recv().await {
        lines += 1;
        assert!(!l.text.contains("s3cret-pw"), "password in log: {}", l.text);
    }
    assert!(lines >= 2);
}
