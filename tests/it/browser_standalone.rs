//! A person's first session, in a real browser, against the real binary: start `updraft
//! standalone` on the shipped `dags/` folder (the data source pointed at the local
//! randomuser.me stand-in; Kafka is the embedded broker, the sink is standalone's own
//! database), open the URL it prints, log in with the password it prints, trigger
//! `user_automation`, watch it succeed without reloading, and read its task logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;
use updraft::operators::fetch::stub::RandomUserStub;

use crate::browser::{browser, click, shot, start_driver, text, type_into, wait_text, PATIENCE};
use crate::helpers::fresh_db;
use crate::pipeline::fixture;

struct Standalone(Child);

impl Drop for Standalone {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child; standalone shuts down gracefully on it.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// What standalone printed for people: the URL and the admin password.
fn read_banner(child: &mut Child) -> (String, String) {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut url = None;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next() {
        let line = line.expect("read standalone's output");
        if let Some(u) = line.trim().strip_prefix("Web UI:") {
            url = Some(u.trim().to_string());
        }
        if let Some(login) = line.trim().strip_prefix("Login:") {
            let password = login
                .trim()
                .strip_prefix("admin / ")
                .and_then(|rest| rest.split_whitespace().next())
                .expect("a first start prints the generated admin password")
                .to_string();
            // Keep reading, so standalone never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (url.expect("the URL comes before the login line"), password);
        }
    }
    panic!("standalone exited without printing its URL and password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_user_automation_from_standalone_in_the_browser() {
    let driver = start_driver().await;
    let db = fresh_db().await;
    let stub = RandomUserStub::start(&fixture()).await.unwrap();
    let dags = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dags");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dags.path().join(entry.file_name())).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    // standalone's own log, to read when something goes wrong.
    let log_path = crate::browser::output_dir().join("standalone.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .arg("standalone")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("UPDRAFT_DAGS_FOLDER", dags.path())
        .env("UPDRAFT_HOME", home.path())
        .env("UPDRAFT_WEB_PORT", port.to_string())
        .env("DATASOURCE_URL", stub.url())
        .env("UPDRAFT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .spawn()
        .expect("start updraft standalone");
    let (child, url, password) = tokio::task::spawn_blocking(move || {
        let (url, password) = read_banner(&mut child);
        (child, url, password)
    })
    .await
    .unwrap();
    let _standalone = Standalone(child);
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let c = browser(&driver).await;

    // The printed URL leads to the login form; the printed password works.
    c.goto(&url).await.unwrap();
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#login-form"))
        .await
        .unwrap();
    shot(&c, "standalone-01-login").await;
    type_into(&c, "#username", "admin").await;
    type_into(&c, "#password", &password).await;
    click(&c, "#login-form button").await;
    wait_text(&c, "h1", |t| t == "DAGs").await;

    // user_automation is on the list, from the shipped file.
    let row = "tr[data-dag-id='user_automation']";
    let deadline = std::time::Instant::now() + PATIENCE;
    while text(&c, &format!("{row} .dag-link")).await != "user_automation" {
        assert!(
            std::time::Instant::now() < deadline,
            "user_automation never appeared"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.refresh().await.unwrap();
    }
    shot(&c, "standalone-02-dag-list").await;

    // Trigger it, and watch the run page reach success on its own.
    click(&c, &format!("{row} a.trigger")).await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#trigger-submit"))
        .await
        .unwrap();
    click(&c, "#trigger-submit").await;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#run-state"))
        .await
        .unwrap();
    c.execute("window.__noReload = 7;", vec![]).await.unwrap();
    wait_text(&c, "#run-state", |t| t == "success" || t == "failed").await;
    shot(&c, "standalone-03-run").await;
    assert_eq!(text(&c, "#run-state").await, "success");
    assert_eq!(
        c.execute("return window.__noReload;", vec![])
            .await
            .unwrap(),
        json!(7),
        "no reload"
    );
    for task in ["fetch_users", "publish_users", "sink_users"] {
        assert_eq!(
            text(&c, &format!("tr[data-task-id='{task}'] .task-state")).await,
            "success",
            "{task}"
        );
    }

    // Each task's log says what it did.
    let run_url = c.current_url().await.unwrap().to_string();
    for (task, expect) in [
        ("fetch_users", "Fetched 50 results"),
        (
            "publish_users",
            "Published 50 records to topic `users_created`, all acknowledged",
        ),
        ("sink_users", "Wrote "),
    ] {
        c.goto(&run_url).await.unwrap();
        click(&c, &format!("tr[data-task-id='{task}'] a.task-link")).await;
        c.wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("#log"))
            .await
            .unwrap();
        wait_text(&c, "#log", |t| {
            t.contains(expect) && t.contains("Marking task as SUCCESS")
        })
        .await;
        shot(&c, &format!("standalone-04-log-{task}")).await;
    }
    c.close().await.unwrap();

    // And the rows are in the sink table, in standalone's own database.
    let rows: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT id) FROM spark_streams.created_users")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        rows >= 50,
        "the manual run's 50 users are in the table, got {rows}"
    );
}
