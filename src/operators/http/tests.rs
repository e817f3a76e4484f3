use std::collections::BTreeMap;

use axum::extract::{Form, Query};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::operators::{ErrorKind, Reason, TaskContext};
use crate::settings::OperatorEnv;

/// An echo server: GET /v1/echo returns its query and auth header; POST /v1/form its form;
/// GET /v1/fail answers 503.
async fn server() -> String {
    let app = axum::Router::new()
        .route(
            "/v1/echo",
            get(
                |Query(q): Query<BTreeMap<String, String>>, h: HeaderMap| async move {
                    let auth = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let accept = h
                        .get("accept")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    axum::Json(json!({"query": q, "auth": auth, "accept": accept}))
                },
            ),
        )
        .route(
            "/v1/form",
            post(|Form(f): Form<BTreeMap<String, String>>| async move { axum::Json(json!(f)) }),
        )
        .route("/v1/raw", post(|body: String| async move { body }))
        .route(
            "/v1/fail",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn env(base: &str) -> OperatorEnv {
    let mut env = OperatorEnv::default();
    env.set_env_connection("http_default", &format!("{base}/v1"));
    let with_auth = base.replacen("http://", "http://bob:s3cr%40t@", 1);
    env.set_env_connection("api", &with_auth);
    env
}

fn config(v: serde_json::Value) -> Config {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn get_with_query_data_and_headers_pushes_the_body() {
    let base = server().await;
    let (ctx, _log) = TaskContext::for_test(env(&base));
    let c = config(
        json!({"endpoint": "echo", "method": "GET", "data": {"results": "2", "n": 3}, "headers": {"Accept": "application/json"}}),
    );
    let out = run(c, &ctx).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(out.xcom[0].1.as_str().unwrap()).unwrap();
    assert_eq!(body["query"], json!({"results": "2", "n": "3"}));
    assert_eq!(body["accept"], "application/json");
    assert_eq!(body["auth"], "");
}

#[tokio::test]
async fn post_form_and_raw_bodies_with_basic_auth_from_the_connection() {
    let base = server().await;
    let (ctx, mut log) = TaskContext::for_test(env(&base));
    let out = run(
        config(json!({"endpoint": "/v1/form", "data": {"a": "1"}, "http_conn_id": "api"})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.xcom[0].1, json!(r#"{"a":"1"}"#));
    let out = run(
        config(json!({"endpoint": "/v1/raw", "data": "hello", "http_conn_id": "api"})),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.xcom[0].1, json!("hello"));
    let out = run(
        config(json!({"endpoint": "/v1/echo", "method": "get", "http_conn_id": "api"})),
        &ctx,
    )
    .await
    .unwrap();
    let body: serde_json::Value = serde_json::from_str(out.xcom[0].1.as_str().unwrap()).unwrap();
    // base64("bob:s3cr@t")
    assert_eq!(body["auth"], "Basic Ym9iOnMzY3JAdA==");
    drop(ctx);
    while let Some(l) = log.recv().await {
        assert!(
            !l.text.contains("s3cr"),
            "a password reached the log: {}",
            l.text
        );
    }
}

#[tokio::test]
async fn non_2xx_fails_and_missing_connection_is_explained() {
    let base = server().await;
    let (ctx, _log) = TaskContext::for_test(env(&base));
    let err = run(config(json!({"endpoint": "fail", "method": "GET"})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("503") && err.contains("down"), "{err}");
    let err = run(config(json!({"http_conn_id": "nope"})), &ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AIRFLOW_CONN_NOPE"), "{err}");
}

#[test]
fn validation_rejects_callables_and_other_methods() {
    let c = config(
        json!({"method": "PUT", "response_check": "lambda r: True", "extra_options": {"verify": false}}),
    );
    let fields: Vec<String> = c.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "with.method",
            "with.response_check",
            "with.extra_options.verify"
        ]
    );
    assert!(config(json!({"extra_options": {"timeout": 5}}))
        .validate()
        .is_empty());
    assert_eq!(config(json!({})).method, "POST");
}

#[test]
fn urls_join_base_path_and_endpoint() {
    let (u, auth) = build_url("https://u:p%40ss@h:8443/base/", "/api/users?x=1").unwrap();
    assert_eq!(u.as_str(), "https://h:8443/base/api/users?x=1");
    assert_eq!(auth, Some(("u".into(), "p@ss".into())));
    let (u, auth) = build_url("http://h", "").unwrap();
    assert_eq!(u.as_str(), "http://h/");
    assert_eq!(auth, None);
    assert!(build_url("ftp://h", "x").is_err());
}

#[tokio::test]
async fn failures_say_whether_a_retry_can_help() {
    let base = server().await;
    let (ctx, _log) = TaskContext::for_test(env(&base));
    let get = |endpoint: &str| config(json!({"endpoint": endpoint, "method": "GET"}));
    // 404: the same request gets the same answer.
    let err = run(get("no/such/path"), &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Permanent, Reason::Rejected)
    );
    assert!(err.to_string().contains("404"), "{err}");
    // 503: the server may be back soon.
    let err = run(get("fail"), &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Transient, Reason::ServerError)
    );
    // Nothing listens there: refused, which may pass.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let (ctx, _log) = TaskContext::for_test(env(&closed));
    let err = run(get("echo"), &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.reason()),
        (ErrorKind::Transient, Reason::Connection)
    );
    assert!(err.to_string().contains("could not connect"), "{err}");
    // A connection nobody defined, a method the operator does not speak: permanent.
    let err = run(config(json!({"http_conn_id": "nope"})), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::MissingConnection);
    let err = run(config(json!({"method": "PUT"})), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::BadConfig);
}
