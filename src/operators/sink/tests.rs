use scylla::value::CqlValue;
use serde_json::json;

use super::record::{commit_offsets, parse, split, Message, Row};
use super::*;
use crate::settings::OperatorEnv;

fn msg(partition: i32, offset: i64, payload: &str) -> Message {
    Message {
        partition,
        offset,
        key: None,
        payload: Some(payload.as_bytes().to_vec()),
    }
}

const A: &str = "6f1c8a52-3f55-4c38-9d2c-6a0f2a7b9e11";
const B: &str = "0b4f1e8e-8a8e-4d7e-9d55-1f6b8f0b1a22";

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_records_into_text_columns() {
    let c = cols(&["first_name", "post_code", "phone"]);
    let row = parse(
        &msg(
            0,
            0,
            &format!(r#"{{"id":"{A}","first_name":"Ann","post_code":58213,"dob":"x"}}"#),
        ),
        &c,
    )
    .unwrap();
    assert_eq!(row.id.to_string(), A);
    assert_eq!(
        row.values,
        vec![Some("Ann".into()), Some("58213".into()), None]
    );
    let row = parse(
        &msg(0, 1, &format!(r#"{{"id":"{A}","post_code":"HX7 2QN"}}"#)),
        &c,
    )
    .unwrap();
    assert_eq!(row.values[1].as_deref(), Some("HX7 2QN"));
}

#[test]
fn invalid_messages_say_why() {
    let c = cols(&["first_name"]);
    assert!(parse(&msg(0, 0, "<html>"), &c)
        .unwrap_err()
        .contains("not JSON"));
    assert!(parse(&msg(0, 0, "[1]"), &c)
        .unwrap_err()
        .contains("not a JSON object"));
    assert!(parse(&msg(0, 0, r#"{"first_name":"x"}"#), &c)
        .unwrap_err()
        .contains("missing `id`"));
    assert!(parse(&msg(0, 0, r#"{"id":"42"}"#), &c)
        .unwrap_err()
        .contains("not a UUID"));
    assert!(parse(&msg(0, 0, r#"{"id":42}"#), &c)
        .unwrap_err()
        .contains("not a UUID"));
    let none = Message {
        partition: 0,
        offset: 0,
        key: None,
        payload: None,
    };
    assert!(parse(&none, &c).unwrap_err().contains("no payload"));
}

#[test]
fn batches_dedupe_by_id_last_wins_and_keep_dead_letters() {
    let c = cols(&["first_name"]);
    let batch = vec![
        msg(0, 10, &format!(r#"{{"id":"{A}","first_name":"old"}}"#)),
        msg(1, 3, &format!(r#"{{"id":"{B}","first_name":"b"}}"#)),
        msg(0, 11, "garbage"),
        msg(0, 12, &format!(r#"{{"id":"{A}","first_name":"new"}}"#)),
    ];
    let (rows, dead) = split(&batch, &c, None);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].values[0].as_deref(), Some("new"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message.offset, 11);
    assert_eq!(commit_offsets(&batch), vec![(0, 13), (1, 4)]);
}

#[test]
fn postgres_statements() {
    let s = postgres::Statements::new(
        "spark_streams",
        "created_users",
        &cols(&["first_name", "email"]),
    );
    assert_eq!(
        s.create[0],
        r#"CREATE SCHEMA IF NOT EXISTS "spark_streams""#
    );
    assert_eq!(
        s.create[1],
        r#"CREATE TABLE IF NOT EXISTS "spark_streams"."created_users" ("id" uuid PRIMARY KEY, "first_name" text, "email" text)"#
    );
    assert_eq!(
        s.upsert,
        r#"INSERT INTO "spark_streams"."created_users" ("id", "first_name", "email") SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[]) ON CONFLICT ("id") DO UPDATE SET "first_name" = EXCLUDED."first_name", "email" = EXCLUDED."email""#
    );
    assert!(s.create[2].contains(r#""spark_streams"."created_users_dead_letter""#));
    assert!(s.dead_letter.contains("DO NOTHING"));
}

#[test]
fn cassandra_statements_follow_the_reference_stack() {
    let s = cassandra::Statements::new("spark_streams", "created_users", &default_columns());
    assert_eq!(
        s.create_keyspace,
        "CREATE KEYSPACE IF NOT EXISTS spark_streams WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'}"
    );
    assert_eq!(
        s.create_table,
        "CREATE TABLE IF NOT EXISTS spark_streams.created_users (id uuid PRIMARY KEY, first_name text, last_name text, \
         gender text, address text, post_code text, email text, username text, registered_date text, phone text, picture text)"
    );
    assert_eq!(
        s.insert,
        "INSERT INTO spark_streams.created_users (id, first_name, last_name, gender, address, post_code, email, username, \
         registered_date, phone, picture) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    assert!(!s.create_table.contains("dob"));
}

#[test]
fn cassandra_type_mapping() {
    let row = Row {
        id: uuid::Uuid::parse_str(A).unwrap(),
        values: vec![Some("Ann".into()), None],
    };
    let v = cassandra::cql_values(&row);
    assert_eq!(
        v,
        vec![
            Some(CqlValue::Uuid(row.id)),
            Some(CqlValue::Text("Ann".into())),
            None
        ]
    );
}

#[test]
fn target_resolution_rules() {
    let mut env = OperatorEnv {
        sink_postgres_url: Some("postgres://u:pw@db/x".into()),
        cassandra_contact_points: Some("c1, c2:9043".into()),
        ..Default::default()
    };
    assert_eq!(
        Target::resolve(None, &env).unwrap(),
        Target::Cassandra {
            contact_points: vec!["c1:9042".into(), "c2:9043".into()],
            user: None
        }
    );
    env.set_env_connection(
        "sink_default",
        "postgresql://u:p%40w@pg:5433/y?sslmode=require",
    );
    assert_eq!(
        Target::resolve(None, &env).unwrap(),
        Target::Postgres {
            url: "postgres://u:p%40w@pg:5433/y?sslmode=require".into()
        }
    );
    env.set_env_connection("cass", "cassandra://me:pw@k1,k2:9999/ks");
    assert_eq!(
        Target::resolve(Some("CASS"), &env).unwrap(),
        Target::Cassandra {
            contact_points: vec!["k1:9042".into(), "k2:9999".into()],
            user: Some(("me".into(), "pw".into()))
        }
    );
    assert!(Target::resolve(Some("missing"), &env)
        .unwrap_err()
        .to_string()
        .contains("AIRFLOW_CONN_MISSING"));
    let only_pg = OperatorEnv {
        sink_postgres_url: Some("postgres://db/x".into()),
        ..Default::default()
    };
    assert!(matches!(
        Target::resolve(None, &only_pg).unwrap(),
        Target::Postgres { .. }
    ));
    assert!(Target::resolve(None, &OperatorEnv::default()).is_err());
    assert!(Target::from_uri("mysql://x").is_err());
    assert_eq!(
        Target::Postgres {
            url: "postgres://u:pw@db/x".into()
        }
        .describe(),
        "Postgres at postgres://u:***@db/x"
    );
}

#[test]
fn validation_guards_identifiers() {
    let c: Config = serde_json::from_value(json!({
        "table": "Robert'); DROP TABLE x;--", "columns": ["ok", "id", "ok", "9bad"], "batch_size": 0
    }))
    .unwrap();
    let fields: Vec<String> = c.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "with.table",
            "with.columns.1",
            "with.columns.2",
            "with.columns.3",
            "with.batch_size"
        ]
    );
    assert!(
        valid_identifier("created_users") && !valid_identifier("Created") && !valid_identifier("")
    );
    let ok: Config = serde_json::from_value(json!({})).unwrap();
    assert!(ok.validate().is_empty());
    assert_eq!(ok.group_id("d", "t"), "updraft.d.t");
    assert_eq!(ok.dead_letter_topic(), "users_created.dlq");
    assert!(serde_json::from_value::<Config>(json!({"bogus": 1})).is_err());
}

#[tokio::test]
async fn a_missing_topic_is_nothing_to_sink_and_unreachable_brokers_fail() {
    use crate::operators::kafka::EmbeddedKafka;
    use crate::operators::TaskContext;
    let kafka = EmbeddedKafka::start(1).unwrap();
    // The target is never contacted: the topic check comes first.
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        sink_postgres_url: Some("postgres://nobody@127.0.0.1:1/none".into()),
        ..Default::default()
    };
    let (ctx, _log) = TaskContext::for_test(env);
    let cfg: Config = serde_json::from_value(json!({"topic": "never_published"})).unwrap();
    let out = run(cfg, &ctx).await.unwrap();
    assert_eq!(out.xcom[0].1["stopped"], "the topic does not exist");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    drop(listener);
    let cfg: Config =
        serde_json::from_value(json!({"bootstrap_servers": dead, "connect_timeout": 2})).unwrap();
    let started = std::time::Instant::now();
    let err = run(cfg, &ctx).await.unwrap_err().to_string();
    assert!(err.contains("could not reach Kafka"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn errors_say_whether_another_try_can_help() {
    use crate::operators::kafka::EmbeddedKafka;
    use crate::operators::{ErrorKind, Reason, TaskContext};
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.create_topic("users_created", 1).unwrap();
    let cfg = |v: serde_json::Value| -> Config { serde_json::from_value(v).unwrap() };

    // No target configured anywhere: permanent, and the message says what to set.
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        ..Default::default()
    };
    let (ctx, _log) = TaskContext::for_test(env.clone());
    let err = run(cfg(json!({})), &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::MissingConnection)
    );
    assert!(err.to_string().contains("SINK_POSTGRES_URL"), "{err}");
    let err = run(cfg(json!({"conn_id": "nope"})), &ctx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AIRFLOW_CONN_NOPE"), "{err}");

    // A Postgres target that refuses connections may come back: transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv {
        sink_postgres_url: Some(format!("postgres://nobody@127.0.0.1:{port}/none")),
        ..env
    });
    let err = run(cfg(json!({"connect_timeout": 2})), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");

    // Brokers that do not answer: transient; a consumer property librdkafka rejects: permanent.
    let err = run(
        cfg(json!({"bootstrap_servers": format!("127.0.0.1:{port}"), "connect_timeout": 1})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("KAFKA_BOOTSTRAP_SERVERS"), "{err}");
    let err = run(
        cfg(json!({"properties": {"auto.offset.reset": "sideways"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), Reason::BadConfig, "{err}");
}

#[test]
fn mode_defaults_to_batch_and_linger_is_bounded() {
    let c: Config = serde_json::from_value(json!({})).unwrap();
    assert_eq!(c.mode, Mode::Batch);
    assert_eq!(c.linger, crate::core::Duration::from_millis(100));
    let c: Config =
        serde_json::from_value(json!({"mode": "continuous", "linger": "50ms"})).unwrap();
    assert_eq!(c.mode, Mode::Continuous);
    assert!(c.validate().is_empty());
    assert!(serde_json::from_value::<Config>(json!({"mode": "forever"})).is_err());
    for bad in ["0s", "2m"] {
        let c: Config = serde_json::from_value(json!({"linger": bad})).unwrap();
        assert_eq!(c.validate()[0].0, "with.linger", "{bad}");
    }
}

/// A continuous sink asked to stop before its topic exists returns at once, marked
/// `interrupted` so the worker hands it back (or ends the paused run).
#[tokio::test]
async fn continuous_sink_waiting_for_its_topic_stops_when_asked() {
    let kafka = crate::operators::kafka::EmbeddedKafka::start(1).unwrap();
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        sink_postgres_url: Some("postgres://nobody@127.0.0.1:1/none".into()),
        ..Default::default()
    };
    let (ctx, _log) = crate::operators::TaskContext::for_test(env);
    let config: Config =
        serde_json::from_value(json!({"mode": "continuous", "topic": "not_there_yet"})).unwrap();
    ctx.stop.cancel();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), run(config, &ctx))
        .await
        .expect("stops when asked")
        .unwrap();
    assert!(out.interrupted);
    assert_eq!(out.xcom[0].1["consumed"], 0);
}

#[test]
fn records_breaking_the_contract_are_dead_letters_with_the_reason() {
    use crate::operators::contract::{record_schema, Contract};
    let fields = crate::operators::fetch::Fields(vec![
        ("id".into(), "$uuid".into()),
        ("email".into(), "email".into()),
    ]);
    let contract = Contract::compile(&record_schema("d.fetch", &fields).unwrap()).unwrap();
    let batch = vec![
        msg(0, 0, &format!(r#"{{"id": "{A}", "email": "a@b"}}"#)),
        msg(0, 1, &format!(r#"{{"id": "{B}"}}"#)),
        msg(0, 2, &format!(r#"{{"id": "{B}", "email": null}}"#)),
    ];
    let c = cols(&["email"]);
    let (rows, dead) = split(&batch, &c, Some(&contract));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].values, vec![Some("a@b".to_string())]);
    assert_eq!(dead.len(), 2);
    assert_eq!(
        dead[0].error,
        "breaks the record schema of d.fetch: `email` is missing"
    );
    assert!(
        dead[1].error.contains("`email` is null"),
        "{}",
        dead[1].error
    );
    // Without a contract, only the sink's own checks apply.
    assert_eq!(split(&batch, &c, None).0.len(), 2);
}
