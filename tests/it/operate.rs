//! Operating runs by hand against the real engine: clear (with downstream, in a fan-in;
//! a running task), mark (failed cascading, success releasing the downstream), a run's mark
//! and delete.

use std::time::{Duration, Instant};

use crate::helpers::*;
use updraft::core::{RunState, TaskState};
use updraft::db::operate::{self, ClearRequest, MarkRequest, RunFilter, RunMark, Tasks};

const LIMIT: Duration = Duration::from_secs(30);

fn clear_req(dag_id: &str, run_id: &str, tasks: &[&str]) -> ClearRequest {
    ClearRequest {
        dag_id: dag_id.into(),
        runs: RunFilter {
            run_id: Some(run_id.into()),
            ..Default::default()
        },
        tasks: Tasks::Ids(tasks.iter().map(|t| t.to_string()).collect()),
        include_upstream: false,
        include_downstream: true,
        only_failed: false,
        only_running: false,
        dry_run: false,
    }
}

/// Waits until `task` of the run is in `state`.
async fn wait_task(pool: &sqlx::PgPool, dag: &str, run: &str, task: &str, state: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = states(pool, dag, run).await;
        if s.get(task).is_some_and(|(st, _)| st == state) {
            return;
        }
        assert!(Instant::now() < deadline, "{task} never {state}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn clear_with_downstream_in_a_fan_in_reruns_as_new_tries() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    let mut flaky = bash("b", &format!("test -f {}", flag.display()), &[]);
    flaky.retries = 1;
    let d = dag(
        "fanin",
        vec![
            bash("a", "true", &[]),
            flaky,
            empty("c", &["a", "b"]),
            empty("d", &["c"]),
        ],
    );
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "fanin", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "fanin", &run_id, LIMIT).await, "failed");
    let before = states(&db.pool, "fanin", &run_id).await;
    assert_eq!(before["b"], ("failed".into(), 2), "one retry: {before:?}");
    assert_eq!(before["c"].0, "upstream_failed");

    // A dry run says what would be cleared and changes nothing.
    let mut dry = clear_req("fanin", &run_id, &["b"]);
    dry.dry_run = true;
    let would = operate::clear(&db.pool, &dry).await.unwrap();
    assert_eq!(would.ti_ids.len(), 3, "b, c and d");
    assert_eq!(states(&db.pool, "fanin", &run_id).await, before);

    std::fs::write(&flag, "").unwrap();
    let cleared = operate::clear(&db.pool, &clear_req("fanin", &run_id, &["b"]))
        .await
        .unwrap();
    assert_eq!(cleared.ti_ids.len(), 3);
    assert_eq!(wait_run(&db.pool, "fanin", &run_id, LIMIT).await, "success");
    let after = states(&db.pool, "fanin", &run_id).await;
    engine.stop().await;
    assert_eq!(after["a"], ("success".into(), 1), "a was not cleared");
    assert_eq!(after["b"], ("success".into(), 3), "try numbers go on");
    assert_eq!(after["c"], ("success".into(), 1));
    assert_eq!(after["d"], ("success".into(), 1));
    let max_tries: i32 =
        sqlx::query_scalar("SELECT max_tries FROM task_instances WHERE task_id = 'b'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(max_tries, 3, "retries apply afresh: last try 2 + 1 retry");
}

#[tokio::test]
async fn clearing_a_running_task_kills_its_command_and_runs_it_again() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display();
    // The first try records its shell's pid and sleeps; the second finds the marker and ends.
    let cmd = format!(
        "if [ -f {p}/second ]; then exit 0; fi; touch {p}/second; echo $$ > {p}/pid; sleep 60"
    );
    install(&db.pool, &[dag("slow", vec![bash("sleepy", &cmd, &[])])]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "slow", serde_json::json!({})).await;
    wait_task(&db.pool, "slow", &run_id, "sleepy", "running").await;
    let pid_file = dir.path().join("pid");
    let deadline = Instant::now() + LIMIT;
    while !pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the first try never started its shell"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut req = clear_req("slow", &run_id, &["sleepy"]);
    req.only_running = true;
    let cleared = operate::clear(&db.pool, &req).await.unwrap();
    assert_eq!(cleared.ti_ids.len(), 1);
    let started = Instant::now();
    assert_eq!(wait_run(&db.pool, "slow", &run_id, LIMIT).await, "success");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        states(&db.pool, "slow", &run_id).await["sleepy"],
        ("success".into(), 2)
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    let deadline = Instant::now() + LIMIT;
    while proc_dir.exists()
        && !std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "the first try's shell still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.stop().await;
}

/// The second try of a cleared task, claimed by the worker that still runs the first, stays
/// that worker's own: the first try's end does not make the worker forget it (which would let
/// its heartbeat put the running try back in the queue as a stray, to run a third time).
#[tokio::test]
async fn a_cleared_task_rerun_by_the_same_worker_runs_once_more_only() {
    let db = fresh_db().await;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display();
    let folder = empty_folder();
    let settings = fast_settings(folder.path());
    // Longer than the two lease TTLs after which a worker requeues tries it does not know of.
    let second = 2 * settings.lease_ttl.std().as_secs() + 3;
    let cmd = format!(
        "echo start >> {p}/starts; if [ -f {p}/second ]; then sleep {second}; exit 0; fi; touch {p}/second; sleep 60"
    );
    install(&db.pool, &[dag("again", vec![bash("twice", &cmd, &[])])]).await;
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let run_id = trigger(&db.pool, "again", serde_json::json!({})).await;
    let marker = dir.path().join("second");
    let deadline = Instant::now() + LIMIT;
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the first try never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut req = clear_req("again", &run_id, &["twice"]);
    req.only_running = true;
    assert_eq!(
        operate::clear(&db.pool, &req).await.unwrap().ti_ids.len(),
        1
    );
    assert_eq!(wait_run(&db.pool, "again", &run_id, LIMIT).await, "success");
    engine.stop().await;
    let starts = std::fs::read_to_string(dir.path().join("starts")).unwrap();
    assert_eq!(starts.lines().count(), 2, "the command started {starts:?}");
    assert_eq!(
        states(&db.pool, "again", &run_id).await["twice"],
        ("success".into(), 2)
    );
}

#[tokio::test]
async fn mark_failed_cascades_and_mark_success_releases_the_downstream() {
    let db = fresh_db().await;
    let d = dag(
        "marks",
        vec![
            bash("a", "sleep 60", &[]),
            empty("b", &["a"]),
            empty("c", &["b"]),
        ],
    );
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "marks", serde_json::json!({})).await;
    wait_task(&db.pool, "marks", &run_id, "a", "running").await;
    let run = updraft::db::runs::get(&db.pool, "marks", &run_id)
        .await
        .unwrap()
        .unwrap();
    let mark = |task: &str, state: TaskState, dry_run: bool| MarkRequest {
        run_pk: run.id,
        version_id: run.version_id,
        task_ids: vec![task.into()],
        state,
        include_upstream: false,
        include_downstream: false,
        dry_run,
    };
    let dry = operate::mark_tasks(&db.pool, &mark("a", TaskState::Failed, true))
        .await
        .unwrap();
    assert_eq!((dry.ti_ids.len(), dry.run_state), (1, None));
    let done = operate::mark_tasks(&db.pool, &mark("a", TaskState::Failed, false))
        .await
        .unwrap();
    assert_eq!(done.run_state, Some(RunState::Failed));
    let s = states(&db.pool, "marks", &run_id).await;
    assert_eq!(s["b"].0, "upstream_failed", "{s:?}");
    assert_eq!(s["c"].0, "upstream_failed", "{s:?}");

    // Marking it success lets b and c run under their trigger rules (c is cleared first,
    // as an operator would with "downstream").
    let mut ok = mark("a", TaskState::Success, false);
    ok.include_downstream = false;
    operate::mark_tasks(&db.pool, &ok).await.unwrap();
    operate::clear(&db.pool, &clear_req("marks", &run_id, &["b"]))
        .await
        .unwrap();
    assert_eq!(wait_run(&db.pool, "marks", &run_id, LIMIT).await, "success");
    let s = states(&db.pool, "marks", &run_id).await;
    assert_eq!(s["b"], ("success".into(), 1), "{s:?}");
    assert_eq!(s["a"].0, "success");
    engine.stop().await;
}

#[tokio::test]
async fn mark_a_run_and_delete_it() {
    let db = fresh_db().await;
    let d = dag("runs", vec![bash("a", "sleep 60", &[]), empty("b", &["a"])]);
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "runs", serde_json::json!({})).await;
    wait_task(&db.pool, "runs", &run_id, "a", "running").await;
    let run = updraft::db::runs::get(&db.pool, "runs", &run_id)
        .await
        .unwrap()
        .unwrap();
    let m = RunMark {
        run_pk: run.id,
        version_id: run.version_id,
        state: RunState::Failed,
        dry_run: false,
    };
    operate::mark_run(&db.pool, m).await.unwrap();
    assert_eq!(wait_run(&db.pool, "runs", &run_id, LIMIT).await, "failed");
    let s = states(&db.pool, "runs", &run_id).await;
    assert_eq!(
        (s["a"].0.as_str(), s["b"].0.as_str()),
        ("failed", "skipped")
    );

    let success = RunMark {
        state: RunState::Success,
        ..m
    };
    operate::mark_run(&db.pool, success).await.unwrap();
    assert_eq!(wait_run(&db.pool, "runs", &run_id, LIMIT).await, "success");
    let s = states(&db.pool, "runs", &run_id).await;
    assert_eq!(
        (s["a"].0.as_str(), s["b"].0.as_str()),
        ("success", "success")
    );

    assert!(operate::delete_run(&db.pool, run.id).await.unwrap());
    assert!(updraft::db::runs::get(&db.pool, "runs", &run_id)
        .await
        .unwrap()
        .is_none());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM task_instances")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(!operate::delete_run(&db.pool, run.id).await.unwrap());
    engine.stop().await;
}

/// Clears racing the engine's own finishes (two workers, a 20-way fan-in) take their locks in
/// the same order, so none deadlocks, and the run still ends as it should.
#[tokio::test]
async fn clears_racing_finishes_never_deadlock() {
    let db = fresh_db().await;
    let mut tasks: Vec<_> = (0..20)
        .map(|i| bash(&format!("t{i:02}"), "sleep 0.05", &[]))
        .collect();
    let ids: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    tasks.push(empty("join", &refs));
    install(&db.pool, &[dag("race", tasks)]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 2);
    let run_id = trigger(&db.pool, "race", serde_json::json!({})).await;
    wait_task(&db.pool, "race", &run_id, "t00", "success").await;
    for round in 0..15 {
        let pick = format!("t{:02}", (round * 7) % 20);
        let mut req = clear_req("race", &run_id, &[&pick]);
        req.include_downstream = round % 2 == 0;
        operate::clear(&db.pool, &req)
            .await
            .unwrap_or_else(|e| panic!("clear {round} failed: {e:#}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(wait_run(&db.pool, "race", &run_id, LIMIT).await, "success");
    let s = states(&db.pool, "race", &run_id).await;
    assert!(s.values().all(|(st, _)| st == "success"), "{s:?}");
    let unfinished: i32 = sqlx::query_scalar("SELECT unfinished_tasks FROM dag_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(unfinished, 0, "the run's counter agrees with its tasks");
    engine.stop().await;
}
