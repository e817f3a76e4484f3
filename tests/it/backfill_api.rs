//! Backfills through the REST API (by hand and with Airflow's Python client) and the CLI.

use std::process::Output;

use serde_json::{json, Value};

use crate::helpers::{output_text, updraft_bin};
use crate::web_support::*;

/// `sample_dag` on a daily schedule.
fn daily(dag_id: &str) -> updraft::dag::Dag {
    let mut d = sample_dag(dag_id, &[]);
    d.schedule = updraft::core::Schedule::Cron {
        expr: "@daily".into(),
        cron: "0 0 0 * * *".into(),
    };
    d
}

async fn send(app: &TestApp, token: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = app;
    let res = req.bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn backfills_over_the_api() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![daily("etl")]).await;
    let token = app.token().await;
    let body = json!({"dag_id": "etl", "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-03T00:00:00Z",
                      "max_active_runs": 2, "dag_run_conf": {"k": 1}});
    let post = |path: &str, b: &Value| app.client.post(app.url(path)).json(b);

    let (status, dry) = send(&app, &token, post("/api/v2/backfills/dry_run", &body)).await;
    assert_eq!(
        (status, dry["total_entries"].clone()),
        (200, json!(3)),
        "{dry}"
    );
    assert_eq!(dry["backfills"][0]["logical_date"], "2026-01-01T00:00:00Z");

    let (status, b) = send(&app, &token, post("/api/v2/backfills", &body)).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        (
            b["reprocess_behavior"].clone(),
            b["max_active_runs"].clone()
        ),
        (json!("none"), json!(2))
    );
    assert_eq!(
        (b["total_runs"].clone(), b["is_paused"].clone()),
        (json!(3), json!(false))
    );
    assert_eq!(b["dag_run_conf"], json!({"k": 1}));
    let id = b["id"].as_i64().unwrap();
    let (status, _) = send(&app, &token, post("/api/v2/backfills", &body)).await;
    assert_eq!(status, 409, "one backfill per DAG at a time");

    let (_, list) = send(
        &app,
        &token,
        app.client.get(app.url("/api/v2/backfills?dag_id=etl")),
    )
    .await;
    assert_eq!(list["total_entries"], 1, "{list}");
    let (status, one) = send(
        &app,
        &token,
        app.client.get(app.url(&format!("/api/v2/backfills/{id}"))),
    )
    .await;
    assert_eq!((status, one["id"].clone()), (200, json!(id)));
    let put = |what: &str| {
        app.client
            .put(app.url(&format!("/api/v2/backfills/{id}/{what}")))
    };
    let (status, paused) = send(&app, &token, put("pause")).await;
    assert_eq!((status, paused["is_paused"].clone()), (200, json!(true)));
    let (status, cancelled) = send(&app, &token, put("cancel")).await;
    assert_eq!(status, 200);
    assert!(cancelled["completed_at"].is_string(), "{cancelled}");
    let (status, _) = send(&app, &token, put("unpause")).await;
    assert_eq!(status, 409, "completed");
    let (status, _) = send(
        &app,
        &token,
        app.client.get(app.url("/api/v2/backfills/999")),
    )
    .await;
    assert_eq!(status, 404);

    let bad = json!({"dag_id": "etl", "from_date": "2026-02-01T00:00:00Z", "to_date": "2026-01-01T00:00:00Z"});
    let (status, _) = send(&app, &token, post("/api/v2/backfills", &bad)).await;
    assert_eq!(status, 422);
    let missing = json!({"dag_id": "nope", "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-02T00:00:00Z"});
    let (status, _) = send(&app, &token, post("/api/v2/backfills", &missing)).await;
    assert_eq!(status, 404);

    let (_, log) = send(
        &app,
        &token,
        app.client.get(app.url("/api/v2/eventLogs?dag_id=etl")),
    )
    .await;
    let events: Vec<&str> = log["event_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        vec!["backfill", "backfill_pause", "backfill_cancel"]
    );
}

#[tokio::test]
async fn airflow_python_client_creates_and_steers_a_backfill() {
    let python = crate::api_client::test_python();
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![daily("etl")]).await;
    let token = app.token().await;
    let script = r#"
import sys, datetime, airflow_client.client as c
from airflow_client.client.api import backfill_api
from airflow_client.client.models import BackfillPostBody
conf = c.Configuration(host=sys.argv[1], access_token=sys.argv[2])
utc = datetime.timezone.utc
with c.ApiClient(conf) as api:
    b = backfill_api.BackfillApi(api)
    body = BackfillPostBody(dag_id="etl", from_date=datetime.datetime(2026, 1, 1, tzinfo=utc),
                            to_date=datetime.datetime(2026, 1, 5, tzinfo=utc), reprocess_behavior="failed",
                            max_active_runs=3, run_backwards=True)
    dry = b.create_backfill_dry_run(body)
    assert dry.total_entries == 5, dry
    made = b.create_backfill(body)
    assert made.reprocess_behavior.value == "failed" and made.max_active_runs == 3, made
    assert b.list_backfills(dag_id="etl").total_entries == 1
    assert b.get_backfill(made.id).dag_id == "etl"
    assert b.pause_backfill(made.id).is_paused is True
    assert b.unpause_backfill(made.id).is_paused is False
    assert b.cancel_backfill(made.id).completed_at is not None
print("ok")
"#;
    let out = tokio::process::Command::new(&python)
        .args(["-c", script, &app.base, &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed (is its virtualenv there? run `scripts/test`):\n{stdout}\n{stderr}"
    );
}

fn updraft(db_url: &str, args: &[&str]) -> Output {
    updraft_bin()
        .args(args)
        .env("DATABASE_URL", db_url)
        .output()
        .expect("run updraft")
}

#[tokio::test]
async fn backfill_create_from_the_cli() {
    let db = crate::helpers::fresh_db().await;
    store_dags(&db.pool, vec![daily("etl")]).await;
    let url = db.url.as_str();
    let range = [
        "--dag-id",
        "etl",
        "--from-date",
        "2026-01-01",
        "--to-date",
        "2026-01-04",
    ];
    let args = |extra: &[&'static str]| -> Vec<&str> {
        let mut a = vec!["backfill", "create"];
        a.extend_from_slice(&range);
        a.extend_from_slice(extra);
        a
    };
    let out = updraft(url, &args(&["--dry-run", "--run-backwards"]));
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("4 run(s) would be created"), "{t}");
    assert!(
        t.find("2026-01-04").unwrap() < t.find("2026-01-01").unwrap(),
        "backwards: {t}"
    );

    let out = updraft(
        url,
        &args(&["--max-active-runs", "2", "--dag-run-conf", r#"{"k": 1}"#]),
    );
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("Created backfill 1 of etl: running, 0/4 runs done"),
        "{t}"
    );
    let out = updraft(url, &args(&[]));
    assert_ne!(
        out.status.code(),
        Some(0),
        "a second backfill while one runs"
    );
    assert!(
        output_text(&out).contains("already has a backfill running"),
        "{}",
        output_text(&out)
    );
    let out = updraft(url, &args(&["--reprocess-behavior", "sometimes"]));
    assert!(
        output_text(&out).contains("use none, failed, completed"),
        "{}",
        output_text(&out)
    );

    let out = updraft(url, &["backfill", "cancel", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("completed"),
        "{}",
        output_text(&out)
    );
    let out = updraft(url, &["backfill", "list", "--dag-id", "etl"]);
    assert!(
        output_text(&out).contains("backfill 1 of etl: completed"),
        "{}",
        output_text(&out)
    );
}

#[tokio::test]
async fn backfills_from_the_dag_page() {
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![daily("etl")]).await;
    let s = app.login().await;
    let (_, dag_page) = app.page(&s, "/dags/etl").await;
    assert_eq!(dag_page.select(&sel("#backfills-link")).count(), 1);
    let (status, page) = app.page(&s, "/dags/etl/backfills").await;
    assert_eq!(status, 200);
    assert_eq!(page.select(&sel("#backfill-form")).count(), 1);
    let csrf = s.csrf.clone();
    let form = |action: &'static str| {
        vec![
            ("csrf_token", csrf.clone()),
            ("from_date", "2026-01-01".to_string()),
            ("to_date", "2026-01-03".to_string()),
            ("reprocess_behavior", "none".to_string()),
            ("max_active_runs", "2".to_string()),
            ("dag_run_conf", String::new()),
            ("action", action.to_string()),
        ]
    };
    let res = app
        .client
        .post(app.url("/dags/etl/backfills"))
        .header("cookie", &s.cookie)
        .form(&form("preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert_eq!(doc.select(&sel(".preview-row")).count(), 3);
    assert_eq!(
        doc.select(&sel(".backfill-row")).count(),
        0,
        "a preview starts nothing"
    );

    let res = app
        .client
        .post(app.url("/dags/etl/backfills"))
        .header("cookie", &s.cookie)
        .form(&form("create"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (_, page) = app.page(&s, "/dags/etl/backfills").await;
    assert_eq!(texts(&page, ".backfill-state"), vec!["running"]);
    assert_eq!(texts(&page, ".backfill-progress"), vec!["0/3 done"]);
    let id = page
        .select(&sel(".backfill-row"))
        .next()
        .unwrap()
        .value()
        .attr("data-id")
        .unwrap()
        .to_string();
    let res = app
        .post_form(
            &s,
            &format!("/dags/etl/backfills/{id}/cancel"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = app.page(&s, "/dags/etl/backfills").await;
    assert_eq!(texts(&page, ".backfill-state"), vec!["completed"]);

    let res = app
        .client
        .post(app.url("/dags/etl/backfills"))
        .header("cookie", &s.cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("from_date", "yesterday"),
            ("to_date", "2026-01-03"),
            ("reprocess_behavior", "none"),
            ("max_active_runs", "2"),
            ("action", "create"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let doc = scraper::Html::parse_document(&res.text().await.unwrap());
    assert!(texts(&doc, "#backfill-error")[0].contains("From"));

    updraft::web::create_user(app.pool(), "vera", PASSWORD, "viewer")
        .await
        .unwrap();
    let v = app.login_as("vera", PASSWORD).await;
    let (_, page) = app.page(&v, "/dags/etl/backfills").await;
    assert_eq!(page.select(&sel("#backfill-form")).count(), 0);
    assert_eq!(page.select(&sel(".backfill-cancel")).count(), 0);
}
