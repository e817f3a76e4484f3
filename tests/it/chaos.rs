//! Small versions of `updraft chaos`'s scenarios, on real processes: schedulers and workers
//! SIGKILLed at random, Postgres stopped for three leases, and load. The full-size figures
//! are in RELIABILITY.md; these hold the invariants every run.

use std::time::Duration;

use updraft::bench::chaos::{scenarios, Report, Setup};
use updraft::runtime::embedded_pg::PrivateCluster;

use crate::helpers::*;

fn setup(database_url: &str, work: &std::path::Path) -> Setup {
    Setup {
        binary: env!("CARGO_BIN_EXE_updraft").into(),
        database_url: database_url.to_string(),
        work: work.to_path_buf(),
        schedulers: 2,
        workers: 3,
        env: vec![
            ("UPDRAFT_LEASE_TTL".into(), "2s".into()),
            ("UPDRAFT_POLL_INTERVAL".into(), "200ms".into()),
            ("UPDRAFT_SHUTDOWN_GRACE".into(), "10s".into()),
        ],
        token: format!("chaos-{}", uuid::Uuid::new_v4().simple()),
        patience: Duration::from_secs(300),
    }
}

async fn deadlocks(name: &str) -> i64 {
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    let n = updraft::db::reliability::deadlocks(&admin, name)
        .await
        .unwrap();
    admin.close().await;
    n
}

fn show(r: &Report) {
    for line in r.lines() {
        eprintln!("{line}");
    }
}

#[tokio::test]
async fn kill_loop_loses_nothing_and_leaves_nothing_behind() {
    let db = fresh_db().await;
    let work = tempfile::tempdir().unwrap();
    let s = setup(&db.url, work.path());
    let before = deadlocks(&db.name).await;
    // Commands of 2 s keep 150 tasks on 3 workers busy for over 6 s: the first kill comes
    // within 1.5 s and the next within 3 s more, so at least two land mid-work.
    let load = scenarios::KillLoop {
        tasks: 150,
        per_run: 30,
        command_secs: 2.0,
        kills: true,
    };
    let report = scenarios::kill_loop(&s, &db.pool, load).await.unwrap();
    show(&report);
    db.pool.close().await;
    assert!(
        report.kills >= 2,
        "the loop killed processes: {}",
        report.kills
    );
    assert_eq!(report.runs_lost, 0);
    assert_eq!(report.tasks, 150);
    assert_eq!(report.tries_recorded_twice, 0);
    assert_eq!(report.commands_completed, 150);
    assert_eq!(report.orphaned_processes, 0);
    assert_eq!(report.leftover_temp_dirs, 0);
    assert_eq!(deadlocks(&db.name).await - before, 0);
}

#[tokio::test]
async fn an_outage_of_three_leases_reruns_no_finished_command() {
    let dir = tempfile::Builder::new()
        .prefix("updraft-pg-chaos-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cluster = PrivateCluster::start(&dir.path().join("pgdata"))
        .await
        .expect("start a private cluster");
    let pool = updraft::db::connect(&cluster.url, 5).await.unwrap();
    updraft::db::migrate(&pool).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = setup(&cluster.url, work.path());
    let report = scenarios::outage(&s, &cluster, &pool, 12, Duration::from_secs(6))
        .await
        .unwrap();
    show(&report);
    pool.close().await;
    assert_eq!(report.runs_lost, 0);
    assert!(report.finished_during_outage.unwrap_or(0) > 0);
    assert_eq!(report.reruns_after_completion, 0);
    assert_eq!(report.tries_recorded_twice, 0);
    assert_eq!(report.orphaned_processes, 0);
}

#[tokio::test]
async fn load_runs_every_task_without_a_deadlock() {
    let db = fresh_db().await;
    let work = tempfile::tempdir().unwrap();
    let mut s = setup(&db.url, work.path());
    s.env.clear(); // default settings
    let before = deadlocks(&db.name).await;
    let (wide, chains) = scenarios::load(&s, &db.pool, 10, 20, 20).await.unwrap();
    show(&wide);
    show(&chains);
    db.pool.close().await;
    assert_eq!(wide.runs_lost, 0);
    assert_eq!(wide.tasks, 200);
    assert_eq!(chains.runs_lost, 0);
    assert_eq!(chains.tasks, 200);
    assert_eq!(chains.hand_off.map(|h| h.n), Some(20 * 9));
    assert_eq!(deadlocks(&db.name).await - before, 0);
}

/// The stream failover scenario, small: the worker holding a continuous sink is SIGKILLed;
/// the other takes over within a few leases and every record is in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_failover_resumes_and_keeps_every_record() {
    let db = fresh_db().await;
    let work = tempfile::tempdir().unwrap();
    let s = setup(&db.url, work.path());
    let lease = Duration::from_secs(2);
    let f = updraft::bench::chaos::failover::failover(&s, &db.pool, 200, lease)
        .await
        .unwrap();
    for line in f.lines() {
        eprintln!("{line}");
    }
    assert_eq!(f.rows, f.records as i64, "every record, once");
    assert!(f.records > 0);
    // The scenario fails by itself past 10 leases. The figure is a benchmark's: against a
    // broker in another process the dead consumer holds its partitions for the session
    // timeout (6 s), longer than this test's 2 s lease.
    assert!(f.failover < lease * 10, "{:?}", f.failover);
}
