//! The topic monitor against the embedded broker and a real Postgres: a partition's latest
//! messages paged back by offset (library, API and page), the messages/s sampler, the
//! pages' offsets, errors and links, and who sees the replay form.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use serde_json::json;
use updraft::dag::{Arg, OperatorName, Task, TaskId};
use updraft::operators::kafka::browse::{self, Format, PageRequest};
use updraft::operators::kafka::EmbeddedKafka;
use updraft::operators::OperatorEnv;
use updraft::web::streams::rates::{rates_of, RateHistory, Sampler};

use crate::helpers::*;
use crate::streams::{produce, producer, TOPIC};
use crate::web_support::{sel, texts, TestApp, PASSWORD};

/// A sink task reading `topic` (on `servers` when given, else the configured brokers).
pub(crate) fn sink_of(topic: &str, servers: Option<&str>) -> Task {
    let mut with = vec![("topic".to_string(), Arg::Value(topic.into()))];
    if let Some(s) = servers {
        with.push(("bootstrap_servers".into(), Arg::Value(s.into())));
    }
    Task {
        args: Arg::Map(with),
        ..Task::new(TaskId::parse("sink").unwrap(), OperatorName::Sink)
    }
}

fn env_of(servers: &str) -> Arc<OperatorEnv> {
    Arc::new(OperatorEnv {
        kafka_bootstrap_servers: Some(servers.to_string()),
        ..Default::default()
    })
}

/// Publishes `payload` to partition 0 of `topic`.
async fn send_raw(servers: &str, topic: &str, payload: &[u8]) {
    producer(servers)
        .send(
            FutureRecord::<(), [u8]>::to(topic)
                .payload(payload)
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_latest_messages_are_paged_back_by_offset() {
    let kafka = EmbeddedKafka::start(1).unwrap();
    let servers = kafka.bootstrap_servers();
    let topic = "browsed";
    for n in 0..25 {
        send_raw(&servers, topic, json!({"n": n}).to_string().as_bytes()).await;
    }
    send_raw(&servers, topic, b"plain <b>text</b>").await;
    send_raw(&servers, topic, &[0xff, 0x00, b'A']).await;

    let req = |before: Option<i64>, limit: usize| PageRequest {
        servers: servers.clone(),
        topic: topic.into(),
        partition: 0,
        before,
        limit,
        timeout: Duration::from_secs(10),
    };
    let latest = browse::page(req(None, 20)).await.unwrap();
    assert_eq!((latest.low, latest.end), (0, 27));
    assert_eq!((latest.first, latest.before), (7, 27));
    let offsets: Vec<i64> = latest.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (7..27).rev().collect::<Vec<_>>(), "newest first");
    let value = |i: usize| latest.messages[i].value.clone().unwrap();
    assert_eq!(value(0).format, Format::Binary);
    assert_eq!(value(0).text, "\u{fffd}\u{0}A");
    assert_eq!(
        (value(1).format, value(1).text.as_str()),
        (Format::Text, "plain <b>text</b>")
    );
    assert_eq!(
        (value(2).format, value(2).text.as_str()),
        (Format::Json, "{\n  \"n\": 24\n}")
    );
    assert_eq!(latest.older(), Some(7));
    assert!(!latest.has_newer());
    let oldest = browse::page(req(Some(7), 20)).await.unwrap();
    assert_eq!(oldest.messages.len(), 7);
    assert_eq!(oldest.messages.last().unwrap().offset, 0);
    assert_eq!(oldest.older(), None);
    assert!(oldest.has_newer());
    let err = browse::page(PageRequest {
        partition: 99,
        ..req(None, 5)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, browse::BrowseError::NoPartition { .. }),
        "{err}"
    );

    // The API and the page, for a topic a DAG uses.
    let env = env_of(&servers);
    let app = TestApp::spawn_with(move |w| w.operator_env = env).await;
    install(app.pool(), &[dag("browser", vec![sink_of(topic, None)])]).await;
    let token = app.token().await;
    let get = |path: String| {
        let req = app.client.get(app.url(&path)).bearer_auth(&token);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    let base = format!("/api/v2/streams/topics/{topic}/partitions/0/messages");
    let (status, body) = get(format!("{base}?limit=5")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_entries"], 5);
    assert_eq!(body["end_offset"], 27);
    assert_eq!(body["older_before"], 22);
    let m = &body["messages"];
    assert_eq!(m[0]["offset"], 26);
    assert_eq!(m[0]["format"], "binary");
    assert_eq!(m[1]["value"], "plain <b>text</b>");
    assert_eq!(m[2]["value"], json!({"n": 24}), "JSON values come as JSON");
    assert_eq!(m[2]["format"], "json");
    let (_, older) = get(format!("{base}?limit=5&before=22")).await;
    assert_eq!(older["messages"][0]["offset"], 21);
    assert_eq!(older["messages"][0]["value"], json!({"n": 21}));
    for (query, status) in [
        ("?limit=0", 422),
        ("?limit=101", 422),
        ("?before=-1", 422),
        ("?before=x", 422),
        ("?offset=3", 400),
    ] {
        let (got, body) = get(format!("{base}{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
    }
    let (got, body) = get(format!(
        "/api/v2/streams/topics/{topic}/partitions/x/messages"
    ))
    .await;
    assert_eq!(got, 422, "{body}");
    let (got, body) = get(format!(
        "/api/v2/streams/topics/{topic}/partitions/99/messages"
    ))
    .await;
    assert_eq!(got, 404, "{body}");
    let (got, body) = get("/api/v2/streams/topics/nobody_uses/partitions/0/messages".into()).await;
    assert_eq!(got, 404, "{body}");

    let s = app.login().await;
    let html = app
        .client
        .get(app.url(&format!("/streams/topics/{topic}?partition=0")))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("plain <b>text"), "never raw HTML");
    let doc = scraper::Html::parse_document(&html);
    let values = texts(&doc, ".message-value");
    assert_eq!(values.len(), 20);
    assert_eq!(values[1], "plain <b>text</b>", "escaped, so shown as text");
    assert!(doc.select(&sel(".message-value b")).next().is_none());
    assert!(values[2].contains("\"n\": 24"), "{:?}", values[2]);
    assert!(doc.select(&sel("#messages-older")).next().is_some());
    let (status, older) = app
        .page(&s, &format!("/streams/topics/{topic}?partition=0&before=7"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(texts(&older, ".message-value").len(), 7);
    assert!(older.select(&sel("#messages-newer")).next().is_some());
    assert!(older.select(&sel("#messages-older")).next().is_none());
    let (status, _) = app.page(&s, "/streams/topics/browsed?before=x").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_follows_end_offsets_of_the_topics_dags_use() {
    let db = fresh_db().await;
    // No DAG uses Kafka: nothing is sampled and no broker is asked.
    let history = Arc::new(RateHistory::default());
    let mut idle = Sampler::new(
        db.pool.clone(),
        Arc::new(OperatorEnv::default()),
        history.clone(),
    );
    assert_eq!(idle.run_once().await, 0);
    assert!(history.is_empty());
    // Started with a web server's state, it ends with the state's shutdown token.
    let token = tokio_util::sync::CancellationToken::new();
    let state = updraft::web::AppState::new(
        db.pool.clone(),
        updraft::web::WebSettings::new("127.0.0.1:0".parse().unwrap(), "/tmp/dags".into()),
        token.clone(),
    );
    let running = updraft::web::start_sampler(&state);
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the sampler stops on shutdown")
        .unwrap();

    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    install(&db.pool, &[dag("sampled", vec![sink_of(TOPIC, None)])]).await;
    produce(&servers, 10).await;
    let mut sampler = Sampler::new(db.pool.clone(), env_of(&servers), history.clone());
    assert_eq!(sampler.run_once().await, 1);
    produce(&servers, 30).await;
    assert_eq!(sampler.run_once().await, 1);
    let key = updraft::web::streams::TopicKey {
        servers: servers.clone(),
        topic: TOPIC.into(),
    };
    let samples = history.samples(&key);
    let ends: Vec<i64> = samples.iter().map(|s| s.end_offset).collect();
    assert_eq!(ends, vec![10, 40]);
    let rates = rates_of(&samples);
    let secs = (samples[1].at - samples[0].at).num_milliseconds() as f64 / 1000.0;
    assert_eq!(rates.len(), 1);
    assert!(
        (rates[0].per_second - 30.0 / secs).abs() < 1e-6,
        "{rates:?}"
    );

    // The web server samples by itself: the API shows the history, /metrics the rate.
    let env = env_of(&servers);
    let app = TestApp::spawn_with(move |w| w.operator_env = env).await;
    install(app.pool(), &[dag("sampled", vec![sink_of(TOPIC, None)])]).await;
    let token = app.token().await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let body = loop {
        let body: serde_json::Value = app
            .client
            .get(app.url(&format!("/api/v2/streams/topics/{TOPIC}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["rates"].as_array().is_some_and(|r| !r.is_empty()) {
            break body;
        }
        assert!(Instant::now() < deadline, "no rate yet: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(body["bootstrap_servers"], servers.as_str());
    assert_eq!(body["sample_interval_seconds"], 5);
    assert_eq!(body["end_offset"], 40);
    assert_eq!(body["samples"][0]["end_offset"], 40);
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("updraft_stream_messages_per_second{topic=\"users_created\"}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_each_topic_with_its_own_errors_and_only_editors_get_replay() {
    let kafka = EmbeddedKafka::start(3).unwrap();
    let servers = kafka.bootstrap_servers();
    let env = env_of(&servers);
    let app = TestApp::spawn_with(move |w| w.operator_env = env).await;
    // A topic on brokers that are not there, and one name on two broker sets.
    let nowhere = "127.0.0.1:1";
    install(
        app.pool(),
        &[
            dag("users", vec![sink_of(TOPIC, None)]),
            dag("lost", vec![sink_of("elsewhere", Some(nowhere))]),
            dag("twin", vec![sink_of(TOPIC, Some(nowhere))]),
            // A continuous stream, not paused: its replay page warns.
            updraft::dag::Dag {
                schedule: updraft::core::Schedule::Continuous,
                max_active_runs: 1,
                ..dag("live", vec![sink_of(TOPIC, None)])
            },
        ],
    )
    .await;
    produce(&servers, 12).await;
    updraft::web::create_user(app.pool(), "victor", PASSWORD, "viewer")
        .await
        .unwrap();
    let admin = app.login().await;
    let viewer = app.login_as("victor", PASSWORD).await;

    let (status, list) = app.page(&admin, "/streams").await;
    assert_eq!(status, 200);
    assert_eq!(texts(&list, "section.topic h2").len(), 3);
    let lost = sel("section.topic[data-topic='elsewhere'] .topic-error");
    assert!(
        list.select(&lost).next().is_some(),
        "the dead brokers' topic shows its error"
    );
    let ok = list
        .select(&sel("section.topic[data-topic='users_created']"))
        .find(|s| s.select(&sel(".topic-error")).next().is_none())
        .expect("the live topic has no error");
    let end: String = ok
        .select(&sel(".end-total"))
        .next()
        .unwrap()
        .text()
        .collect();
    assert_eq!(end, "12");
    let links: Vec<&str> = list
        .select(&sel("a.topic-link"))
        .filter_map(|a| a.value().attr("href"))
        .collect();
    assert!(links.contains(&"/streams/topics/elsewhere"), "{links:?}");
    assert!(
        links
            .iter()
            .filter(|l| l.starts_with("/streams/topics/users_created?servers="))
            .count()
            == 2,
        "a shared name links with its brokers: {links:?}"
    );

    // The bare shared name asks which brokers.
    let (status, choose) = app.page(&admin, "/streams/topics/users_created").await;
    assert_eq!(status, 200);
    assert_eq!(texts(&choose, "#topic-choices li").len(), 2);

    let live = updraft::web::pages::streams::topic_href(TOPIC, Some(&servers));
    assert!(
        live.starts_with("/streams/topics/users_created?servers=127.0.0.1%3A"),
        "{live}"
    );
    let (status, page) = app.page(&admin, &live).await;
    assert_eq!(status, 200);
    assert_eq!(
        texts(&page, ".replay-form").len(),
        2,
        "editors get a replay form per sink group"
    );
    assert!(page.select(&sel("#rate-chart")).next().is_some());
    let (status, page) = app.page(&viewer, &live).await;
    assert_eq!(status, 200);
    assert!(
        texts(&page, ".replay-form").is_empty(),
        "viewers get no replay form"
    );
    let res = app
        .post_form(
            &viewer,
            "/dags/users/tasks/sink/replay",
            &[("csrf_token", &viewer.csrf), ("to", "beginning")],
        )
        .await;
    assert_eq!(res.status(), 403);

    // The API names a shared topic by its brokers too.
    let token = app.token().await;
    let status = |path: String| {
        let req = app.client.get(app.url(&path)).bearer_auth(&token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("/api/v2/streams/topics/{TOPIC}")).await, 400);
    let exact = format!("/api/v2/streams/topics/{TOPIC}?servers={servers}");
    assert_eq!(status(exact).await, 200);
    assert_eq!(status("/api/v2/streams/topics/nope".into()).await, 404);

    // The form's input is checked; the first post only shows what would move.
    let replay = "/dags/users/tasks/sink/replay";
    let form = |extra: &[(&'static str, &'static str)]| {
        let mut f = vec![("csrf_token", admin.csrf.clone())];
        f.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        f
    };
    for bad in [
        &[("to", "offset"), ("offset", "x")][..],
        &[("to", "timestamp"), ("timestamp", "yesterday")],
        &[("to", "beginning"), ("partition", "-1")],
    ] {
        let f = form(bad);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            app.post_form(&admin, replay, &f).await.status(),
            400,
            "{bad:?}"
        );
    }
    let f = form(&[("to", "offset"), ("offset", "0"), ("partition", "1")]);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = app.post_form(&admin, replay, &f).await;
    assert_eq!(res.status(), 200);
    let confirm = scraper::Html::parse_document(&res.text().await.unwrap());
    let moves: Vec<_> = confirm.select(&sel(".replay-move")).collect();
    assert_eq!(moves.len(), 1, "one partition asked for");
    assert_eq!(moves[0].value().attr("data-partition"), Some("1"));
    assert_eq!(texts(&confirm, ".replay-move .previous"), vec!["none"]);
    assert!(confirm.select(&sel("#confirm-submit")).next().is_some());
    assert!(confirm.select(&sel("#replay-live")).next().is_none());
    let f = form(&[("to", "beginning")]);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = app
        .post_form(&admin, "/dags/live/tasks/sink/replay", &f)
        .await;
    let confirm = scraper::Html::parse_document(&res.text().await.unwrap());
    let warning = texts(&confirm, "#replay-live");
    assert!(
        warning.len() == 1 && warning[0].contains("not paused"),
        "an unpaused continuous DAG is named: {warning:?}"
    );

    // The DAG page links its sink task to the topic page, brokers included.
    let (_, dag_page) = app.page(&viewer, "/dags/users").await;
    let href = dag_page
        .select(&sel("#dag-topics a.topic-link"))
        .next()
        .and_then(|a| a.value().attr("href"))
        .unwrap()
        .to_string();
    assert_eq!(href, live);

    // So does a task instance's page.
    let run_id = trigger(app.pool(), "users", json!({})).await;
    crate::web_support::start_run(app.pool(), "users", &run_id, &["sink"]).await;
    let ti = format!(
        "/dags/users/runs/{}/tasks/sink/logs/1",
        updraft::web::pages::seg(&run_id)
    );
    let (status, ti_page) = app.page(&viewer, &ti).await;
    assert_eq!(status, 200);
    let href = ti_page
        .select(&sel("#ti-topic a.topic-link"))
        .next()
        .and_then(|a| a.value().attr("href"));
    assert_eq!(href, Some(live.as_str()));
}
