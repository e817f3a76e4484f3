//! Record contracts over time: `dags validate` warns about an incompatible record change while
//! a topic holds records of the old shape, and dead letters are replayed after a fix with one
//! command. Against librdkafka's mock cluster and a real Postgres sink, with the `updraft`
//! binary as users run it.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::ClientConfig;
use serde_json::json;
use updraft::dag::load::parse_source;
use updraft::dag::{Arg, Dag, OperatorName, Task, TaskId};
use updraft::operators::kafka::EmbeddedKafka;

use crate::helpers::*;
use crate::streams::{produce, rows, send, TOPIC};

fn updraft(db_url: &str, servers: &str, dags: &Path, args: &[&str]) -> Output {
    updraft_bin()
        .args(args)
        .env("UPDRAFT_DAGS_FOLDER", dags)
        .env("DATABASE_URL", db_url)
        .env("SINK_POSTGRES_URL", db_url)
        .env("KAFKA_BOOTSTRAP_SERVERS", servers)
        .output()
        .expect("run updraft")
}

fn user_automation_source() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/user_automation.yaml"))
        .unwrap()
}

fn parse(source: &str) -> Dag {
    let parsed = parse_source("user_automation.yaml", source, &|p| {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            p.to_string(),
        ))
    });
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.dags.into_iter().next().unwrap()
}

/// Deployed: `user_automation` with a `nickname` field and an optional `post_code`. The file
/// drops the one and requires the other: records of the old shape in `users_created` make
/// validate warn, naming both changes, the topic, the sink group's lag and what to do.
#[tokio::test]
async fn validate_warns_when_the_record_changes_incompatibly_while_the_topic_holds_old_records() {
    let db = fresh_db().await;
    let new_source = user_automation_source();
    let old_source = new_source
        .replace(
            "post_code: location.postcode",
            "post_code: location.postcode?",
        )
        .replace(
            "email: email",
            "email: email\n        nickname: login.username",
        );
    assert_ne!(old_source, new_source);
    install(&db.pool, &[parse(&old_source)]).await;
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("user_automation.yaml"), &new_source).unwrap();

    // No records anywhere yet: nothing of the old shape can break, so no warning.
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let out = updraft(&db.url, &servers, folder.path(), &["dags", "validate"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        !output_text(&out).contains("changes incompatibly"),
        "{}",
        output_text(&out)
    );

    produce(&servers, 3).await;
    let out = updraft(&db.url, &servers, folder.path(), &["dags", "validate"]);
    let said = output_text(&out);
    assert!(out.status.success(), "a warning is no error: {said}");
    for expected in [
        "warning: user_automation.yaml: the record of `user_automation.fetch_users` changes incompatibly",
        "field `nickname` was removed",
        "field `post_code` changed from any value to any value but null",
        "topic `users_created` still holds 3 record(s) of the old shape",
        "group `updraft.user_automation.sink_users` has 3 left to read",
        "what to do:",
        "updraft streams replay-dead-letters",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in:\n{said}");
    }

    // The file as deployed: nothing to say.
    std::fs::write(folder.path().join("user_automation.yaml"), &old_source).unwrap();
    let out = updraft(&db.url, &servers, folder.path(), &["dags", "validate"]);
    assert!(
        !output_text(&out).contains("changes incompatibly"),
        "{}",
        output_text(&out)
    );
}

/// A manual DAG whose fetch task declares the record (never run: only its schema is used).
fn records_dag(fields: serde_json::Value) -> Dag {
    let fetch = Task {
        args: Arg::Map(vec![("fields".into(), Arg::Value(fields))]),
        ..Task::new(TaskId::parse("fetch").unwrap(), OperatorName::Fetch)
    };
    dag("records", vec![fetch])
}

/// A manual DAG whose batch sink is held to the record of `records.fetch`.
fn sink_dag() -> Dag {
    let sink = Task {
        args: Arg::Map(vec![
            (
                "schema_from".into(),
                Arg::Value(json!({"dag_id": "records", "task_id": "fetch"})),
            ),
            ("group_id".into(), Arg::Value("dl-sink".into())),
            (
                "properties".into(),
                Arg::Value(json!({"session.timeout.ms": "2000"})),
            ),
        ]),
        ..Task::new(TaskId::parse("sink").unwrap(), OperatorName::Sink)
    };
    dag("contracted", vec![sink])
}

async fn dead_letters(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT error FROM spark_streams.created_users_dead_letter ORDER BY dl_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Records without `last_name` break the contract and become dead letters; after the DAG
/// stops declaring the field, one command writes them, leaving only the message that is not
/// JSON (with today's reason). Run again, it writes nothing twice.
#[tokio::test]
async fn replay_dead_letters_writes_what_passes_after_a_fix_in_one_command() {
    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let strict = json!({"id": "$uuid", "first_name": "name.first", "last_name": "name.last"});
    install(&db.pool, &[records_dag(strict), sink_dag()]).await;
    produce(&servers, 4).await; // id and first_name only
    send(
        &servers,
        json!({"id": uuid::Uuid::new_v4().to_string(), "first_name": "a", "last_name": "b"}),
    )
    .await;
    crate::streams::producer(&servers)
        .send(
            FutureRecord::<(), _>::to(TOPIC).payload("not json"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let folder = empty_folder();
    let run_id = trigger(&db.pool, "contracted", json!({})).await;
    let mut settings = fast_settings(folder.path());
    settings.operator_env = crate::pipeline::sink_env(&kafka, &db.url);
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let state = wait_run(&db.pool, "contracted", &run_id, Duration::from_secs(60)).await;
    engine.stop().await;
    assert_eq!(state, "success");
    assert_eq!(rows(&db.pool).await, 1);
    let reasons = dead_letters(&db.pool).await;
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    let missing = reasons
        .iter()
        .filter(|r| r.contains("`last_name` is missing"))
        .count();
    assert_eq!(missing, 4, "{reasons:?}");

    // The fix: the record no longer declares `last_name`.
    let relaxed = json!({"id": "$uuid", "first_name": "name.first"});
    install(&db.pool, &[records_dag(relaxed), sink_dag()]).await;
    let args = ["streams", "replay-dead-letters", "contracted", "sink"];
    let out = updraft(&db.url, &servers, folder.path(), &args);
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("5 dead letter(s) checked: 4 written, 1 still break the checks"),
        "{said}"
    );
    assert!(
        said.contains("table spark_streams.created_users_dead_letter"),
        "{said}"
    );
    assert_eq!(rows(&db.pool).await, 5);
    let left = dead_letters(&db.pool).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("not JSON"), "{left:?}");

    // Again, as beside a standalone: no brokers and no sink target configured (a Postgres
    // target needs no Kafka; the sink's default target is the metadata database).
    let out = updraft_bin()
        .args(args)
        .env("UPDRAFT_DAGS_FOLDER", folder.path())
        .env("DATABASE_URL", &db.url)
        .env_remove("SINK_POSTGRES_URL")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .output()
        .unwrap();
    assert!(
        output_text(&out).contains("1 dead letter(s) checked: 0 written, 1 still break the checks"),
        "{}",
        output_text(&out)
    );
    assert_eq!(rows(&db.pool).await, 5);

    // Not a sink: said plainly.
    let out = updraft(
        &db.url,
        &servers,
        folder.path(),
        &["streams", "replay-dead-letters", "records", "fetch"],
    );
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("is not a sink"),
        "{}",
        output_text(&out)
    );
}

/// A Cassandra sink's dead letters are messages on `<topic>.dlq`: replaying publishes them
/// back to the topic, once; the next replay takes only what arrived since.
#[tokio::test]
async fn dead_letter_topic_messages_are_published_back_once() {
    use updraft::operators::sink::dead_letters::republish;

    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let p = crate::streams::producer(&servers);
    let dlq = "users_created.dlq";
    for i in 0..7 {
        let payload = format!("{{\"n\": {i}}}");
        p.send(
            FutureRecord::to(dlq)
                .key(&format!("k{i}"))
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    let timeout = Duration::from_secs(10);
    let mut seen = Vec::new();
    let done = republish(&servers, dlq, TOPIC, "g.dead-letters", timeout, |t| {
        seen.push(t.written)
    })
    .await
    .unwrap();
    assert_eq!(done.written, 7);
    assert_eq!(seen.last(), Some(&7));
    assert_eq!(messages(&servers, TOPIC), 7);

    let again = republish(&servers, dlq, TOPIC, "g.dead-letters", timeout, |_| {})
        .await
        .unwrap();
    assert_eq!(again.written, 0, "nothing new on the dead-letter topic");
    p.send(FutureRecord::to(dlq).key("k7").payload("{}"), timeout)
        .await
        .unwrap();
    let more = republish(&servers, dlq, TOPIC, "g.dead-letters", timeout, |_| {})
        .await
        .unwrap();
    assert_eq!(more.written, 1);
    assert_eq!(messages(&servers, TOPIC), 8);
}

/// Messages in `topic`, summed over its partitions.
fn messages(servers: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .unwrap();
            high - low
        })
        .sum()
}
