//! The HTML pages against a real Postgres: rendered markup checked with CSS selectors, and
//! every error path (missing auth, wrong password, missing CSRF token, bad conf, unknown DAG).

use updraft::web;

use crate::web_support::*;

#[tokio::test]
async fn pages_require_login_and_wrong_passwords_are_refused() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/dags?q=x")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?next=%2Fdags%3Fq%3Dx");

    let res = app.post_login("alice", "wrong", "/dags").await;
    assert_eq!(res.status(), 401);
    let cookies: Vec<_> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        !cookies.iter().any(|c| c.starts_with("updraft_session=")),
        "{cookies:?}"
    );
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert_eq!(
        texts(&doc, "#login-error"),
        vec!["Wrong username or password. Check both and try again."]
    );
    assert_eq!(texts(&doc, "#username").len(), 1);

    // The login form needs its own CSRF token (double-submit cookie).
    let res = app
        .client
        .post(app.url("/login"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(texts(&doc, "#login-error")[0].contains("expired"));
    let (cookie, _) = app.login_token().await;
    let res = app
        .client
        .post(app.url("/login"))
        .header("cookie", cookie)
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf_token", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // The session cookie is HttpOnly and SameSite=Lax, and logging out ends it.
    let res = app.post_login("alice", PASSWORD, "//evil.example").await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/dags",
        "off-site next is ignored"
    );
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("updraft_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let s = app.login().await;
    let res = app
        .post_form(&s, "/logout", &[("csrf_token", &s.csrf)])
        .await;
    assert_eq!(res.status(), 303);
    let (status, _) = app.page(&s, "/dags").await;
    assert_eq!(status, 303, "the session is gone after logout");
}

#[tokio::test]
async fn dag_list_shows_filters_and_paginates() {
    let app = TestApp::spawn().await;
    let s = app.login().await;
    let (_, doc) = app.page(&s, "/dags").await;
    assert!(texts(&doc, ".empty")[0].starts_with("No DAGs yet."));

    store_dags(
        app.pool(),
        vec![
            sample_dag("sales_daily", &["sales", "finance"]),
            sample_dag("user_automation", &["users"]),
        ],
    )
    .await;
    updraft::db::runs::trigger(app.pool(), "sales_daily", Default::default())
        .await
        .unwrap();
    let (_, doc) = app.page(&s, "/dags").await;
    assert_eq!(
        texts(&doc, ".dag-row .dag-link"),
        vec!["sales_daily", "user_automation"]
    );
    assert_eq!(
        texts(&doc, ".dag-row:first-child .desc"),
        vec!["sales_daily moves data"]
    );
    assert_eq!(
        texts(&doc, ".dag-row:first-child .tag"),
        vec!["sales", "finance"],
        "tags as written"
    );
    assert_eq!(
        texts(&doc, ".dag-row:first-child td:nth-child(4)"),
        vec!["data-team"]
    );
    assert_eq!(
        texts(&doc, ".dag-row:first-child .last-state"),
        vec!["queued"]
    );
    assert_eq!(
        doc.select(&sel("#dag-table[data-refresh]")).count(),
        1,
        "a queued run keeps the list live"
    );
    assert_eq!(
        doc.select(&sel(".dag-row:first-child .recent .dot.state-queued"))
            .count(),
        1
    );
    assert_eq!(
        texts(&doc, ".dag-row:nth-child(2) .last-state"),
        vec!["no runs"]
    );
    assert_eq!(
        texts(&doc, ".dag-row:first-child td:nth-child(6)"),
        vec!["manual only"]
    );
    let trigger = doc
        .select(&sel(".dag-row:first-child a.trigger"))
        .next()
        .unwrap();
    assert_eq!(
        trigger.value().attr("href"),
        Some("/dags/sales_daily/trigger")
    );

    let (_, doc) = app.page(&s, "/dags?tag=users").await;
    assert_eq!(texts(&doc, ".dag-row .dag-link"), vec!["user_automation"]);
    let (_, doc) = app.page(&s, "/dags?q=SALES").await;
    assert_eq!(texts(&doc, ".dag-row .dag-link"), vec!["sales_daily"]);
    let (_, doc) = app.page(&s, "/dags?q=100%25").await;
    assert!(texts(&doc, ".empty")[0].starts_with("No DAG matches"));

    let many: Vec<_> = (0..55)
        .map(|i| sample_dag(&format!("bulk_{i:02}"), &[]))
        .collect();
    store_dags(app.pool(), many).await;
    let (_, doc) = app.page(&s, "/dags").await;
    assert_eq!(doc.select(&sel(".dag-row")).count(), 50);
    assert_eq!(doc.select(&sel("#next-page")).count(), 1);
    let (status, doc) = app.page(&s, "/dags?page=abc").await;
    assert_eq!(status, 200, "a bad page number shows the first page");
    assert_eq!(doc.select(&sel(".dag-row")).count(), 50);
    assert_eq!(
        doc.select(&sel("#dag-table[data-refresh]")).count(),
        0,
        "nothing running: no polling"
    );
    let (_, doc) = app.page(&s, "/dags?page=2").await;
    assert_eq!(
        doc.select(&sel(".dag-row")).count(),
        5,
        "the earlier DAGs left the bag, so they are inactive"
    );
}

#[tokio::test]
async fn pause_toggle_needs_the_csrf_token() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = app.login().await;
    let res = app
        .post_form(&s, "/dags/etl/pause", &[("paused", "true")])
        .await;
    assert_eq!(res.status(), 403);
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(texts(&doc, ".error")[0].contains("CSRF token missing or wrong"));
    let res = app
        .post_form(
            &s,
            "/dags/etl/pause",
            &[("paused", "true"), ("csrf_token", "forged")],
        )
        .await;
    assert_eq!(res.status(), 403);

    let res = app
        .post_form(
            &s,
            "/dags/etl/pause",
            &[
                ("paused", "true"),
                ("csrf_token", &s.csrf),
                ("next", "/dags"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, doc) = app.page(&s, "/dags").await;
    assert_eq!(texts(&doc, ".dag-row .toggle"), vec!["Paused"]);
    let res = app
        .post_form(
            &s,
            "/dags/etl/pause",
            &[("paused", "false"), ("csrf_token", &s.csrf)],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, doc) = app.page(&s, "/dags").await;
    assert_eq!(texts(&doc, ".dag-row .toggle"), vec!["Active"]);

    let res = app
        .post_form(
            &s,
            "/dags/nope/pause",
            &[("paused", "true"), ("csrf_token", &s.csrf)],
        )
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn trigger_form_shows_bad_conf_and_triggers_good_conf() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = app.login().await;
    let (_, doc) = app.page(&s, "/dags/etl/trigger").await;
    let names: Vec<_> = doc
        .select(&sel("#trigger-form input[name^='param.']"))
        .map(|e| e.value().attr("name").unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["param.batch", "param.target"]);
    let target = doc
        .select(&sel("input[name='param.target']"))
        .next()
        .unwrap();
    assert_eq!(target.value().attr("value"), Some("warehouse"));

    let form = [
        ("csrf_token", s.csrf.as_str()),
        ("param.target", "lake"),
        ("param.batch", "10"),
        ("conf", "{\"broken\": "),
    ];
    let res = app.post_form(&s, "/dags/etl/trigger", &form).await;
    assert_eq!(res.status(), 400);
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(texts(&doc, "#trigger-error")[0].starts_with("Conf is not valid JSON"));
    assert_eq!(
        texts(&doc, "#conf"),
        vec!["{\"broken\":"],
        "the conf is shown back"
    );
    let target = doc
        .select(&sel("input[name='param.target']"))
        .next()
        .unwrap();
    assert_eq!(
        target.value().attr("value"),
        Some("lake"),
        "edited params are kept"
    );
    let res = app
        .post_form(
            &s,
            "/dags/etl/trigger",
            &[("csrf_token", &s.csrf), ("param.batch", "ten")],
        )
        .await;
    assert_eq!(res.status(), 400);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(runs, 0, "nothing triggered");

    let res = app
        .post_form(&s, "/dags/etl/trigger", &[("param.batch", "1")])
        .await;
    assert_eq!(res.status(), 403, "no CSRF token");

    let form = [
        ("csrf_token", s.csrf.as_str()),
        ("param.target", "lake"),
        ("param.batch", "25"),
        ("conf", "{\"extra\": [1, 2]}"),
        ("note", "by hand"),
    ];
    let res = app.post_form(&s, "/dags/etl/trigger", &form).await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/dags/etl/runs/manual__"),
        "{location}"
    );
    let (conf, note): (serde_json::Value, Option<String>) =
        sqlx::query_as("SELECT conf, note FROM dag_runs")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(
        conf,
        serde_json::json!({"target": "lake", "batch": 25, "extra": [1, 2]})
    );
    assert_eq!(note.as_deref(), Some("by hand"));
    let (status, doc) = app.page(&s, &location).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&doc, "#run-state"), vec!["queued"]);
    assert!(texts(&doc, "#no-tasks")[0].starts_with("No task instances yet"));

    let (status, doc) = app.page(&s, "/dags/nope/trigger").await;
    assert_eq!(status, 404);
    assert!(texts(&doc, ".error")[0].contains("DAG `nope` not found"));
}

#[tokio::test]
async fn login_and_pause_only_follow_same_site_next() {
    let app = TestApp::spawn().await;
    // Each of these is, or becomes in a browser, a redirect to another site.
    let evil = [
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/ /evil.example",
        "/ok/\\..\\/evil.example",
        "https://evil.example",
        "evil.example",
        "",
    ];
    for next in evil {
        let res = app.post_login("alice", PASSWORD, next).await;
        assert_eq!(res.status(), 303, "{next:?}");
        assert_eq!(res.headers()["location"], "/dags", "next = {next:?}");
    }
    let res = app.post_login("alice", PASSWORD, "/ok/path?x=1").await;
    assert_eq!(res.headers()["location"], "/ok/path?x=1");

    // The login page does not carry an evil `next` into its form either (`%09` is a tab).
    let res = app
        .client
        .get(app.url("/login?next=/%09/evil.example"))
        .send()
        .await
        .unwrap();
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    let next = doc
        .select(&sel("#login-form input[name=next]"))
        .next()
        .unwrap()
        .value()
        .attr("value")
        .unwrap()
        .to_string();
    assert_eq!(next, "/dags");

    // The pause form uses the same check.
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let s = app.login().await;
    for (next, expected) in [
        ("/\t/evil.example", "/dags"),
        ("/\\evil.example", "/dags"),
        ("/dags/etl", "/dags/etl"),
    ] {
        let res = app
            .post_form(
                &s,
                "/dags/etl/pause",
                &[("paused", "true"), ("csrf_token", &s.csrf), ("next", next)],
            )
            .await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], expected, "next = {next:?}");
    }
}

#[tokio::test]
async fn viewers_can_log_out_but_not_without_the_csrf_token() {
    let app = TestApp::spawn().await;
    web::create_user(app.pool(), "val", "viewer-password", "viewer")
        .await
        .unwrap();
    let s = app.login_as("val", "viewer-password").await;
    store_dags(app.pool(), vec![sample_dag("shown", &[])]).await;
    let (status, doc) = app.page(&s, "/dags").await;
    assert_eq!(status, 200);
    // A viewer sees the DAG and its state, but no button that would only be refused.
    assert_eq!(doc.select(&sel("tr.dag-row")).count(), 1);
    assert_eq!(doc.select(&sel(".pause-form, a.trigger")).count(), 0);
    let (_, doc) = app.page(&s, "/dags/shown").await;
    assert_eq!(
        doc.select(&sel(".pause-form, a.trigger, #backfills-link"))
            .count(),
        0
    );

    // Still a viewer: other writes are refused.
    store_dags(app.pool(), vec![sample_dag("etl", &[])]).await;
    let res = app
        .post_form(
            &s,
            "/dags/etl/pause",
            &[("paused", "true"), ("csrf_token", &s.csrf)],
        )
        .await;
    assert_eq!(res.status(), 403);

    let res = app.post_form(&s, "/logout", &[]).await;
    assert_eq!(res.status(), 403, "logout still needs the CSRF token");
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(texts(&doc, ".error")[0].contains("CSRF token missing or wrong"));
    let (status, _) = app.page(&s, "/dags").await;
    assert_eq!(status, 200, "a refused logout keeps the session");

    let res = app
        .post_form(&s, "/logout", &[("csrf_token", &s.csrf)])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
    let (status, _) = app.page(&s, "/dags").await;
    assert_eq!(status, 303, "the session is gone after logout");
}
