use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{json, Value};

use super::*;
use crate::operators::kafka::{read_topic, EmbeddedKafka};
use crate::operators::{ErrorKind, OperatorEnv, Reason, TaskContext};

fn records(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"id": uuid::Uuid::new_v4().to_string(), "n": i, "post_code": if i % 2 == 0 { json!(1234) } else { json!("AB1") }})).collect()
}

fn config(records: Vec<Value>, extra: Value) -> Config {
    let mut base = json!({"records": records, "connect_timeout": 2, "delivery_timeout": 3});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).unwrap()
}

fn env(kafka: &EmbeddedKafka) -> OperatorEnv {
    OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        ..Default::default()
    }
}

#[tokio::test]
async fn publishes_every_record_and_reads_back_the_same() {
    let kafka = EmbeddedKafka::start(3).unwrap();
    let (ctx, _log) = TaskContext::for_test(env(&kafka));
    let sent = records(500);
    let out = run(config(sent.clone(), json!({"key_field": "id"})), &ctx)
        .await
        .unwrap();
    assert_eq!(
        out.xcom[0].1,
        json!({"topic": "users_created", "published": 500, "dead_letters": 0})
    );
    let servers = kafka.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || {
        read_topic(&servers, "users_created", Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got.len(), 500);
    let mut got_values: Vec<Value> = got
        .iter()
        .map(|(_, key, payload)| {
            let v: Value = serde_json::from_slice(payload).unwrap();
            assert_eq!(key.as_deref(), Some(v["id"].as_str().unwrap().as_bytes()));
            v
        })
        .collect();
    got_values.sort_by_key(|v| v["n"].as_u64());
    assert_eq!(got_values, sent);
    assert!(
        got.iter()
            .map(|(p, _, _)| *p)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
    );
}

#[tokio::test]
async fn creates_a_missing_topic_on_the_embedded_broker_with_its_partitions() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let (ctx, mut log) = TaskContext::for_test(env(&kafka));
    // The mock cluster has no CreateTopics: asking it would wait out `connect_timeout`.
    let with =
        json!({"topic": "fresh_topic", "partitions": 2, "key_field": "id", "connect_timeout": 30});
    let started = Instant::now();
    run(config(records(40), with), &ctx).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(ctx);
    let mut lines = Vec::new();
    while let Some(l) = log.recv().await {
        lines.push(l.text);
    }
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("Created topic `fresh_topic` with 2 partitions on the embedded broker")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Published 40 records")),
        "{lines:?}"
    );
    let servers = kafka.bootstrap_servers();
    let got = tokio::task::spawn_blocking(move || {
        read_topic(&servers, "fresh_topic", Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    let partitions: std::collections::BTreeSet<i32> = got.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(got.len(), 40);
    assert_eq!(partitions, [0, 1].into());
}

#[tokio::test]
async fn unreachable_brokers_fail_after_a_bounded_wait() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let servers = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let started = Instant::now();
    let err = run(
        config(records(3), json!({"bootstrap_servers": servers})),
        &ctx,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("could not reach Kafka at 127.0.0.1") && err.contains("within 2s"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn broker_down_before_publish_fails_clearly() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    kafka.broker_down(1);
    let (ctx, _log) = TaskContext::for_test(env(&kafka));
    let started = Instant::now();
    let err = run(config(records(3), json!({})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not reach Kafka") || err.contains("not acknowledged"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn broker_lost_mid_publish_fails_the_try_then_a_retry_delivers() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let (ctx, _log) = TaskContext::for_test(env(&kafka));
    // Every produce request fails with a non-retriable error, as if the partition leader went
    // away for good while we publish.
    let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 200];
    kafka.push_request_errors(RDKafkaApiKey::Produce, &errors);
    let err = run(config(records(50), json!({"delivery_timeout": 2})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not acknowledged"), "{err}");
    kafka.clear_request_errors(RDKafkaApiKey::Produce);
    // The engine's retry: a new try publishes everything.
    let out = run(config(records(50), json!({})), &ctx).await.unwrap();
    assert_eq!(out.xcom[0].1["published"], 50);
}

#[tokio::test]
async fn broker_down_mid_publish_times_out_within_the_delivery_bound() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let (ctx, mut log) = TaskContext::for_test(env(&kafka));
    run(config(records(5), json!({})), &ctx).await.unwrap();
    while log.try_recv().is_ok() {}
    let kafka = std::sync::Arc::new(kafka);
    let k = kafka.clone();
    // Down once the try has reached the brokers and starts sending, not before.
    let down = tokio::spawn(async move {
        while let Some(line) = log.recv().await {
            if line.text.starts_with("Publishing 200000 records") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        k.broker_down(1);
    });
    let started = Instant::now();
    let result = run(
        config(records(200_000), json!({"delivery_timeout": 2})),
        &ctx,
    )
    .await;
    tokio::time::timeout(Duration::from_secs(30), down)
        .await
        .expect("the try logged that it started sending")
        .unwrap();
    // Either everything was acknowledged before the broker went down, or the try failed in
    // bounded time saying how many were not acknowledged; never a hang or a false success.
    match result {
        Ok(out) => assert_eq!(out.xcom[0].1["published"], 200_000),
        Err(e) => assert!(e.to_string().contains("not acknowledged"), "{e}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn validation() {
    let c = config(
        vec![],
        json!({"topic": "bad topic", "partitions": 0, "properties": {"acks": "1"}}),
    );
    let fields: Vec<String> = c.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        ["with.topic", "with.partitions", "with.properties.acks"]
    );
    assert!(valid_topic("users_created") && valid_topic("a.b-c") && !valid_topic(""));
    assert_eq!(run::key_of(&json!({"k": 5}), "k"), Some(b"5".to_vec()));
    assert_eq!(run::key_of(&json!({"k": null}), "k"), None);
}

#[tokio::test]
async fn missing_brokers_configuration_is_a_clear_error() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(config(records(1), json!({})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("KAFKA_BOOTSTRAP_SERVERS"), "{err}");
}

/// The producer's connection and producer id outlive a try that succeeded, not one that failed.
#[tokio::test]
async fn a_producer_serves_the_next_try_only_after_a_clean_publish() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let (ctx, mut log) = TaskContext::for_test(env(&kafka));
    let with = json!({"delivery_timeout": 2, "topic": "reuse"});
    let mut publish = async |expect_ok: bool| -> bool {
        let result = run(config(records(20), with.clone()), &ctx).await;
        assert_eq!(result.is_ok(), expect_ok, "{:?}", result.err());
        let mut reused = false;
        while let Ok(line) = log.try_recv() {
            reused |= line.text.contains("with this process's connected producer");
        }
        reused
    };
    assert!(!publish(true).await, "the first try creates a producer");
    assert!(publish(true).await, "the next try reuses it");
    let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 200];
    kafka.push_request_errors(RDKafkaApiKey::Produce, &errors);
    assert!(
        publish(false).await,
        "a failing try used the cached producer"
    );
    kafka.clear_request_errors(RDKafkaApiKey::Produce);
    assert!(
        !publish(true).await,
        "after a failed try the producer is not reused"
    );
}

/// A client configuration no other test uses, so the producer cache is this test's own.
fn own_config(kafka: &EmbeddedKafka) -> rdkafka::ClientConfig {
    let mut cc = rdkafka::ClientConfig::new();
    cc.set("bootstrap.servers", kafka.bootstrap_servers())
        .set("client.id", uuid::Uuid::new_v4().to_string())
        .set("log_level", "3");
    cc
}

/// Overlapping tries never share a producer, and one a try did not keep is closed.
#[tokio::test]
async fn overlapping_tries_check_out_their_own_producers() {
    use crate::operators::kafka::producers::take;
    use rdkafka::producer::Producer;
    let kafka = EmbeddedKafka::start(1).unwrap();
    let cc = own_config(&kafka);
    let ptr = |p: &crate::operators::kafka::producers::Pooled| {
        p.producer().client().native_ptr() as usize
    };
    let a = take(&cc).unwrap();
    let b = take(&cc).unwrap();
    assert!(!a.reused && !b.reused);
    assert_ne!(ptr(&a), ptr(&b));
    let kept = ptr(&a);
    a.keep();
    let c = take(&cc).unwrap();
    assert!(c.reused);
    assert_eq!(ptr(&c), kept);
    drop(c); // a try that failed
    let d = take(&cc).unwrap();
    assert!(!d.reused, "a producer no try kept is not reused");
    drop((b, d));
}

/// An embedded cluster that stops takes its kept producers with it (they would otherwise keep
/// reconnecting to its vanished ports, and log each failure).
#[tokio::test]
async fn a_stopped_embedded_cluster_closes_its_kept_producers() {
    use crate::operators::kafka::producers::take;
    let kafka = EmbeddedKafka::start(1).unwrap();
    let cc = own_config(&kafka);
    take(&cc).unwrap().keep();
    assert!(take(&cc).unwrap().reused, "kept while the cluster runs");
    take(&cc).unwrap().keep();
    drop(kafka);
    assert!(
        !take(&cc).unwrap().reused,
        "closed when the cluster stopped"
    );
}

#[tokio::test]
async fn errors_say_whether_another_try_can_help() {
    // Brokers that do not answer may come back: transient, with where to look.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let servers = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(
        config(
            records(1),
            json!({"bootstrap_servers": servers, "connect_timeout": 1}),
        ),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("KAFKA_BOOTSTRAP_SERVERS"), "{err}");

    // No brokers configured, a property librdkafka rejects: permanent.
    let err = run(config(records(1), json!({})), &ctx).await.unwrap_err();
    assert_eq!(err.reason(), Reason::MissingConnection);
    let kafka = EmbeddedKafka::start(1).unwrap();
    let (ctx, _log) = TaskContext::for_test(env(&kafka));
    let err = run(
        config(
            records(1),
            json!({"properties": {"compression.type": "bogus"}}),
        ),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), Reason::BadConfig, "{err}");
    assert!(err.to_string().contains("compression.type"), "{err}");

    // A message larger than the producer may send is refused the same way every time.
    let big = vec![json!({"id": "x", "blob": "y".repeat(5_000)})];
    let err = run(
        config(big, json!({"properties": {"message.max.bytes": "2000"}})),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::Rejected),
        "{err}"
    );
}
