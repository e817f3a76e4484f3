//! What every request and response passes through (`web::hardening`), against real servers on
//! port 0: bodies over the limit get 413 in our words, every kind of response carries the
//! security headers, a handler stuck on the database times out with 503, and the SSE log tail
//! outlives the timeout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use updraft::web::hardening::CONTENT_SECURITY_POLICY;

use crate::web_support::*;

/// Checks the security headers on one response; `what` names it in failures.
fn assert_hardened(what: &str, headers: &reqwest::header::HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{what}: no {name} header in {headers:?}"))
    };
    assert_eq!(
        get("content-security-policy"),
        CONTENT_SECURITY_POLICY,
        "{what}"
    );
    assert!(
        CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'")
            && !CONTENT_SECURITY_POLICY.contains("unsafe-inline")
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
}

/// A session made straight in the database (no password check), so tests under a short
/// request timeout do not wait on argon2.
async fn quick_session(app: &TestApp) -> Session {
    let (user_id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE username = 'alice'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    let (token, csrf) = (uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let (token, csrf) = (token.to_string(), csrf.to_string());
    updraft::db::users::insert_token(app.pool(), &token, user_id, "session", &csrf, 3600)
        .await
        .unwrap();
    Session {
        cookie: format!("updraft_session={token}"),
        csrf,
    }
}

/// Posts `len` bytes of `content_type` with chunked transfer encoding (no length announced,
/// as a streaming client sends) over a raw connection; returns the status and the body.
async fn post_chunked(
    app: &TestApp,
    path: &str,
    content_type: &str,
    cookie: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n",
        app.addr
    );
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    for chunk in body.chunks(64 * 1024) {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        conn.write_all(chunk).await.unwrap();
        conn.write_all(b"\r\n").await.unwrap();
    }
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after answering (`Connection: close`).
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_in_our_words() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 64 * 1024).await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = quick_session(&app).await;
    let big = "x".repeat(64 * 1024 + 1);

    // Announced length, API: JSON before any handler runs.
    let res = app
        .client
        .post(app.url("/api/v2/dags/etl/dagRuns"))
        .basic_auth("alice", Some(PASSWORD))
        .header("content-type", "application/json")
        .body(format!("{{\"conf\": \"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_hardened("413 API", res.headers());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], 413);
    assert!(
        body["detail"].as_str().unwrap().contains("(64 KiB)"),
        "{body}"
    );

    // Announced length, form: the error page.
    let res = app
        .post_form(
            &s,
            "/dags/etl/trigger",
            &[("csrf_token", &s.csrf), ("conf", &big)],
        )
        .await;
    assert_eq!(res.status(), 413);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(
        texts(&doc, ".error")[0].starts_with("The request body is larger than this server"),
        "{:?}",
        texts(&doc, ".error")
    );

    // Streamed without a length: the limit holds while reading, for JSON and for forms.
    let json = format!("{{\"username\": \"{big}\", \"password\": \"x\"}}");
    let (status, head, body) =
        post_chunked(&app, "/auth/token", "application/json", "", json.as_bytes()).await;
    assert_eq!(status, 413, "{head}{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(body.contains("larger than this server accepts"), "{body}");
    let form = format!("csrf_token={}&conf={big}", s.csrf);
    let (status, head, body) = post_chunked(
        &app,
        "/dags/etl/trigger",
        "application/x-www-form-urlencoded",
        &s.cookie,
        form.as_bytes(),
    )
    .await;
    assert_eq!(status, 413, "{head}{body}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(body.contains("larger than this server accepts"), "{body}");

    // Under the limit, the same form still works.
    let res = app
        .post_form(&s, "/dags/etl/trigger", &[("csrf_token", &s.csrf)])
        .await;
    assert_eq!(res.status(), 303);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(runs, 1, "only the request within the limit triggered a run");
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = quick_session(&app).await;
    let token = app.token().await;
    let get = |path: &str| app.client.get(app.url(path));
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("login page", get("/login"), 200),
        ("page", get("/dags").header("cookie", &s.cookie), 200),
        ("redirect to login", get("/dags"), 303),
        ("API JSON", get("/api/v2/dags").bearer_auth(&token), 200),
        ("API 401", get("/api/v2/dags"), 401),
        ("API 404", get("/api/v2/nope").bearer_auth(&token), 404),
        ("page 404", get("/no/such/page"), 404),
        ("static asset", get("/static/app.js"), 200),
        ("static 404", get("/static/nope.js"), 404),
        ("health", get("/health"), 200),
        ("metrics", get("/metrics").bearer_auth(&token), 200),
        ("OpenAPI", get("/openapi.json"), 200),
        (
            "CSRF refusal",
            app.client
                .post(app.url("/dags/etl/pause"))
                .header("cookie", &s.cookie)
                .form(&[("paused", "true")]),
            403,
        ),
        (
            "method not allowed",
            app.client.delete(app.url("/login")),
            405,
        ),
    ];
    for (what, req, status) in cases {
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{what}");
        assert_hardened(what, res.headers());
    }
    let res = get("/static/app.css").send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
}

/// A "database" that accepts connections and never answers, so every query hangs.
async fn silent_database() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

#[tokio::test]
async fn handlers_stuck_on_the_database_time_out_with_503() {
    let db = silent_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(120))
        .connect_lazy(&format!("postgres://postgres@{db}/nowhere"))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut settings = updraft::web::WebSettings::new(addr, "dags".into());
    settings.request_timeout = Duration::from_secs(1);
    let state = updraft::web::AppState::new(pool, settings, shutdown.clone());
    tokio::spawn(updraft::web::serve_router(
        updraft::web::router(state),
        listener,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");

    let started = Instant::now();
    let res = client
        .get(url("/api/v2/dags"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout, not the pool's"
    );
    assert_hardened("API timeout", res.headers());
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("The server did not answer within 1 s"),
        "{body}"
    );

    let res = client.get(url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        503
    );

    let res = client
        .get(url("/dags"))
        .header("cookie", "updraft_session=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_hardened("page timeout", res.headers());
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(texts(&doc, ".error")[0].contains("did not answer within 1 s"));
    shutdown.cancel();
}

/// Reads the streamed body into `seen` until it contains `needle` (30 s at most).
async fn read_until(res: &mut reqwest::Response, needle: &str, seen: &mut String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in the stream: {seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {needle:?}: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_log_tail_outlives_the_request_timeout() {
    let timeout = Duration::from_secs(2);
    let app = TestApp::spawn_with(|s| s.request_timeout = timeout).await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = quick_session(&app).await;
    let run = updraft::db::runs::trigger(app.pool(), "etl", Default::default())
        .await
        .unwrap();
    let pk = start_run(app.pool(), "etl", &run.run_id, &["extract"]).await;
    let ti = set_task(app.pool(), pk, "extract", "running").await;
    add_log(app.pool(), ti, 1, &["first line"]).await;
    let path = format!(
        "/dags/etl/runs/{}/tasks/extract/logs/1/stream?after=0",
        run.run_id.replace(':', "%3A").replace('+', "%2B")
    );
    let opened = Instant::now();
    let mut res = app
        .client
        .get(app.url(&path))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_hardened("SSE", res.headers());

    let mut seen = String::new();
    read_until(&mut res, "first line", &mut seen).await;
    // Let the request timeout pass with the stream open: it must not cut the stream.
    tokio::time::sleep(timeout.saturating_sub(opened.elapsed()) + Duration::from_millis(500)).await;
    add_log(app.pool(), ti, 1, &["after the timeout"]).await;
    read_until(&mut res, "after the timeout", &mut seen).await;
    set_task(app.pool(), pk, "extract", "success").await;
    read_until(&mut res, "data: success", &mut seen).await;
    assert!(opened.elapsed() > timeout);
}
