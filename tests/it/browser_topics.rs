//! In a real browser (headless Chromium): the topic monitor over the embedded broker. Records
//! published to a DAG's topic show on /streams as partition offsets and consumer lag; the
//! topic page draws the messages/s chart and the latest messages pretty-printed; the replay
//! button, after its confirmation page, moves the sink's committed offsets back.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;
use updraft::operators::kafka::EmbeddedKafka;
use updraft::operators::{self, OperatorName, TaskContext};

use crate::browser::{browser, click, shot, start_driver, text, type_into, wait_text, PATIENCE};
use crate::helpers::{dag, install};
use crate::pipeline::sink_env;
use crate::streams::{committed, produce, TOPIC};
use crate::topics::sink_of;
use crate::web_support::{TestApp, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_offsets_lag_rate_and_messages_and_replays_a_sink_group() {
    let driver = start_driver().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let env = std::sync::Arc::new(operators::OperatorEnv {
        kafka_bootstrap_servers: Some(servers.clone()),
        ..Default::default()
    });
    let app = TestApp::spawn_with(move |w| w.operator_env = env).await;
    install(
        app.pool(),
        &[dag("stream_users", vec![sink_of(TOPIC, None)])],
    )
    .await;
    produce(&servers, 100).await;
    // The sink reads all 100 and commits; 20 more arrive after it: a lag of 20.
    let (mut ctx, _log) = TaskContext::for_test(sink_env(&kafka, &app.db.url));
    ctx.dag_id = "stream_users".into();
    ctx.task_id = "sink".into();
    let out = operators::run(OperatorName::Sink, json!({"topic": TOPIC}), &ctx)
        .await
        .unwrap();
    assert_eq!(out.xcom[0].1["consumed"], 100);
    produce(&servers, 20).await;
    let group = "updraft.stream_users.sink";
    assert_eq!(committed(&servers, group), 100);

    let c = browser(&driver).await;
    c.goto(&app.url("/login")).await.unwrap();
    type_into(&c, "#username", "alice").await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "#login-form button").await;
    wait_text(&c, "h1", |t| t == "DAGs").await;

    click(&c, "header nav a[href='/streams']").await;
    wait_text(&c, "h1", |t| t == "Streams").await;
    assert_eq!(text(&c, ".end-total").await, "120");
    assert_eq!(text(&c, ".group-lag").await, "20");
    let rows = c
        .find_all(Locator::Css(".partition-row"))
        .await
        .unwrap()
        .len();
    assert_eq!(rows, 3, "one row per partition");
    assert!(text(&c, ".topic-tasks").await.contains("stream_users.sink"));
    shot(&c, "topics-01-streams").await;

    // The topic page: the chart fills in as the web server samples (every 5 s).
    click(&c, "a.topic-link").await;
    wait_text(&c, "#topic-name", |t| t == TOPIC).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let chart = c.find(Locator::Css("svg#rate-chart")).await.unwrap();
        let points = chart.attr("data-points").await.unwrap().unwrap_or_default();
        if points.parse::<usize>().unwrap_or(0) >= 1 {
            assert!(c
                .find(Locator::Css("svg#rate-chart path.line"))
                .await
                .is_ok());
            break;
        }
        assert!(Instant::now() < deadline, "the chart has no rate yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.unwrap();
    }
    // Records published now show as a rate at the next sample.
    produce(&servers, 50).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let latest = text(&c, "#rate-latest").await;
        if latest.ends_with("msg/s") && latest != "0 msg/s" {
            break;
        }
        assert!(Instant::now() < deadline, "no rate above 0 yet: {latest}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.unwrap();
    }
    let value = text(&c, ".message-value").await;
    assert!(
        value.starts_with("{\n  \"id\": ") && value.contains("\"first_name\": \"outside"),
        "pretty-printed JSON: {value:?}"
    );
    shot(&c, "topics-02-topic").await;

    // Replay the sink's group from the beginning: form, confirmation, result.
    click(
        &c,
        ".replay-form[data-group='updraft.stream_users.sink'] .replay-submit",
    )
    .await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#replay-moves"))
        .await
        .unwrap();
    let moves = text(&c, "#replay-moves").await;
    assert!(text(&c, "#replay-warning")
        .await
        .contains("no active member"));
    let previous: i64 = {
        let mut sum = 0;
        for e in c
            .find_all(Locator::Css(".replay-move .previous"))
            .await
            .unwrap()
        {
            sum += e.text().await.unwrap().parse::<i64>().unwrap();
        }
        sum
    };
    assert_eq!(
        previous, 100,
        "the confirmation lists the committed offsets: {moves}"
    );
    assert_eq!(
        committed(&servers, group),
        100,
        "nothing moves before confirming"
    );
    shot(&c, "topics-03-confirm").await;
    click(&c, "#confirm-submit").await;
    wait_text(&c, "#replay-title", |t| t.starts_with("Replayed group")).await;
    shot(&c, "topics-04-replayed").await;
    assert_eq!(
        committed(&servers, group),
        0,
        "the group is back at the beginning"
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_log WHERE event = 'replay' AND dag_id = 'stream_users' AND task_id = 'sink'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(events, 1, "the replay is in the audit log");
    c.close().await.unwrap();
}
