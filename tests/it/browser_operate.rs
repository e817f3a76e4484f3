//! In a real browser (headless Chromium): a failed run is recovered from its page in two
//! clicks (clear the failed tasks, confirm) and runs to success; a failed task is marked
//! success with its downstream.

use std::time::Duration;

use fantoccini::Locator;

use crate::browser::{browser, click, shot, start_driver, text, type_into, wait_text, PATIENCE};
use crate::helpers::{bash, dag, empty_folder, fast_settings, install, trigger, wait_run, Engine};
use crate::web_support::{TestApp, PASSWORD};

#[tokio::test]
async fn browser_clears_a_failed_run_and_marks_a_task_success() {
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    let d = dag(
        "recover",
        vec![
            bash("flaky", &format!("test -f {}", flag.display()), &[]),
            bash("report", "echo report", &["flaky"]),
        ],
    );
    install(app.pool(), &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(app.pool(), fast_settings(folder.path()), 1, 1);
    let limit = Duration::from_secs(30);
    let first = trigger(app.pool(), "recover", serde_json::json!({})).await;
    assert_eq!(
        wait_run(app.pool(), "recover", &first, limit).await,
        "failed"
    );

    let c = browser(&driver).await;
    c.goto(&app.url("/login")).await.unwrap();
    type_into(&c, "#username", "alice").await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "#login-form button").await;
    wait_text(&c, "h1", |t| t == "DAGs").await;

    // The source is fixed; two clicks: "Clear failed tasks", then "Confirm".
    std::fs::write(&flag, "").unwrap();
    let run_url = app.url(&format!("/dags/recover/runs/{first}"));
    c.goto(&run_url).await.unwrap();
    wait_text(&c, "#run-state", |t| t == "failed").await;
    click(&c, "#run-clear-failed").await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#confirm-list"))
        .await
        .unwrap();
    let listed = text(&c, "#confirm-list").await;
    assert!(
        listed.contains("flaky") && listed.contains("report"),
        "{listed}"
    );
    shot(&c, "operate-01-confirm-clear").await;
    click(&c, "#confirm-submit").await;
    // Back on the run page, which follows the run until it ends.
    wait_text(&c, "#run-state", |t| t == "success").await;
    shot(&c, "operate-02-recovered").await;

    // A second failure: mark the failed task success (with its downstream) instead.
    std::fs::remove_file(&flag).unwrap();
    let second = trigger(app.pool(), "recover", serde_json::json!({})).await;
    assert_eq!(
        wait_run(app.pool(), "recover", &second, limit).await,
        "failed"
    );
    c.goto(&app.url(&format!("/dags/recover/runs/{second}")))
        .await
        .unwrap();
    click(&c, "tr[data-task-id='flaky'] .task-mark-success").await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#confirm-list"))
        .await
        .unwrap();
    click(&c, "#confirm-submit").await;
    wait_text(&c, "#run-state", |t| t == "success").await;
    assert_eq!(
        text(&c, "tr[data-task-id='report'] .task-state").await,
        "success"
    );
    shot(&c, "operate-03-marked").await;
    c.close().await.unwrap();
    engine.stop().await;
}
