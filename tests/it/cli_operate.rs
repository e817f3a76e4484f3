//! `updraft tasks clear|mark` and `updraft runs mark|delete` as users run them.

use std::process::Output;

use crate::helpers::{dag, empty, fresh_db, install, output_text, updraft_bin};
use crate::web_support::{finish_run, set_task, start_run};

fn updraft(db_url: &str, args: &[&str]) -> Output {
    updraft_bin()
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("USER", "operator-olga")
        .output()
        .expect("run updraft")
}

async fn state(pool: &sqlx::PgPool, task: &str) -> String {
    sqlx::query_scalar("SELECT state FROM task_instances WHERE task_id = $1")
        .bind(task)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn tasks_clear_and_mark_and_runs_mark_and_delete() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag(
            "etl",
            vec![empty("a", &[]), empty("b", &["a"]), empty("c", &["b"])],
        )],
    )
    .await;
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some("r1".into()),
        ..Default::default()
    };
    updraft::db::runs::trigger(&db.pool, "etl", req)
        .await
        .unwrap();
    let pk = start_run(&db.pool, "etl", "r1", &["a", "b", "c"]).await;
    set_task(&db.pool, pk, "a", "success").await;
    set_task(&db.pool, pk, "b", "failed").await;
    set_task(&db.pool, pk, "c", "upstream_failed").await;
    finish_run(&db.pool, pk, "failed").await;
    let url = db.url.as_str();

    let out = updraft(
        url,
        &["tasks", "clear", "etl", "--only-failed", "--dry-run"],
    );
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("2 task instance(s) would be cleared"), "{t}");
    assert!(t.contains("upstream_failed"), "{t}");
    assert_eq!(
        state(&db.pool, "b").await,
        "failed",
        "a dry run changes nothing"
    );

    // No --yes and nobody at the terminal: nothing happens.
    let out = updraft(url, &["tasks", "clear", "etl", "-t", "^b$"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(output_text(&out).contains("Cancelled"));
    assert_eq!(state(&db.pool, "b").await, "failed");

    let out = updraft(url, &["tasks", "clear", "etl", "-t", "^b$", "-d", "-y"]);
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("Cleared 2 task instance(s) in 1 run(s)"), "{t}");
    assert_eq!(state(&db.pool, "b").await, "queued");
    assert_eq!(state(&db.pool, "c").await, "none");
    let run = updraft::db::runs::get(&db.pool, "etl", "r1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.state.as_str(), "running");

    let out = updraft(
        url,
        &["tasks", "mark", "etl", "r1", "b", "--state", "success"],
    );
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(state(&db.pool, "b").await, "success");
    assert_eq!(
        state(&db.pool, "c").await,
        "queued",
        "its downstream is released"
    );
    let out = updraft(
        url,
        &["tasks", "mark", "etl", "r1", "b", "--state", "running"],
    );
    assert_ne!(out.status.code(), Some(0));

    let out = updraft(
        url,
        &[
            "runs", "mark", "etl", "r1", "--state", "failed", "--note", "gave up",
        ],
    );
    let t = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("it is now failed"), "{t}");
    assert_eq!(state(&db.pool, "c").await, "skipped");

    let out = updraft(url, &["runs", "delete", "etl", "r1", "-y"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(updraft::db::runs::get(&db.pool, "etl", "r1")
        .await
        .unwrap()
        .is_none());

    let logged: Vec<(String, String, String)> =
        sqlx::query_as("SELECT event, owner, source FROM event_log ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let who = |e: &str| {
        (
            e.to_string(),
            "operator-olga".to_string(),
            "cli".to_string(),
        )
    };
    assert_eq!(
        logged,
        vec![who("clear"), who("mark"), who("mark"), who("delete")]
    );
}
