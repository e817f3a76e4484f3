//! The `updraft` binary as users run it.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::helpers::*;

fn updraft(db_url: Option<&str>, dags: &Path, args: &[&str]) -> Output {
    let mut cmd = updraft_bin();
    cmd.args(args).env("UPDRAFT_DAGS_FOLDER", dags);
    if let Some(url) = db_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run updraft")
}

fn repo(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn validate_prints_every_error_and_exits_non_zero() {
    let out = updraft(None, &repo("tests/dags/broken"), &["dags", "validate"]);
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let files = std::fs::read_dir(repo("tests/dags/broken"))
        .unwrap()
        .count();
    assert_eq!(
        t.lines().filter(|l| l.starts_with("error: ")).count(),
        files,
        "{t}"
    );
    assert!(t.contains("cycle.yaml:"), "{t}");
    let ok = updraft(None, &repo("dags"), &["dags", "validate"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "the shipped DAGs are valid: {}",
        output_text(&ok)
    );
}

#[test]
fn commands_that_need_a_database_say_how_to_get_one() {
    let out = updraft(None, &repo("dags"), &["dags", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let t = output_text(&out);
    assert!(
        t.contains("DATABASE_URL") && t.contains("standalone"),
        "{t}"
    );
    let bad = updraft(
        Some("postgres://nobody@127.0.0.1:1/x"),
        &repo("dags"),
        &["dags", "list"],
    );
    assert!(
        output_text(&bad).contains("could not connect to Postgres"),
        "{}",
        output_text(&bad)
    );
}

#[tokio::test]
async fn trigger_wait_list_pause_and_logs() {
    let db = fresh_db().await;
    let dags = repo("dags");
    let engine = Engine::start(
        &db.pool,
        updraft::settings::EngineSettings {
            process_dags_folder: true,
            ..fast_settings(&dags)
        },
        1,
        1,
    );
    let pool = db.pool.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dags WHERE dag_id = 'hello_world'")
        .fetch_one(&pool)
        .await
        .unwrap()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "hello_world never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = db.url.clone();
    let dags2 = dags.clone();
    let out = tokio::task::spawn_blocking(move || {
        updraft(
            Some(&url),
            &dags2,
            &[
                "dags",
                "trigger",
                "hello_world",
                "--conf",
                r#"{"name": "cli"}"#,
                "--run-id",
                "from_cli",
                "--wait",
            ],
        )
    })
    .await
    .unwrap();
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("greet") && t.contains("finished: success"),
        "{t}"
    );

    let logs = updraft(
        Some(&db.url),
        &dags,
        &["tasks", "logs", "hello_world", "from_cli", "greet"],
    );
    assert!(
        output_text(&logs).contains("Hello, cli!"),
        "{}",
        output_text(&logs)
    );
    let missing = updraft(
        Some(&db.url),
        &dags,
        &[
            "tasks",
            "logs",
            "hello_world",
            "from_cli",
            "greet",
            "--try",
            "5",
        ],
    );
    assert_ne!(missing.status.code(), Some(0), "a try that does not exist");
    assert!(
        output_text(&missing).contains("has no try 5"),
        "{}",
        output_text(&missing)
    );
    let shout = updraft(
        Some(&db.url),
        &dags,
        &["tasks", "logs", "hello_world", "from_cli", "shout"],
    );
    assert!(
        output_text(&shout).contains("UPSTREAM SAID GREETED-CLI"),
        "xcom through env: {}",
        output_text(&shout)
    );

    let list = updraft(Some(&db.url), &dags, &["dags", "list"]);
    assert!(
        output_text(&list).contains("hello_world"),
        "{}",
        output_text(&list)
    );
    let paused = updraft(Some(&db.url), &dags, &["dags", "pause", "hello_world"]);
    assert_eq!(paused.status.code(), Some(0));
    let is_paused: bool =
        sqlx::query_scalar("SELECT is_paused FROM dags WHERE dag_id = 'hello_world'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(is_paused);
    updraft(Some(&db.url), &dags, &["dags", "unpause", "hello_world"]);
    let missing = updraft(Some(&db.url), &dags, &["dags", "pause", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(output_text(&missing).contains("not found"));
    let bad_conf = updraft(
        Some(&db.url),
        &dags,
        &["dags", "trigger", "hello_world", "--conf", "{oops"],
    );
    assert_eq!(bad_conf.status.code(), Some(1));
    assert!(
        output_text(&bad_conf).contains("not valid JSON"),
        "{}",
        output_text(&bad_conf)
    );
    engine.stop().await;
}

#[tokio::test]
async fn trigger_wait_exits_non_zero_when_the_run_fails() {
    let db = fresh_db().await;
    let folder = empty_folder();
    std::fs::write(
        folder.path().join("fails.yaml"),
        "dag_id: fails\ntasks:\n  - id: boom\n    uses: updraft.bash\n    with: {bash_command: 'echo about to fail; exit 3'}\n",
    )
    .unwrap();
    let engine = Engine::start(
        &db.pool,
        updraft::settings::EngineSettings {
            process_dags_folder: true,
            ..fast_settings(folder.path())
        },
        1,
        1,
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (url, dir) = (db.url.clone(), folder.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        updraft(Some(&url), &dir, &["dags", "trigger", "fails", "--wait"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("finished: failed"),
        "{}",
        output_text(&out)
    );
    engine.stop().await;
}

#[tokio::test]
async fn dags_test_runs_in_a_scratch_schema_and_prints_logs() {
    let db = fresh_db().await;
    let (url, dags) = (db.url.clone(), repo("dags"));
    let out = tokio::task::spawn_blocking(move || {
        updraft(
            Some(&url),
            &dags,
            &[
                "dags",
                "test",
                "hello_world",
                "--conf",
                r#"{"name":"tester"}"#,
            ],
        )
    })
    .await
    .unwrap();
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("Hello, tester!") && t.contains("===== count =====") && t.contains("line 3"),
        "{t}"
    );
    // Nothing of the scratch run is left in the database's public schema.
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'updraft_dags_test_%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(schemas, 0, "the scratch schema is dropped");
}

/// stderr is a pipe here, not a terminal: log lines come without colour codes.
#[tokio::test]
async fn logs_to_a_pipe_have_no_colour_codes() {
    let db = fresh_db().await;
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["db", "migrate"])
        .env("DATABASE_URL", &db.url)
        .env("UPDRAFT_LOG", "info")
        .env(
            "UPDRAFT_HOME",
            std::env::temp_dir().join("updraft-cli-test-home"),
        )
        .output()
        .expect("run updraft");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("INFO"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in piped logs: {err:?}"
    );
}

#[tokio::test]
async fn users_create_resets_a_password_keeps_the_role_and_updates_standalones_file() {
    let db = fresh_db().await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("passwords.json.generated");
    assert!(updraft::web::ensure_admin(&db.pool, &file)
        .await
        .unwrap()
        .is_some());
    updraft::web::create_user(&db.pool, "viv", "viewer-pass-1", "viewer")
        .await
        .unwrap();
    let run = |args: &[&str], pw: &str| {
        Command::new(env!("CARGO_BIN_EXE_updraft"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("UPDRAFT_HOME", home.path())
            .env("UPDRAFT_NEW_PASSWORD", pw)
            .env("UPDRAFT_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&["users", "create", "--username", "viv"], "viewer-pass-2");
    assert!(
        output_text(&out).contains("User viv (viewer) updated"),
        "{}",
        output_text(&out)
    );
    let out = run(
        &["users", "create", "--username", "admin"],
        "admin-pass-new",
    );
    assert!(
        output_text(&out).contains("Updated"),
        "{}",
        output_text(&out)
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored["admin"], "admin-pass-new");
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE username = 'viv'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(role, "viewer");
}
