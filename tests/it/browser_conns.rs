//! In a real browser: create a variable and a connection in the UI, trigger a DAG that uses
//! both, and see the connection's password masked in the task log (and nowhere on a page).

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

use crate::browser::{browser, click, shot, start_driver, text, type_into, wait_text, PATIENCE};
use crate::helpers::{empty_folder, fast_settings, Engine};
use crate::web_support::{TestApp, PASSWORD};
use updraft::core::fernet::{FernetKeys, Vault};

const DAG: &str = r#"dag_id: conn_demo
schedule: null
tasks:
  - id: use_both
    uses: airflow.providers.standard.operators.bash.BashOperator
    with:
      bash_command: {$t: "echo greeting={{ var.value.greeting }} host={{ conn.warehouse.host }} pw={{ conn.warehouse.password }}"}
"#;

const SECRET: &str = "Br0wser-S3cret";

async fn source(c: &Client) -> String {
    c.source().await.unwrap_or_default()
}

async fn goto_until(c: &Client, url: &str, css: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        c.goto(url).await.unwrap();
        if c.find(Locator::Css(css)).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{css} never appeared on {url}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn browser_variable_and_connection_reach_a_task_and_the_password_is_masked() {
    let driver = start_driver().await;
    let key = FernetKeys::generate_key();
    let vault = Vault::from_setting(Some(&key)).unwrap();
    let web_vault = vault.clone();
    let app = TestApp::spawn_with(move |s| s.vault = web_vault).await;
    let folder = empty_folder();
    std::fs::write(folder.path().join("conn_demo.yaml"), DAG).unwrap();
    let settings = updraft::settings::EngineSettings {
        process_dags_folder: true,
        vault,
        ..fast_settings(folder.path())
    };
    let engine = Engine::start(app.pool(), settings, 1, 1);
    let c = browser(&driver).await;

    c.goto(&app.url("/variables")).await.unwrap();
    type_into(&c, "#username", "alice").await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "#login-form button").await;
    wait_text(&c, "h1", |t| t == "Variables").await;

    // A variable.
    click(&c, "#new-variable").await;
    wait_text(&c, "h1", |t| t == "New variable").await;
    type_into(&c, "#variable-key", "greeting").await;
    type_into(&c, "#variable-value", "hello-from-the-ui").await;
    type_into(&c, "#variable-description", "said by the task").await;
    shot(&c, "conns-01-variable-form").await;
    click(&c, "#variable-save").await;
    wait_text(&c, "tr[data-key='greeting'] .value", |t| {
        t == "hello-from-the-ui"
    })
    .await;
    // A secret one is never shown.
    click(&c, "#new-variable").await;
    wait_text(&c, "h1", |t| t == "New variable").await;
    type_into(&c, "#variable-key", "api_token").await;
    type_into(&c, "#variable-value", "tok-never-shown").await;
    click(&c, "#variable-save").await;
    wait_text(&c, "tr[data-key='api_token'] .value", |t| t == "***").await;
    assert!(!source(&c).await.contains("tok-never-shown"));
    shot(&c, "conns-02-variables").await;

    // A connection.
    c.goto(&app.url("/connections")).await.unwrap();
    click(&c, "#new-connection").await;
    wait_text(&c, "h1", |t| t == "New connection").await;
    type_into(&c, "#conn-id", "warehouse").await;
    let ty = c.find(Locator::Css("#conn-type")).await.unwrap();
    ty.clear().await.unwrap();
    ty.send_keys("postgres").await.unwrap();
    type_into(&c, "#conn-host", "wh.example.com").await;
    type_into(&c, "#conn-port", "5432").await;
    type_into(&c, "#conn-login", "etl").await;
    type_into(&c, "#conn-password", SECRET).await;
    shot(&c, "conns-03-connection-form").await;
    click(&c, "#connection-save").await;
    wait_text(&c, "tr[data-conn-id='warehouse']", |t| {
        t.contains("wh.example.com")
    })
    .await;
    assert!(!source(&c).await.contains(SECRET));
    // The edit form does not show the password back.
    click(&c, "tr[data-conn-id='warehouse'] a.edit").await;
    wait_text(&c, "h1", |t| t == "Edit connection").await;
    let pw = c.find(Locator::Css("#conn-password")).await.unwrap();
    assert_eq!(pw.prop("value").await.unwrap().unwrap_or_default(), "");
    assert!(!source(&c).await.contains(SECRET));
    shot(&c, "conns-04-connection-edit").await;
    // Saving the form unchanged keeps the password.
    click(&c, "#connection-save").await;
    wait_text(&c, "h1", |t| t == "Connections").await;

    // Trigger the DAG that uses both, and read the task's log.
    goto_until(&c, &app.url("/dags/conn_demo/trigger"), "#trigger-submit").await;
    click(&c, "#trigger-submit").await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#run-state"))
        .await
        .unwrap();
    wait_text(&c, "#run-state", |t| t == "success" || t == "failed").await;
    assert_eq!(text(&c, "#run-state").await, "success");
    click(&c, "tr[data-task-id='use_both'] a.task-link").await;
    let log = wait_text(&c, "#log", |t| t.contains("greeting=")).await;
    assert!(
        log.contains("greeting=hello-from-the-ui host=wh.example.com pw=***"),
        "{log}"
    );
    assert!(!source(&c).await.contains(SECRET));
    shot(&c, "conns-05-masked-log").await;

    // Pools: default_pool with its slots.
    c.goto(&app.url("/pools")).await.unwrap();
    wait_text(&c, "tr[data-pool='default_pool'] .slots", |t| t == "128").await;
    shot(&c, "conns-06-pools").await;

    c.close().await.unwrap();
    engine.stop().await;
    let stored: String = sqlx::query_scalar("SELECT string_agg(c::text, ' ') FROM connections c")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert!(
        !stored.contains(SECRET),
        "the password is encrypted at rest"
    );
}
