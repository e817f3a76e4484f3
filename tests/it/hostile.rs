//! Hostile input, end to end: DAGs whose numbers or dates could stop the others, requests
//! with NUL bytes and odd run ids, secrets kept from tasks.

use std::process::Command;
use std::time::Duration;

use chrono::TimeZone;
use serde_json::Value;
use updraft::dag::{Dag, DagId};

use crate::helpers::*;
use crate::web_support::{sample_dag, texts, TestApp};

fn updraft_cli(db_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("UPDRAFT_LOG", "warn")
        .env(
            "UPDRAFT_HOME",
            std::env::temp_dir().join("updraft-cli-test-home"),
        )
        .output()
        .expect("run updraft");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A daily DAG whose `end_date` passed years ago: nothing more will be scheduled. Its
/// planned "next run" used to be stored as 'infinity', which no reader could decode, so the
/// DAG list failed for every DAG, in the CLI, the API and the UI.
#[tokio::test]
async fn a_dag_whose_end_date_passed_does_not_break_the_lists() {
    let app = TestApp::spawn().await;
    let ended = Dag {
        schedule: updraft::dag::schedule::parse("@daily").unwrap(),
        start_date: Some(chrono::Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()),
        end_date: Some(chrono::Utc.with_ymd_and_hms(2020, 1, 5, 0, 0, 0).unwrap()),
        ..sample_dag("ended", &[])
    };
    let live = Dag {
        schedule: updraft::dag::schedule::parse("@daily").unwrap(),
        start_date: Some(chrono::Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap()),
        ..sample_dag("live", &[])
    };
    install(app.pool(), &[ended, live]).await;
    let specs = updraft::db::tasks::SpecCache::default();
    let planned = updraft::db::scheduling::plan_next_runs(app.pool(), &specs, false)
        .await
        .unwrap();
    assert_eq!(planned, 2);

    // CLI
    let (code, out) = updraft_cli(&app.db.url, &["dags", "list"]);
    assert_eq!(code, Some(0), "{out}");
    let line = out.lines().find(|l| l.starts_with("ended ")).expect(&out);
    assert!(line.contains("no next run (end_date passed)"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("live ")), "{out}");

    // API: every DAG answers, the ended one with Airflow's null next_dagrun*.
    let token = app.token().await;
    let res = app
        .client
        .get(app.url("/api/v2/dags"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["total_entries"], 2, "{body}");
    let ended = &body["dags"][0];
    assert_eq!(ended["dag_id"], "ended");
    for field in [
        "next_dagrun_logical_date",
        "next_dagrun_data_interval_start",
        "next_dagrun_data_interval_end",
        "next_dagrun_run_after",
    ] {
        assert!(ended[field].is_null(), "{field}: {ended}");
    }
    assert!(
        body["dags"][1]["next_dagrun_run_after"].is_string(),
        "{body}"
    );
    let res = app
        .client
        .get(app.url("/api/v2/dags/ended"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // UI: the list and the DAG's page.
    let s = app.login().await;
    let (status, doc) = app.page(&s, "/dags").await;
    assert_eq!(status, 200);
    let cells = texts(&doc, "td");
    assert!(
        cells.iter().any(|c| c == "no next run (end_date passed)"),
        "{cells:?}"
    );
    let (status, doc) = app.page(&s, "/dags/ended").await;
    assert_eq!(status, 200);
    assert!(doc.html().contains("no next run (end_date passed)"));
}

/// Polls `check` until it holds, or panics after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(dead_code)]
fn dag_id(s: &str) -> DagId {
    DagId::parse(s).unwrap()
}

const HEAD: &str = "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json\n";

/// DAG files whose numbers used to break things far from the file (a dagrun_timeout no
/// Postgres interval holds made run start fail for every DAG after it; 3000000000 wrapped
/// negative; 0 never ran) sit beside a good DAG: each is an import error with its line, and
/// the good DAG's runs go on.
#[tokio::test]
async fn bad_numbers_are_import_errors_and_the_dag_beside_them_runs() {
    let db = fresh_db().await;
    let dir = empty_folder();
    let task = "tasks:\n  - id: t\n    uses: updraft.bash\n    with: {bash_command: 'echo ok'}\n";
    let bad = [
        (
            "a_timeout.yaml",
            "dagrun_timeout: 99999999999999999999\n",
            4,
        ),
        ("a_runs.yaml", "max_active_runs: 3000000000\n", 4),
        ("a_tasks.yaml", "max_active_tasks: 0\n", 4),
    ];
    for (file, line, _) in bad {
        let id = file.trim_end_matches(".yaml");
        std::fs::write(
            dir.path().join(file),
            format!("{HEAD}dag_id: {id}\nis_paused_upon_creation: false\n{line}{task}"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("z_good.yaml"),
        format!("{HEAD}dag_id: z_good\nis_paused_upon_creation: false\ndagrun_timeout: 1h\n{task}"),
    )
    .unwrap();
    let settings = updraft::settings::EngineSettings {
        process_dags_folder: true,
        ..fast_settings(dir.path())
    };
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let pool = db.pool.clone();
    eventually("the folder is loaded", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let dags = updraft::db::dags::list(&pool).await.unwrap();
            let errors = updraft::db::dags::import_errors(&pool).await.unwrap();
            dags.iter().any(|d| d.dag_id == "z_good") && errors.len() == bad.len()
        }
    })
    .await;
    let errors = updraft::db::dags::import_errors(&db.pool).await.unwrap();
    for (file, _, line) in bad {
        let at = format!("{file}:{line}:");
        assert!(
            errors.iter().any(|(f, m)| f == file && m.starts_with(&at)),
            "{at} in {errors:?}"
        );
    }
    let run = trigger(&db.pool, "z_good", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "z_good", &run, Duration::from_secs(30)).await,
        "success"
    );
    engine.stop().await;
}

/// NUL bytes anywhere in a request, and bytes that are not UTF-8: a 400 that says why, never
/// a 500 (Postgres cannot store a NUL in text; the error used to surface as a server error).
#[tokio::test]
async fn nul_bytes_and_bad_utf8_are_400_with_a_message() {
    let app = TestApp::spawn().await;
    install(app.pool(), &[sample_dag("etl", &[])]).await;
    let token = app.token().await;
    let api = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&token)
    };
    let check = |what: &str, status: u16, body: &str, needle: &str| {
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains(needle), "{what}: {body}");
    };
    for path in [
        "/api/v2/dags/et%00l",
        "/api/v2/dags?dag_id_pattern=%00",
        "/api/v2/dags/etl/dagRuns/r%00/taskInstances",
        "/api/v2/importErrors?limit=1&x%00=1",
    ] {
        let res = api(reqwest::Method::GET, path).send().await.unwrap();
        let status = res.status().as_u16();
        check(path, status, &res.text().await.unwrap(), "NUL byte");
    }
    let res = api(reqwest::Method::GET, "/api/v2/dags/%FF%FE")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    check("bad UTF-8", status, &res.text().await.unwrap(), "UTF-8");
    // In JSON bodies: conf and note.
    for body in [
        serde_json::json!({"conf": {"k": "a\u{0}b"}}),
        serde_json::json!({"note": "a\u{0}b"}),
        serde_json::json!({"conf": {"k\u{0}": 1}}),
    ] {
        let res = api(reqwest::Method::POST, "/api/v2/dags/etl/dagRuns")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        check(&body.to_string(), status, &res.text().await.unwrap(), "NUL");
    }
    // In credentials: basic auth, the token endpoint, the login form.
    let res = app
        .client
        .get(app.url("/api/v2/dags"))
        .basic_auth("ali\u{0}ce", Some("x"))
        .send()
        .await
        .unwrap();
    assert!(res.status().as_u16() < 500, "basic auth: {}", res.status());
    let res = app
        .client
        .post(app.url("/auth/token"))
        .json(&serde_json::json!({"username": "a\u{0}", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().as_u16() < 500, "token: {}", res.status());
    let res = app.post_login("a\u{0}", "x", "/dags").await;
    assert!(res.status().as_u16() < 500, "login form: {}", res.status());
    // Pages: the error page, not a 500.
    let s = app.login().await;
    let (status, doc) = app.page(&s, "/dags/et%00l").await;
    assert_eq!(status, 400);
    assert!(doc.html().contains("NUL byte"));
    let (status, _) = app.page(&s, "/dags?q=%00").await;
    assert_eq!(status, 400);
}

/// Run ids as Airflow's default `allowed_run_id_pattern` allows them, at most 250 characters.
/// An empty one means "choose one", as in Airflow (`dag_run_id or generate_run_id(...)`).
#[tokio::test]
async fn run_ids_are_checked_like_airflows() {
    let app = TestApp::spawn().await;
    install(app.pool(), &[sample_dag("etl", &[])]).await;
    let token = app.token().await;
    let trigger = |run_id: Value| {
        app.client
            .post(app.url("/api/v2/dags/etl/dagRuns"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "dag_run_id": run_id }))
            .send()
    };
    let long = "a".repeat(10_000);
    for (run_id, needle) in [
        (long.as_str(), "at most 250 characters"),
        ("a b", "allowed_run_id_pattern"),
        ("a/b", "allowed_run_id_pattern"),
        ("a\u{0}b", "allowed_run_id_pattern"),
        ("a..b", "`..`"),
    ] {
        let res = trigger(Value::from(run_id)).await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 400, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{detail}");
        assert!(detail.len() < 400, "the id is not echoed back: {detail}");
    }
    let res = trigger(Value::from("a".repeat(250))).await.unwrap();
    assert_eq!(res.status(), 200);
    let res = trigger(Value::from("")).await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let id = body["dag_run_id"].as_str().unwrap();
    assert!(id.starts_with("manual__"), "{body}");
}

/// End to end through the binary, as users run it: `DATABASE_URL` carries a password (trust
/// auth ignores it, so the test server accepts it). The bash task neither sees the URL nor a
/// copy of it, and its echo of the password is masked in the printed log.
#[tokio::test]
async fn a_bash_task_cannot_see_the_database_url_and_its_password_is_masked() {
    let db = fresh_db().await;
    let url = db.url.replacen("postgres@", "postgres:hunter2secret@", 1);
    assert!(url.contains(":hunter2secret@"), "{url}");
    let dir = empty_folder();
    std::fs::write(
        dir.path().join("peek.yaml"),
        format!(
            "{HEAD}dag_id: peek\ntasks:\n  - id: t\n    uses: updraft.bash\n    with:\n      bash_command: \
             'echo \"url=${{DATABASE_URL:-unset}} copy=${{DB_COPY:-unset}} team=$TEAM\"; echo pw=hunter2secret'\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["dags", "test", "peek"])
        .env("DATABASE_URL", &url)
        .env("DB_COPY", &url)
        .env("TEAM", "data")
        .env("UPDRAFT_DAGS_FOLDER", dir.path())
        .env("UPDRAFT_LOG", "warn")
        .env(
            "UPDRAFT_HOME",
            std::env::temp_dir().join("updraft-cli-test-home"),
        )
        .output()
        .expect("run updraft");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("url=unset copy=unset team=data"), "{text}");
    assert!(text.contains("pw=***"), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
}
