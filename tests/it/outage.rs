//! Postgres stopped for longer than the lease, with tasks finishing while it is away: every
//! finished try's outcome is recorded when it comes back, and no finished command runs again.
//! The database is a private cluster of this test's own, so stopping it disturbs no other test.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::helpers::*;
use updraft::runtime::embedded_pg::PrivateCluster;

#[tokio::test]
async fn finished_work_survives_an_outage_longer_than_the_lease() {
    let dir = tempfile::Builder::new()
        .prefix("updraft-pg-outage-")
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
    let pool = updraft::db::connect(&cluster.url, 10).await.unwrap();
    updraft::db::migrate(&pool).await.unwrap();

    // Ten tasks of 1 to 3 s; each notes its start and its end in a file, with its try.
    let marks = tempfile::tempdir().unwrap();
    let log = marks.path().join("marks");
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let cmd = format!(
                "echo \"start $AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_TRY_NUMBER\" >> {l}; sleep {}; echo \"done $AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_TRY_NUMBER\" >> {l}",
                1 + i % 3,
                l = log.display()
            );
            let mut t = bash(&format!("t{i}"), &cmd, &[]);
            t.retries = 2;
            t
        })
        .collect();
    install(&pool, &[dag("outage", tasks)]).await;
    let lease = updraft::dag::Duration::from_secs(2);
    let mut settings = fast_settings(empty_folder().path());
    settings.lease_ttl = lease;
    let engine = Engine::start(&pool, settings, 1, 1);
    let run_id = trigger(&pool, "outage", serde_json::json!({})).await;

    // Once every task has started, stop Postgres for three leases: they all finish meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
        < 10
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the tasks never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop_server().unwrap();
    let outage = 3 * lease.std();
    let stopped = std::time::Instant::now();
    while stopped.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during: usize = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("done"))
        .count();
    assert_eq!(
        during, 10,
        "every command finished while the database was away"
    );
    cluster.start_server().unwrap();

    assert_eq!(
        wait_run(&pool, "outage", &run_id, Duration::from_secs(60)).await,
        "success"
    );
    engine.stop().await;
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        if let Some(rest) = line.strip_prefix("start ") {
            *starts
                .entry(rest.split(' ').next().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(
        starts.values().all(|n| *n == 1),
        "a finished command ran again after the outage: {starts:?}"
    );
    let s = states(&pool, "outage", &run_id).await;
    assert!(
        s.values().all(|(st, tries)| st == "success" && *tries == 1),
        "{s:?}"
    );
    pool.close().await;
}
