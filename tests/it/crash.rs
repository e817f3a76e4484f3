//! Crashes with real processes: a worker killed with SIGKILL mid-task loses nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

fn spawn_updraft(db_url: &str, args: &[&str], dags: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("UPDRAFT_DAGS_FOLDER", dags)
        .env("UPDRAFT_LEASE_TTL", "2s")
        .env("UPDRAFT_POLL_INTERVAL", "200ms")
        .env("UPDRAFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start updraft")
}

fn sigkill(child: &mut Child) {
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[tokio::test]
async fn worker_killed_mid_task_is_retried_after_its_lease_expires() {
    let db = fresh_db().await;
    let mut slow = bash("slow", "echo started; sleep 3; echo finished", &[]);
    slow.retries = 1;
    install(
        &db.pool,
        &[dag("crashy", vec![slow, empty("after", &["slow"])])],
    )
    .await;
    let folder = empty_folder();
    // A scheduler in this process; the first worker is a child process we will kill.
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    let mut child = spawn_updraft(&db.url, &["worker"], folder.path());
    let run_id = trigger(&db.pool, "crashy", serde_json::json!({})).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = states(&db.pool, "crashy", &run_id).await;
        if s.get("slow").map(|(st, _)| st.as_str()) == Some("running") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child worker never claimed the task: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigkill(&mut child);

    let killed_at = std::time::Instant::now();
    let mut settings = fast_settings(folder.path());
    settings.lease_ttl = updraft::dag::Duration::from_secs(2);
    let worker = Engine::start(&db.pool, settings, 0, 1);
    assert_eq!(
        wait_run(&db.pool, "crashy", &run_id, Duration::from_secs(40)).await,
        "success"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(20),
        "recovery took {:?}",
        killed_at.elapsed()
    );
    worker.stop().await;
    scheduler.stop().await;

    let s = states(&db.pool, "crashy", &run_id).await;
    assert_eq!(
        s["slow"],
        ("success".into(), 2),
        "the killed try counts as failed; the retry succeeds"
    );
    assert_eq!(s["after"].0, "success");
    let successes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM task_logs WHERE line = 'Marking task as SUCCESS'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(successes, 2, "slow once and after once");
    let reaped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_logs WHERE try_number = 1 AND line LIKE '%lease expired%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(reaped, 1, "the reaper says why try 1 failed");
}

/// Sends SIGTERM to a worker and waits for it to exit.
async fn terminate(mut child: Child) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap()
}

fn spawn_worker_with_grace(db_url: &str, dags: &std::path::Path, grace: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .arg("worker")
        .env("DATABASE_URL", db_url)
        .env("UPDRAFT_DAGS_FOLDER", dags)
        .env("UPDRAFT_SHUTDOWN_GRACE", grace)
        .env("UPDRAFT_POLL_INTERVAL", "200ms")
        .env("UPDRAFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start updraft worker")
}

async fn wait_running(pool: &sqlx::PgPool, dag_id: &str, run_id: &str, task: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while states(pool, dag_id, run_id)
        .await
        .get(task)
        .map(|(s, _)| s.as_str())
        != Some("running")
    {
        assert!(std::time::Instant::now() < deadline, "{task} never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_a_running_task_finish_within_the_grace_period() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag(
            "graceful",
            vec![bash("work", "sleep 1; echo done", &[])],
        )],
    )
    .await;
    let folder = empty_folder();
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    let child = spawn_worker_with_grace(&db.url, folder.path(), "30s");
    let run_id = trigger(&db.pool, "graceful", serde_json::json!({})).await;
    wait_running(&db.pool, "graceful", &run_id, "work").await;
    let status = terminate(child).await;
    assert!(status.success(), "the worker exits cleanly: {status:?}");
    assert_eq!(
        wait_run(&db.pool, "graceful", &run_id, Duration::from_secs(5)).await,
        "success"
    );
    assert_eq!(
        states(&db.pool, "graceful", &run_id).await["work"],
        ("success".into(), 1)
    );
    scheduler.stop().await;
}

#[tokio::test]
async fn past_the_grace_period_the_task_is_handed_back_untried() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag("handback", vec![bash("work", "sleep 30", &[])])],
    )
    .await;
    let folder = empty_folder();
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    let child = spawn_worker_with_grace(&db.url, folder.path(), "500ms");
    let run_id = trigger(&db.pool, "handback", serde_json::json!({})).await;
    wait_running(&db.pool, "handback", &run_id, "work").await;
    let status = terminate(child).await;
    assert!(status.success(), "{status:?}");
    // Back in the queue, with the interrupted try not counted against its retries.
    assert_eq!(
        states(&db.pool, "handback", &run_id).await["work"],
        ("queued".into(), 0)
    );
    let lines: Vec<String> = sqlx::query_scalar("SELECT line FROM task_logs")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("back to the queue")),
        "{lines:?}"
    );
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_worker_killed_mid_batch_then_retried_writes_every_record_exactly_once() {
    use updraft::dag::{Arg, OperatorName, Task, TaskId};
    use updraft::operators::kafka::EmbeddedKafka;

    let db = fresh_db().await;
    let kafka = EmbeddedKafka::start(3).unwrap();
    let ids = crate::pipeline::publish(&kafka, "users_created", 20_000).await;
    let sink = Task {
        args: Arg::Map(vec![
            ("batch_size".into(), Arg::Value(250.into())),
            (
                "properties".into(),
                Arg::Value(serde_json::json!({"session.timeout.ms": "2000"})),
            ),
        ]),
        retries: 2,
        retry_delay: updraft::dag::Duration::ZERO,
        ..Task::new(TaskId::parse("sink_users").unwrap(), OperatorName::Sink)
    };
    install(&db.pool, &[dag("sink_crash", vec![sink])]).await;
    let folder = empty_folder();
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    // The sink runs in a child worker process that we SIGKILL mid-batch.
    let mut child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .arg("worker")
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers())
        .env("SINK_POSTGRES_URL", &db.url)
        .env("UPDRAFT_LEASE_TTL", "2s")
        .env("UPDRAFT_POLL_INTERVAL", "200ms")
        .env("UPDRAFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_id = trigger(&db.pool, "sink_crash", serde_json::json!({})).await;
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM spark_streams.created_users")
            .fetch_one(&pool)
            .await
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count(db.pool.clone()).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the child's sink never wrote a row"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sigkill(&mut child);
    let at_kill = count(db.pool.clone()).await;
    assert!(
        at_kill < 20_000,
        "the kill should land mid-run, saw {at_kill} rows"
    );

    let mut settings = fast_settings(folder.path());
    settings.operator_env.kafka_bootstrap_servers = Some(kafka.bootstrap_servers());
    settings.operator_env.sink_postgres_url = Some(db.url.clone());
    let worker = Engine::start(&db.pool, settings, 0, 1);
    assert_eq!(
        wait_run(&db.pool, "sink_crash", &run_id, Duration::from_secs(90)).await,
        "success"
    );
    worker.stop().await;
    scheduler.stop().await;
    let s = states(&db.pool, "sink_crash", &run_id).await;
    assert!(s["sink_users"].1 >= 2, "the killed try was retried: {s:?}");
    crate::pipeline::assert_table_holds_exactly(&db.pool, &ids).await;
}

fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

/// A SIGKILLed worker's command dies with it, grandchildren included, so a retry elsewhere
/// never runs beside the old try; its scratch directory goes when the next worker starts.
#[tokio::test]
async fn a_killed_workers_commands_die_with_it() {
    let db = fresh_db().await;
    let marks = tempfile::tempdir().unwrap();
    let pids = marks.path().join("pids");
    let command = format!(
        "sleep 300 & echo $! >> {p}; echo $$ >> {p}; echo $PWD > {p}.cwd; wait",
        p = pids.display()
    );
    install(
        &db.pool,
        &[dag("doomed", vec![bash("long", &command, &[])])],
    )
    .await;
    let folder = empty_folder();
    let mut child = spawn_updraft(&db.url, &["worker"], folder.path());
    trigger(&db.pool, "doomed", serde_json::json!({})).await;
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let started: Vec<i32> = loop {
        let text = std::fs::read_to_string(&pids).unwrap_or_default();
        let found: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if found.len() == 2 {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(started.iter().all(|p| process_alive(*p)));
    sigkill(&mut child);

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while started.iter().any(|p| process_alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed worker's command and its child kept running: {started:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The scratch directory the command ran in is removed by the next worker on this machine.
    let cwd = std::fs::read_to_string(pids.with_extension("cwd")).unwrap();
    // (Another test's worker starting meanwhile may already have removed it.)
    let cwd = std::path::PathBuf::from(cwd.trim());
    let mut next = spawn_updraft(&db.url, &["worker"], folder.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cwd.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead worker's scratch directory was left behind: {}",
            cwd.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigkill(&mut next);
    scheduler.stop().await;
}

/// A worker's terminal says when a try fails and when its run fails, with where to look.
#[tokio::test]
async fn a_failed_try_and_its_run_are_logged_with_where_to_look() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag("fails", vec![bash("boom", "echo nope; exit 3", &[])])],
    )
    .await;
    let folder = empty_folder();
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["worker"])
        .env("DATABASE_URL", &db.url)
        .env("UPDRAFT_DAGS_FOLDER", folder.path())
        .env("UPDRAFT_POLL_INTERVAL", "200ms")
        .env("UPDRAFT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(out.reopen().unwrap()))
        .spawn()
        .expect("start updraft");
    let run = trigger(&db.pool, "fails", serde_json::json!({})).await;
    let scheduler = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    assert_eq!(
        wait_run(&db.pool, "fails", &run, Duration::from_secs(60)).await,
        "failed"
    );
    // The run's failure is logged right after it is recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(out.path()).unwrap();
        if text.contains("run ") && text.contains(" failed") && text.contains("page=") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = terminate(child).await;
    scheduler.stop().await;
    assert!(text.contains("exit code 3"), "{text}");
    assert!(text.contains("no retries left"), "{text}");
    assert!(
        text.contains(&format!("/dags/fails/runs/{run}/tasks/boom/logs/1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("run {run} of DAG fails failed")),
        "{text}"
    );
}
