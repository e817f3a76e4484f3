//! A real browser end to end: headless Chromium driven over WebDriver (chromedriver started
//! here on a free port) against the web server plus the scheduler and a worker running in
//! this process. Screenshots of every page visited go to `$UPDRAFT_TEST_OUTPUT` or
//! `target/test-output/browser/`.
//!
//! The DAG and the broken file are real YAML files in a DAGs folder that the in-process DAG
//! processor watches, as `updraft standalone` runs it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{empty_folder, fast_settings, Engine};
use crate::web_support::{TestApp, PASSWORD};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

pub(crate) fn output_dir() -> PathBuf {
    let dir = std::env::var_os("UPDRAFT_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output"))
        .join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port, killed when dropped.
pub(crate) struct Driver {
    _child: tokio::process::Child,
    url: String,
    _profile: tempfile::TempDir,
}

pub(crate) async fn start_driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the browser test needs Chromium and chromedriver: apt-get install -y chromium chromium-driver"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        // A zone away from UTC, so the UI's local-time switch visibly changes times.
        .env("TZ", "Asia/Kolkata")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start listening on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver {
        _child: child,
        url,
        _profile: tempfile::tempdir().unwrap(),
    }
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    let profile = driver._profile.path().display().to_string();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage", "--no-first-run", format!("--user-data-dir={profile}"),
                     "--window-size=1366,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("connect to chromedriver")
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(output_dir().join(format!("{name}.png")), png).unwrap();
}

/// Clicks the element `css` selects.
pub(crate) async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `keys` into the element `css` selects.
pub(crate) async fn type_into(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

pub(crate) async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls until `css`'s text satisfies `ok`, without reloading the page.
pub(crate) async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let t = text(c, css).await;
        if ok(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` still shows {t:?} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A fast stand-in for the pipeline's `user_automation`: three bash tasks, about 4 s.
const USER_AUTOMATION: &str = r#"dag_id: user_automation
description: Fetch users, process them, report
schedule: null
catchup: false
tags: [users, example]
params:
  who: nobody
tasks:
  - id: fetch_users
    uses: airflow.providers.standard.operators.bash.BashOperator
    with:
      bash_command: {$t: "echo hello {{ dag_run.conf.who }}; sleep 1; echo fetched 3 users"}
  - id: process_users
    needs: [fetch_users]
    uses: airflow.providers.standard.operators.bash.BashOperator
    with:
      bash_command: for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done
  - id: report
    needs: [process_users]
    uses: airflow.providers.standard.operators.bash.BashOperator
    with:
      bash_command: echo report done
"#;

const BROKEN: &str = "dag_id: broken_dag\ntasks:\n  - id: a\n    uses: nope.NoSuchOperator\n";

/// Loads `url` again until `css`'s text satisfies `ok` (for changes made outside the page).
async fn reload_until(c: &Client, url: &str, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        c.goto(url).await.unwrap();
        let t = text(c, css).await;
        if ok(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` on {url} still shows {t:?} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn browser_login_trigger_watch_logs_pause_and_import_errors() {
    let driver = start_driver().await;
    let app = TestApp::spawn().await;
    let folder = empty_folder();
    std::fs::write(folder.path().join("user_automation.yaml"), USER_AUTOMATION).unwrap();
    let settings = updraft::settings::EngineSettings {
        process_dags_folder: true,
        ..fast_settings(folder.path())
    };
    let engine = Engine::start(app.pool(), settings, 1, 1);
    let c = browser(&driver).await;

    // Login: any page sends us to the form first.
    c.goto(&app.url("/dags")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/login"));
    shot(&c, "01-login").await;
    type_into(&c, "#username", "alice").await;
    type_into(&c, "#password", "wrong-password").await;
    click(&c, "#login-form button").await;
    wait_text(&c, "#login-error", |t| {
        t.contains("Wrong username or password")
    })
    .await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "#login-form button").await;

    // The DAG list shows it once the DAG processor has loaded the folder.
    let row = "tr[data-dag-id='user_automation']";
    wait_text(&c, "h1", |t| t == "DAGs").await;
    reload_until(&c, &app.url("/dags"), &format!("{row} .dag-link"), |t| {
        t == "user_automation"
    })
    .await;
    assert_eq!(
        text(&c, &format!("{row} .desc")).await,
        "Fetch users, process them, report"
    );
    shot(&c, "02-dag-list").await;

    // Trigger with a conf.
    click(&c, &format!("{row} a.trigger")).await;
    let conf = c
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#conf"))
        .await
        .unwrap();
    conf.send_keys(r#"{"who": "browser"}"#).await.unwrap();
    shot(&c, "03-trigger-form").await;
    click(&c, "#trigger-submit").await;

    // The run page updates itself: mark the window, and the mark must survive to the end.
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#run-state"))
        .await
        .unwrap();
    c.execute("window.__noReload = 42;", vec![]).await.unwrap();
    let run_url = c.current_url().await.unwrap().to_string();
    wait_text(&c, "tr[data-task-id='process_users'] .task-state", |t| {
        t == "running"
    })
    .await;
    shot(&c, "04-run-running").await;

    // Open the running task's log: lines arrive over SSE until the task ends.
    click(&c, "tr[data-task-id='process_users'] a.task-link").await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#log"))
        .await
        .unwrap();
    let tailing = c
        .execute(
            "return document.getElementById('log').hasAttribute('data-stream');",
            vec![],
        )
        .await
        .unwrap();
    wait_text(&c, "#log", |t| t.contains("tick 6")).await;
    if tailing == json!(true) {
        // Lines came over SSE; the stream ends by itself when the task does.
        wait_text(&c, "#tailing", |t| t == "The task has ended.").await;
        assert_eq!(
            text(&c, "#ti-state").await,
            "success",
            "the badge follows the end event"
        );
    } else {
        println!("NOTICE: the task ended before its log page opened; the SSE tail was not exercised this time");
    }
    shot(&c, "05-task-log-live").await;

    c.goto(&run_url).await.unwrap();
    c.execute("window.__noReload = 42;", vec![]).await.unwrap();
    wait_text(&c, "#run-state", |t| t == "success").await;
    let mark = c
        .execute("return window.__noReload;", vec![])
        .await
        .unwrap();
    assert_eq!(
        mark,
        json!(42),
        "the run page reached success without a reload"
    );
    assert_eq!(
        text(&c, "tr[data-task-id='report'] .task-state").await,
        "success"
    );
    // Times carry their zone: UTC until the user switches to local time, which is remembered.
    let started = text(&c, "dl.facts dd:nth-of-type(3)").await;
    assert!(started.ends_with(" UTC"), "{started}");
    click(&c, "#tz-switch").await;
    wait_text(&c, "#tz-switch", |t| t == "Times: local").await;
    let local = text(&c, "dl.facts dd:nth-of-type(3)").await;
    assert!(
        local.ends_with("GMT+5:30") && local != started,
        "{started} → {local}"
    );
    c.goto(&run_url).await.unwrap();
    wait_text(&c, "dl.facts dd:nth-of-type(3)", |t| {
        t.ends_with("GMT+5:30")
    })
    .await;
    click(&c, "#tz-switch").await;
    wait_text(&c, "#tz-switch", |t| t == "Times: UTC").await;
    c.execute("window.__noReload = 42;", vec![]).await.unwrap();
    // Under the Content-Security-Policy the stylesheet applies (Airflow's success green) and
    // the timeline bars, SVG attributes rather than inline styles, have a width.
    let green = c
        .execute(
            "return getComputedStyle(document.querySelector('#run-state .state')).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(green, json!("rgb(0, 128, 0)"));
    let widths = c
        .execute(
            "return Array.from(document.querySelectorAll('.task-row rect.gantt'), r => r.getBoundingClientRect().width);",
            vec![],
        )
        .await
        .unwrap();
    let widths = widths.as_array().unwrap();
    assert_eq!(widths.len(), 3, "{widths:?}");
    assert!(
        widths.iter().all(|w| w.as_f64().unwrap() >= 1.0),
        "{widths:?}"
    );
    shot(&c, "06-run-success").await;

    // The first task's log has the conf rendered into its command.
    click(&c, "tr[data-task-id='fetch_users'] a.task-link").await;
    wait_text(&c, "#log", |t| {
        t.contains("hello browser") && t.contains("fetched 3 users")
    })
    .await;
    shot(&c, "07-task-log").await;

    // DAG detail: graph coloured by the run, grid.
    c.goto(&app.url("/dags/user_automation")).await.unwrap();
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("svg#graph"))
        .await
        .unwrap();
    let green = c
        .execute(
            "return document.querySelectorAll('svg#graph rect.state-success').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(green, json!(3));
    shot(&c, "08-dag-detail").await;

    // Pause and unpause from the list.
    c.goto(&app.url("/dags")).await.unwrap();
    click(&c, &format!("{row} .toggle")).await;
    wait_text(&c, &format!("{row} .toggle"), |t| t == "Paused").await;
    assert!(sqlx::query_scalar::<_, bool>("SELECT is_paused FROM dags")
        .fetch_one(app.pool())
        .await
        .unwrap());
    shot(&c, "09-paused").await;
    click(&c, &format!("{row} .toggle")).await;
    wait_text(&c, &format!("{row} .toggle"), |t| t == "Active").await;

    // A broken file dropped into the folder shows up.
    std::fs::write(folder.path().join("broken_dag.yaml"), BROKEN).unwrap();
    reload_until(&c, &app.url("/dags"), "#import-error-banner", |t| {
        t.contains("1 file(s) failed to load")
    })
    .await;
    click(&c, "#import-error-banner").await;
    wait_text(&c, ".import-error .file", |t| t == "broken_dag.yaml").await;
    let messages = text(&c, ".import-error .messages").await;
    assert!(
        messages.contains("broken_dag.yaml") && messages.contains("nope.NoSuchOperator"),
        "{messages}"
    );
    shot(&c, "10-import-errors").await;

    c.close().await.unwrap();
    engine.stop().await;
}
