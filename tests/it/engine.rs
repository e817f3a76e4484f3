//! The engine end to end: scheduler and workers in this process against a real Postgres.

use std::time::Duration;

use crate::helpers::*;
use updraft::dag::{Arg, OperatorName, TaskId, TriggerRule};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn chain_passes_xcom_and_templates_and_stores_logs() {
    let db = fresh_db().await;
    let mut second = bash("second", "unused", &["first"]);
    second.args = Arg::Map(vec![
        (
            "bash_command".into(),
            Arg::Template("echo got-{{ params.word }}-{{ dag_run.conf.n }}-$UP".into()),
        ),
        (
            "env".into(),
            Arg::Map(vec![(
                "UP".into(),
                Arg::XCom {
                    task: TaskId::parse("first").unwrap(),
                    key: "return_value".into(),
                },
            )]),
        ),
    ]);
    let mut d = dag(
        "chain",
        vec![bash("first", "echo hello; echo from-first", &[]), second],
    );
    d.params.insert("word".into(), "default".into());
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(
        &db.pool,
        "chain",
        serde_json::json!({"n": 7, "word": "conf"}),
    )
    .await;
    assert_eq!(wait_run(&db.pool, "chain", &run_id, LIMIT).await, "success");
    engine.stop().await;

    let xcom: serde_json::Value =
        sqlx::query_scalar("SELECT value FROM xcom WHERE task_id = 'second'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(xcom, serde_json::json!("got-conf-7-from-first"));
    let lines: Vec<String> = sqlx::query_scalar(
        "SELECT l.line FROM task_logs l JOIN task_instances t ON t.id = l.ti_id WHERE t.task_id = 'first' ORDER BY l.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(lines.contains(&"hello".to_string()), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("Marking task as SUCCESS")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn retries_then_fails_and_propagates_by_trigger_rule() {
    let db = fresh_db().await;
    let mut flaky = bash("flaky", "exit 1", &[]);
    flaky.retries = 2;
    let mut all_done = empty("cleanup", &["flaky"]);
    all_done.trigger_rule = TriggerRule::AllDone;
    let mut on_fail = empty("alert", &["flaky"]);
    on_fail.trigger_rule = TriggerRule::OneFailed;
    let d = dag(
        "retrying",
        vec![
            flaky,
            empty("after", &["flaky"]),
            empty("after_after", &["after"]),
            all_done,
            on_fail,
        ],
    );
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "retrying", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "retrying", &run_id, LIMIT).await,
        "failed"
    );
    engine.stop().await;
    let s = states(&db.pool, "retrying", &run_id).await;
    assert_eq!(s["flaky"], ("failed".into(), 3), "one try plus two retries");
    assert_eq!(s["after"].0, "upstream_failed");
    assert_eq!(s["after_after"].0, "upstream_failed", "cascades");
    assert_eq!(s["cleanup"].0, "success");
    assert_eq!(s["alert"].0, "success");
    // Every try is kept for the timeline: two up_for_retry, then the failure.
    let run = updraft::db::runs::get(&db.pool, "retrying", &run_id)
        .await
        .unwrap()
        .unwrap();
    let tis = updraft::db::runs::task_states(&db.pool, run.id)
        .await
        .unwrap();
    let flaky_id = tis.iter().find(|t| t.task_id == "flaky").unwrap().id;
    let tries: Vec<(i32, String)> = updraft::db::runs::tries(&db.pool, run.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.ti_id == flaky_id && t.start_date.is_some() && t.end_date.is_some())
        .map(|t| (t.try_number, t.state.to_string()))
        .collect();
    assert_eq!(
        tries,
        vec![
            (1, "up_for_retry".to_string()),
            (2, "up_for_retry".to_string()),
            (3, "failed".to_string())
        ]
    );
}

#[tokio::test]
async fn skip_propagates_and_run_succeeds() {
    let db = fresh_db().await;
    let mut join = empty("join", &["skipper", "ok"]);
    join.trigger_rule = TriggerRule::NoneFailedMinOneSuccess;
    let d = dag(
        "skipping",
        vec![
            bash("skipper", "exit 99", &[]),
            bash("ok", "true", &[]),
            empty("after_skip", &["skipper"]),
            join,
        ],
    );
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "skipping", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "skipping", &run_id, LIMIT).await,
        "success"
    );
    engine.stop().await;
    let s = states(&db.pool, "skipping", &run_id).await;
    assert_eq!(s["skipper"].0, "skipped");
    assert_eq!(s["after_skip"].0, "skipped");
    assert_eq!(s["join"].0, "success");
}

#[tokio::test]
async fn execution_timeout_kills_the_whole_command_and_fails_the_try() {
    let db = fresh_db().await;
    // Two commands, so bash forks: `sleep` is a grandchild of the worker, holding stdout.
    let marker = format!(
        "{}.{}",
        20 + std::process::id() % 50,
        std::process::id() % 997
    );
    let mut slow = bash("slow", &format!("sleep {marker}; echo done"), &[]);
    slow.execution_timeout = Some(updraft::dag::Duration::from_millis(500));
    install(&db.pool, &[dag("timeouts", vec![slow])]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let started = std::time::Instant::now();
    let run_id = trigger(&db.pool, "timeouts", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "timeouts", &run_id, LIMIT).await,
        "failed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    engine.stop().await;
    let lines: Vec<String> = sqlx::query_scalar("SELECT line FROM task_logs ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("timed out after")),
        "{lines:?}"
    );
    let leftover = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "the command's child survived the timeout"
    );
}

#[tokio::test]
async fn an_outcome_that_cannot_be_recorded_yet_is_retried_not_lost() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag("db_blip", vec![bash("work", "echo hi", &[])])],
    )
    .await;
    // Finishing writes this line in the finishing transaction: make that fail for a while.
    sqlx::query(
        "ALTER TABLE task_logs ADD CONSTRAINT blip CHECK (line <> 'Marking task as SUCCESS')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "db_blip", serde_json::json!({})).await;
    // Longer than the 3 s lease: the worker must keep the lease while it retries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        states(&db.pool, "db_blip", &run_id).await["work"].0,
        "running"
    );
    sqlx::query("ALTER TABLE task_logs DROP CONSTRAINT blip")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        wait_run(&db.pool, "db_blip", &run_id, LIMIT).await,
        "success"
    );
    engine.stop().await;
    assert_eq!(
        states(&db.pool, "db_blip", &run_id).await["work"],
        ("success".into(), 1),
        "recorded by the worker that ran it, not re-run"
    );
}

/// Lines a running task prints while the database refuses them are kept and written later,
/// each once, not dropped.
#[tokio::test]
async fn log_lines_written_while_the_database_refuses_them_are_kept() {
    let db = fresh_db().await;
    let cmd = "for i in $(seq 1 30); do echo line-$i; sleep 0.1; done";
    install(&db.pool, &[dag("log_blip", vec![bash("talk", cmd, &[])])]).await;
    // Every new log row is refused until the constraint goes.
    sqlx::query("ALTER TABLE task_logs ADD CONSTRAINT blip CHECK (false) NOT VALID")
        .execute(&db.pool)
        .await
        .unwrap();
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "log_blip", serde_json::json!({})).await;
    // Part of the output is printed (and refused) meanwhile; the rest after.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::query("ALTER TABLE task_logs DROP CONSTRAINT blip")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        wait_run(&db.pool, "log_blip", &run_id, LIMIT).await,
        "success"
    );
    engine.stop().await;
    let lines: Vec<String> =
        sqlx::query_scalar("SELECT line FROM task_logs WHERE line LIKE 'line-%' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let expected: Vec<String> = (1..=30).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, expected);
}

/// Airflow's semantics: the run fails and every unfinished task instance, the running one
/// included, becomes skipped; the running command is stopped.
#[tokio::test]
async fn dagrun_timeout_fails_the_run_and_skips_the_rest() {
    let db = fresh_db().await;
    let marker = tempfile::tempdir().unwrap();
    let done = marker.path().join("done");
    let mut d = dag(
        "run_timeout",
        vec![
            bash("slow", &format!("sleep 20; touch {}", done.display()), &[]),
            empty("next", &["slow"]),
        ],
    );
    d.dagrun_timeout = Some(updraft::dag::Duration::from_secs(1));
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "run_timeout", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "run_timeout", &run_id, LIMIT).await,
        "failed"
    );
    let s = states(&db.pool, "run_timeout", &run_id).await;
    assert_eq!(s["slow"].0, "skipped");
    assert_eq!(s["next"].0, "skipped");
    // The worker sees the try taken away at its next heartbeat (every second here) and
    // kills the command: stopping does not wait for it, nor for the 5 s shutdown grace.
    let stopping = std::time::Instant::now();
    engine.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "the timed-out command was still running at shutdown"
    );
    assert!(!done.exists(), "the timed-out command ran to its end");
}

#[tokio::test]
async fn max_active_runs_holds_runs_in_the_queue() {
    let db = fresh_db().await;
    let mut d = dag("one_at_a_time", vec![bash("work", "sleep 0.3", &[])]);
    d.max_active_runs = 1;
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(trigger(&db.pool, "one_at_a_time", serde_json::json!({})).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for r in &runs {
        assert_eq!(
            wait_run(&db.pool, "one_at_a_time", r, LIMIT).await,
            "success"
        );
    }
    engine.stop().await;
    let spans: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT start_date, end_date FROM dag_runs ORDER BY start_date")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "runs overlapped: {spans:?}");
    }
}

#[tokio::test]
async fn runs_are_pinned_to_the_version_they_started_with() {
    let db = fresh_db().await;
    install(&db.pool, &[dag("pinned", vec![bash("a", "echo v1", &[])])]).await;
    let run_id = trigger(&db.pool, "pinned", serde_json::json!({})).await;
    // A new version arrives before the run starts.
    install(
        &db.pool,
        &[dag(
            "pinned",
            vec![bash("a", "echo v2", &[]), empty("b", &["a"])],
        )],
    )
    .await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    assert_eq!(
        wait_run(&db.pool, "pinned", &run_id, LIMIT).await,
        "success"
    );
    let s = states(&db.pool, "pinned", &run_id).await;
    assert_eq!(s.len(), 1, "the old version has one task: {s:?}");
    let second = trigger(&db.pool, "pinned", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "pinned", &second, LIMIT).await,
        "success"
    );
    assert_eq!(states(&db.pool, "pinned", &second).await.len(), 2);
    engine.stop().await;
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_versions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(versions, 2);
}

#[tokio::test]
async fn fan_in_of_100_on_4_workers_runs_the_join_exactly_once() {
    let db = fresh_db().await;
    let marker = tempfile::NamedTempFile::new().unwrap();
    let path = marker.path().display().to_string();
    let mut tasks: Vec<_> = (0..100)
        .map(|i| empty(&format!("up_{i:03}"), &[]))
        .collect();
    let ups: Vec<String> = tasks.iter().map(|t| t.task_id.to_string()).collect();
    let up_refs: Vec<&str> = ups.iter().map(String::as_str).collect();
    tasks.push(bash("join", &format!("echo ran >> {path}"), &up_refs));
    install(&db.pool, &[dag("fan_in", tasks)]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 4);
    let run_id = trigger(&db.pool, "fan_in", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "fan_in", &run_id, LIMIT).await,
        "success"
    );
    engine.stop().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "ran\n");
    let s = states(&db.pool, "fan_in", &run_id).await;
    assert_eq!(s["join"], ("success".into(), 1));
}

#[tokio::test]
async fn two_schedulers_and_three_workers_run_2000_tasks_exactly_once() {
    let db = fresh_db().await;
    let mut tasks: Vec<_> = (0..99).map(|i| empty(&format!("t_{i:03}"), &[])).collect();
    tasks.push(empty("end", &[]));
    let mut d = dag("many", tasks);
    d.max_active_tasks = 1000;
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 2, 3);
    let mut runs = Vec::new();
    for _ in 0..20 {
        runs.push(trigger(&db.pool, "many", serde_json::json!({})).await);
    }
    for r in &runs {
        assert_eq!(
            wait_run(&db.pool, "many", r, Duration::from_secs(120)).await,
            "success"
        );
    }
    engine.stop().await;
    // Every task instance ran exactly one try, and that try started exactly once.
    let (tis, bad_tries): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE try_number <> 1 OR state <> 'success') FROM task_instances",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((tis, bad_tries), (2000, 0));
    let starts: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM task_logs WHERE line LIKE 'Starting attempt%' GROUP BY ti_id, try_number",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(starts.len(), 2000);
    assert!(starts.iter().all(|n| *n == 1), "some try started twice");
}

#[tokio::test]
async fn bad_conf_and_unknown_dag_are_refused() {
    let db = fresh_db().await;
    install(&db.pool, &[dag("exists", vec![empty("a", &[])])]).await;
    let req = updraft::db::runs::TriggerRequest {
        conf: Some(serde_json::json!([1])),
        ..Default::default()
    };
    let err = updraft::db::runs::trigger(&db.pool, "exists", req)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
    let err = updraft::db::runs::trigger(&db.pool, "nope", Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some("r1".into()),
        ..Default::default()
    };
    updraft::db::runs::trigger(&db.pool, "exists", req.clone())
        .await
        .unwrap();
    let err = updraft::db::runs::trigger(&db.pool, "exists", req)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let _ = OperatorName::Empty;
}

#[tokio::test]
async fn an_unreadable_version_fails_its_run_and_other_dags_keep_running() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[
            dag("broken_spec", vec![empty("a", &[])]),
            dag("fine", vec![empty("a", &[])]),
        ],
    )
    .await;
    // As if an older updraft had stored a spec this one cannot read.
    sqlx::query(
        "UPDATE dag_versions SET spec = '{\"not\": \"a dag\"}' WHERE dag_id = 'broken_spec'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let broken = trigger(&db.pool, "broken_spec", serde_json::json!({})).await;
    let fine = trigger(&db.pool, "fine", serde_json::json!({})).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    assert_eq!(wait_run(&db.pool, "fine", &fine, LIMIT).await, "success");
    assert_eq!(
        wait_run(&db.pool, "broken_spec", &broken, LIMIT).await,
        "failed"
    );
    let note: Option<String> = sqlx::query_scalar("SELECT note FROM dag_runs WHERE run_id = $1")
        .bind(&broken)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(note
        .unwrap_or_default()
        .contains("could not read DAG version"));
    engine.stop().await;
}

#[tokio::test]
async fn an_expired_task_whose_version_cannot_be_read_fails_its_run() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag(
            "orphan",
            vec![bash("a", "true", &[]), empty("b", &["a"])],
        )],
    )
    .await;
    let run_id = trigger(&db.pool, "orphan", serde_json::json!({})).await;
    let folder = empty_folder();
    // Start the run, then pretend a worker claimed `a` and died.
    let first = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    while states(&db.pool, "orphan", &run_id)
        .await
        .get("a")
        .map(|s| s.0.as_str())
        != Some("queued")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;
    sqlx::query(
        "UPDATE task_instances SET state = 'running', try_number = 1, lease_owner = gen_random_uuid(),
             lease_expires_at = now() - interval '1 second' WHERE task_id = 'a'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE dag_versions SET spec = '{\"not\": \"a dag\"}'")
        .execute(&db.pool)
        .await
        .unwrap();
    let second = Engine::start(&db.pool, fast_settings(folder.path()), 1, 0);
    assert_eq!(wait_run(&db.pool, "orphan", &run_id, LIMIT).await, "failed");
    second.stop().await;
    let s = states(&db.pool, "orphan", &run_id).await;
    assert_eq!(
        (s["a"].0.as_str(), s["b"].0.as_str()),
        ("failed", "skipped")
    );
}

#[tokio::test]
async fn max_active_tasks_holds_within_one_claim_and_counts_per_run() {
    let db = fresh_db().await;
    let tasks: Vec<_> = (0..6)
        .map(|i| bash(&format!("t{i}"), "sleep 0.2", &[]))
        .collect();
    let mut d = dag("narrow", tasks);
    d.max_active_tasks = 1;
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let first = trigger(&db.pool, "narrow", serde_json::json!({})).await;
    let second = trigger(&db.pool, "narrow", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "narrow", &first, LIMIT).await, "success");
    assert_eq!(
        wait_run(&db.pool, "narrow", &second, LIMIT).await,
        "success"
    );
    engine.stop().await;
    type Span = (
        i64,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    );
    let spans: Vec<Span> = sqlx::query_as(
        "SELECT run_pk, start_date, end_date FROM task_instances ORDER BY start_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // Within a run, one task at a time; the two runs may overlap each other.
    for run in [
        spans[0].0,
        spans.iter().find(|s| s.0 != spans[0].0).unwrap().0,
    ] {
        let mine: Vec<_> = spans.iter().filter(|s| s.0 == run).collect();
        for w in mine.windows(2) {
            assert!(
                w[1].1 >= w[0].2,
                "tasks of one run overlapped under max_active_tasks: 1"
            );
        }
    }
    let overlapped = spans
        .windows(2)
        .any(|w| w[0].0 != w[1].0 && w[1].1 < w[0].2);
    assert!(
        overlapped,
        "the limit is per run: the two runs should overlap"
    );
}

#[tokio::test]
async fn manual_run_ids_cannot_take_scheduled_names_and_unpause_replans() {
    let db = fresh_db().await;
    install(&db.pool, &[dag("names", vec![empty("a", &[])])]).await;
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some("scheduled__2030-01-01T00:00:00+00:00".into()),
        ..Default::default()
    };
    let err = updraft::db::runs::trigger(&db.pool, "names", req)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");

    sqlx::query("UPDATE dags SET next_run_after = now() - interval '30 days', next_logical_date = now() - interval '30 days'")
        .execute(&db.pool)
        .await
        .unwrap();
    updraft::db::dags::set_paused(&db.pool, "names", true)
        .await
        .unwrap();
    updraft::db::dags::set_paused(&db.pool, "names", false)
        .await
        .unwrap();
    let planned: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT next_run_after FROM dags")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        planned, None,
        "unpausing plans afresh instead of firing the stale run"
    );
}

/// Queued tasks and due retries are claimed in one due-time order: a retry due before a task
/// was queued goes first, not behind the whole queue.
#[tokio::test]
async fn retries_are_claimed_in_due_order_with_the_queue() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag(
            "due_order",
            vec![empty("a", &[]), empty("b", &[]), empty("c", &[])],
        )],
    )
    .await;
    trigger(&db.pool, "due_order", serde_json::json!({})).await;
    let specs = updraft::db::tasks::SpecCache::default();
    updraft::db::scheduling::start_queued_runs(&db.pool, &specs)
        .await
        .unwrap();
    // `a` was queued 10 s ago, `b` failed and its retry fell due 5 s ago, `c` was queued 1 s ago.
    sqlx::query(
        "UPDATE task_instances SET
            not_before = now() - CASE task_id WHEN 'a' THEN interval '10 s' WHEN 'b' THEN interval '5 s' ELSE interval '1 s' END,
            state = CASE task_id WHEN 'b' THEN 'up_for_retry' ELSE state END,
            try_number = CASE task_id WHEN 'b' THEN 1 ELSE 0 END",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let worker = uuid::Uuid::new_v4();
    updraft::db::tasks::register_worker(
        &db.pool,
        worker,
        "test",
        1,
        updraft::dag::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        let c = updraft::db::tasks::claim(&db.pool, worker, "test", (1, 1))
            .await
            .unwrap();
        order.push(c[0].task_id.clone());
    }
    assert_eq!(order, ["a", "b", "c"]);
}

/// A run whose data Postgres refuses at start (a dagrun_timeout past the end of time, stored
/// by a release that did not bound it) fails with the reason, is recorded on its DAG, and
/// the DAG beside it runs.
#[tokio::test]
async fn a_run_that_cannot_start_fails_alone() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[
            dag("forever", vec![empty("a", &[])]),
            dag("fine", vec![empty("a", &[])]),
        ],
    )
    .await;
    sqlx::query(
        "UPDATE dag_versions SET spec = jsonb_set(spec, '{dagrun_timeout}', '\"99999999999999999999s\"')
         WHERE dag_id = 'forever'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let bad = trigger(&db.pool, "forever", serde_json::json!({})).await;
    let good = trigger(&db.pool, "fine", serde_json::json!({})).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    assert_eq!(wait_run(&db.pool, "fine", &good, LIMIT).await, "success");
    assert_eq!(wait_run(&db.pool, "forever", &bad, LIMIT).await, "failed");
    engine.stop().await;
    let (note, error): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT r.note, d.scheduler_error FROM dag_runs r JOIN dags d ON d.dag_id = r.dag_id
         WHERE r.run_id = $1",
    )
    .bind(&bad)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(note
        .unwrap_or_default()
        .contains("could not start this run"));
    assert!(error.unwrap_or_default().contains("starting a run"));
}
