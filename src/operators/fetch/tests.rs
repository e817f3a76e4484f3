use std::time::Duration;

use serde_json::{json, Value};

use super::mapping::design_fields;
use super::mapping::{Mapping, Piece, Spec};
use super::stub::{Fault, RandomUserStub};
use super::*;
use crate::operators::{ErrorKind, OperatorEnv, Reason, TaskContext};

pub(crate) fn sample() -> Value {
    serde_json::from_str(include_str!(
        "../../../tests/fixtures/randomuser_sample.json"
    ))
    .unwrap()
}

fn config(extra: Value) -> Config {
    let mut base = json!({"fields": design_fields(), "backoff": 0.01, "max_backoff": 0.05});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).unwrap()
}

fn records(out: &crate::operators::Outcome) -> Vec<Value> {
    out.xcom[0].1.as_array().unwrap().clone()
}

#[test]
fn specs_parse() {
    assert_eq!(Spec::parse("$uuid").unwrap(), Spec::Uuid);
    assert_eq!(Spec::parse("=x").unwrap(), Spec::Literal("x".into()));
    assert_eq!(
        Spec::parse("a.b?").unwrap(),
        Spec::Path {
            path: vec!["a".into(), "b".into()],
            optional: true
        }
    );
    assert_eq!(
        Spec::parse("{a} {{x}}").unwrap(),
        Spec::Format(vec![
            Piece::Path(vec!["a".into()]),
            Piece::Text(" {x}".into())
        ])
    );
    assert!(Spec::parse("$nope").unwrap_err().contains("$uuid"));
    assert!(Spec::parse("a..b").is_err());
    assert!(Spec::parse("{a").unwrap_err().contains("unclosed"));
    assert!(Spec::parse("a}").unwrap_err().contains("unmatched"));
}

#[test]
fn maps_the_design_record_in_order_keeping_postcode_types() {
    let cfg = config(json!({}));
    let mapping = Mapping::compile(&cfg.fields.0).unwrap();
    let users = sample()["results"].as_array().unwrap().clone();
    let r0 = mapping.apply(&users[0], "now").unwrap();
    let keys: Vec<&String> = r0.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "first_name",
            "last_name",
            "gender",
            "address",
            "post_code",
            "email",
            "username",
            "dob",
            "registered_date",
            "phone",
            "picture"
        ]
    );
    assert!(uuid::Uuid::parse_str(r0["id"].as_str().unwrap()).is_ok());
    assert_eq!(r0["first_name"], "Rosalind");
    assert_eq!(
        r0["address"],
        "4127 Timber Wolf Trail, Lubbock, Vermont, United States"
    );
    assert_eq!(r0["post_code"], json!(58213));
    let r1 = mapping.apply(&users[1], "now").unwrap();
    assert_eq!(r1["post_code"], json!("HX7 2QN"));
    assert_ne!(r0["id"], r1["id"]);
}

#[test]
fn null_and_missing_values_make_the_record_invalid_unless_optional() {
    let users = sample()["results"].as_array().unwrap().clone();
    let strict = Mapping::compile(&[("ssn".into(), "id.value".into())]).unwrap();
    assert!(strict
        .apply(&users[2], "")
        .unwrap_err()
        .contains("`id.value` is null"));
    assert_eq!(strict.apply(&users[0], "").unwrap()["ssn"], "512-38-4471");
    let lax = Mapping::compile(&[("ssn".into(), "id.value?".into())]).unwrap();
    assert_eq!(lax.apply(&users[2], "").unwrap()["ssn"], Value::Null);
    let fmt = Mapping::compile(&[("x".into(), "{nope.deeper}".into())]).unwrap();
    assert!(fmt
        .apply(&users[0], "")
        .unwrap_err()
        .contains("nope.deeper"));
    assert!(strict
        .apply(&json!(3), "")
        .unwrap_err()
        .contains("not an object"));
}

#[test]
fn validation_reports_every_problem() {
    let cfg: Config = serde_json::from_value(json!({
        "fields": {"a": "$bad", "b": "{x"}, "page_size": 6000, "concurrency": 0, "url": "not a url"
    }))
    .unwrap();
    let fields: Vec<String> = cfg.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "with.fields.a",
            "with.fields.b",
            "with.page_size",
            "with.concurrency",
            "with.url"
        ]
    );
    assert!(serde_json::from_value::<Config>(json!({"fields": {"a": "b"}, "bogus": 1})).is_err());
}

#[test]
fn url_precedence_and_pages() {
    let cfg = config(json!({"results": 12001}));
    assert_eq!(cfg.effective_url(None), DEFAULT_URL);
    assert_eq!(cfg.effective_url(Some("http://env/")), "http://env/");
    let with_url = config(json!({"url": "http://dag/"}));
    assert_eq!(with_url.effective_url(Some("http://env/")), "http://dag/");
    assert_eq!(cfg.pages(), vec![5000, 5000, 2001]);
}

#[tokio::test]
async fn fetches_in_pages_from_datasource_url() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    let env = OperatorEnv {
        datasource_url: Some(stub.url()),
        ..Default::default()
    };
    let (ctx, _log) = TaskContext::for_test(env);
    let out = run(
        config(json!({"results": 25, "page_size": 10, "concurrency": 2})),
        &ctx,
    )
    .await
    .unwrap();
    let recs = records(&out);
    assert_eq!(recs.len(), 25);
    assert_eq!(stub.requests(), 3);
    // Skipped: none, since the design mapping does not read `id.value`.
    assert_eq!(recs[3]["first_name"], "Rosalind");
}

#[tokio::test]
async fn retries_429_500_and_api_errors_then_succeeds() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    stub.push_faults([
        Fault::TooManyRequests {
            retry_after_secs: 0,
        },
        Fault::ServerError,
        Fault::ApiError,
    ]);
    let (ctx, mut log) = TaskContext::for_test(OperatorEnv::default());
    let out = run(config(json!({"url": stub.url(), "results": 3})), &ctx)
        .await
        .unwrap();
    assert_eq!(records(&out).len(), 3);
    assert_eq!(stub.requests(), 4);
    drop(ctx);
    let mut retried = 0;
    while let Some(l) = log.recv().await {
        retried += l.text.contains("retrying") as usize;
    }
    assert_eq!(retried, 3);
}

#[tokio::test]
async fn gives_up_after_the_retry_budget_with_a_clear_error() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    stub.push_faults(std::iter::repeat_n(Fault::ServerError, 5));
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(config(json!({"url": stub.url(), "retries": 2})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("after 3 attempt(s)") && err.contains("500"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_fails_at_once_without_retrying() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    stub.push_faults([Fault::Html, Fault::Body(r#"{"info": {}}"#.into())]);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(config(json!({"url": stub.url()})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not JSON") && err.contains("<html>"), "{err}");
    let err = run(config(json!({"url": stub.url()})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `results` list"), "{err}");
    assert_eq!(stub.requests(), 2);
}

#[tokio::test]
async fn slow_responses_time_out_and_are_retried() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    stub.push_faults([Fault::Slow(Duration::from_secs(2))]);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let started = std::time::Instant::now();
    let out = run(config(json!({"url": stub.url(), "timeout": 0.2})), &ctx)
        .await
        .unwrap();
    assert_eq!(records(&out).len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn invalid_records_are_skipped_and_counted_or_fail_when_asked() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    let mut fields = design_fields();
    fields["ssn"] = json!("id.value");
    let (ctx, mut log) = TaskContext::for_test(OperatorEnv::default());
    let out = run(
        config(json!({"url": stub.url(), "results": 3, "fields": fields.clone()})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(records(&out).len(), 2);
    let strict =
        config(json!({"url": stub.url(), "results": 3, "fields": fields, "on_invalid": "fail"}));
    let err = run(strict, &ctx).await.unwrap_err().to_string();
    assert!(err.contains("result #2") && err.contains("null"), "{err}");
    drop(ctx);
    let mut summary = String::new();
    while let Some(l) = log.recv().await {
        if l.text.contains("skipped as invalid") {
            summary = l.text;
        }
    }
    assert!(summary.contains("2 records, 1 skipped"), "{summary}");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/", listener.local_addr().unwrap());
    drop(listener);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(config(json!({"url": url, "retries": 1})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not connect") && err.contains("2 attempt"),
        "{err}"
    );
    // The cause (refused) and what to change.
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(err.contains("DATASOURCE_URL"), "{err}");
}

#[tokio::test]
async fn cancellation_stops_a_slow_fetch() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    stub.push_faults([Fault::Slow(Duration::from_secs(10))]);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let err = run(config(json!({"url": stub.url()})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cancelled"), "{err}");
}

#[tokio::test]
async fn errors_say_whether_another_try_can_help() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let cfg = || config(json!({"url": stub.url(), "retries": 2}));

    // 404: the same request gets the same answer, so no retry inside the try either.
    stub.push_faults([Fault::Status(404)]);
    let err = run(cfg(), &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::Rejected)
    );
    assert!(
        err.to_string().contains("404") && !err.to_string().contains("attempt(s)"),
        "{err}"
    );
    assert_eq!(stub.requests(), 1);

    // 503 every time: retried per `retries`, then handed to the task's policy as transient.
    stub.push_faults(std::iter::repeat_n(Fault::Status(503), 3));
    let err = run(cfg(), &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Transient, Reason::ServerError)
    );
    assert!(err.to_string().contains("after 3 attempt(s)"), "{err}");
    assert_eq!(stub.requests(), 4);

    // 408 and 429 are worth another attempt; this one succeeds on the third.
    stub.push_faults([Fault::Status(408), Fault::Status(429)]);
    assert_eq!(records(&run(cfg(), &ctx).await.unwrap()).len(), 1);

    // A body that is not what `results_path` says will not change: permanent, one request.
    let before = stub.requests();
    stub.push_faults([Fault::Html]);
    let err = run(cfg(), &ctx).await.unwrap_err();
    assert_eq!(err.reason(), Reason::Malformed);
    assert_eq!(stub.requests(), before + 1);
}

#[tokio::test]
async fn unreachable_port_is_transient_and_bad_arguments_are_permanent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/", listener.local_addr().unwrap());
    drop(listener);
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(config(json!({"url": url, "retries": 0})), &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Transient, Reason::Connection)
    );

    // A `with:` the operator cannot take, through the same entry point the worker uses.
    let err = crate::operators::run(
        crate::operators::OperatorName::Fetch,
        json!({"fields": design_fields(), "page_size": 0}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::BadConfig)
    );
    assert!(err.to_string().contains("with.page_size"), "{err}");
    let err = crate::operators::run(
        crate::operators::OperatorName::Fetch,
        json!({"fields": design_fields(), "retries": "many"}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), Reason::BadConfig);

    // A bad DATASOURCE_URL says which setting to fix.
    let env = OperatorEnv {
        datasource_url: Some("not a url".into()),
        ..Default::default()
    };
    let (ctx, _log) = TaskContext::for_test(env);
    let err = run(config(json!({})), &ctx).await.unwrap_err();
    assert_eq!(err.reason(), Reason::BadConfig);
    assert!(err.to_string().contains("DATASOURCE_URL"), "{err}");
}

#[tokio::test]
async fn a_mapping_the_data_cannot_fill_is_permanent() {
    let stub = RandomUserStub::start(&sample()).await.unwrap();
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let strict = config(json!({
        "url": stub.url(), "results": 3, "fields": {"ssn": "id.value"}, "on_invalid": "fail"
    }));
    let err = run(strict, &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::Schema)
    );
    let none_fit =
        config(json!({"url": stub.url(), "results": 1, "fields": {"x": "no.such.path"}}));
    let err = run(none_fit, &ctx).await.unwrap_err();
    assert_eq!(err.reason(), Reason::Schema);
}
