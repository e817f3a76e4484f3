//! Concurrent finishes that share runs, in batches that name those runs in different orders,
//! with heartbeats and claims beside them: under the engine's lock order (runs by id first,
//! then task instances) Postgres never has to break a deadlock. With the old order (each
//! try's rows first, its run's counter last) these batches deadlock within a few rounds.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use updraft::core::Duration as UDuration;
use updraft::db::tasks::{self, Claimed, Fence, Finish, FinishItem, Finished, SpecCache};

async fn deadlocks(admin: &sqlx::PgPool, name: &str) -> i64 {
    sqlx::query_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = $1")
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_finishes_across_shared_runs_never_deadlock() {
    let db = fresh_db().await;
    let roots: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let mut tasks_ = Vec::new();
    for r in &roots {
        tasks_.push(empty(r, &[]));
    }
    let refs: Vec<&str> = roots.iter().map(String::as_str).collect();
    tasks_.push(empty("join", &refs));
    install(&db.pool, &[dag("fan_in", tasks_)]).await;
    let specs = SpecCache::default();
    for _ in 0..8 {
        trigger(&db.pool, "fan_in", serde_json::json!({})).await;
    }
    updraft::db::scheduling::start_queued_runs(&db.pool, &specs)
        .await
        .unwrap();

    let workers: Vec<uuid::Uuid> = (0..4).map(|_| uuid::Uuid::new_v4()).collect();
    for w in &workers {
        tasks::register_worker(&db.pool, *w, "test", 32, UDuration::from_secs(60))
            .await
            .unwrap();
    }
    let mut claimed: Vec<(uuid::Uuid, Claimed)> = Vec::new();
    for w in &workers {
        for c in tasks::claim(&db.pool, *w, "test", (64, 64)).await.unwrap() {
            claimed.push((*w, c));
        }
    }
    assert_eq!(claimed.len(), 8 * 12, "every root of every run is claimed");

    // Batches of 6 that each span several runs, the runs in a different order per batch.
    let dag = specs.get(&db.pool, claimed[0].1.version_id).await.unwrap();
    let mut order: Vec<usize> = (0..claimed.len()).collect();
    order.sort_by_key(|&i| (claimed[i].1.ti_id * 7919) % 97);
    let batches: Vec<Vec<FinishItem>> = order
        .chunks(6)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&i| {
                    let (owner, c) = &claimed[i];
                    FinishItem {
                        ti_id: c.ti_id,
                        run_pk: c.run_pk,
                        fence: Fence::Lease {
                            owner: *owner,
                            try_number: c.try_number,
                        },
                        outcome: Finish::Success { xcom: Vec::new() },
                        dag: dag.clone(),
                        tail: Vec::new(),
                        hand_off: None,
                    }
                })
                .collect()
        })
        .collect();
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    let before = deadlocks(&admin, &db.name).await;
    let start = Arc::new(tokio::sync::Barrier::new(batches.len() + 1));
    let mut handles = Vec::new();
    for batch in batches {
        let pool = db.pool.clone();
        let start = start.clone();
        handles.push(tokio::spawn(async move {
            start.wait().await;
            tasks::finish_many(&pool, &batch).await
        }));
    }
    // Heartbeats of every worker, all the while.
    let beating = {
        let pool = db.pool.clone();
        let workers = workers.clone();
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            for _ in 0..20 {
                for w in &workers {
                    tasks::worker_heartbeat(&pool, *w).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for h in handles {
        let results = h.await.unwrap().unwrap();
        assert!(results
            .iter()
            .all(|r| matches!(r, Finished::Recorded { .. })));
    }
    beating.await.unwrap();

    // Every join is queued exactly once; finish them and every run succeeds.
    let joins = tasks::claim(&db.pool, workers[0], "test", (64, 64))
        .await
        .unwrap();
    assert_eq!(joins.len(), 8);
    let items: Vec<FinishItem> = joins
        .iter()
        .map(|c| FinishItem {
            ti_id: c.ti_id,
            run_pk: c.run_pk,
            fence: Fence::Lease {
                owner: workers[0],
                try_number: c.try_number,
            },
            outcome: Finish::Success { xcom: Vec::new() },
            dag: dag.clone(),
            tail: Vec::new(),
            hand_off: None,
        })
        .collect();
    tasks::finish_many(&db.pool, &items).await.unwrap();
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM dag_runs")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(states, vec!["success".to_string(); 8]);

    // Backends report their statistics when they exit: close ours, then read.
    db.pool.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = deadlocks(&admin, &db.name).await - before;
        assert_eq!(n, 0, "Postgres broke {n} deadlock(s) between finishes");
        if std::time::Instant::now() > deadline {
            break;
        }
        // Stats arrive asynchronously; give late reports a chance to show up.
        let backends: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&db.name)
                .fetch_one(&admin)
                .await
                .unwrap();
        if backends == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Notes on several task instances take their run's lock first, like every other writer of
/// a run's rows: a transaction that holds the run and updates its rows in an order of its
/// own (a finish updates downstream rows in its statement's order) then never deadlocks
/// with them. Without the run lock, the notes lock the lower id and wait for the higher one,
/// while the finish holds the higher one and waits for the lower.
#[tokio::test]
async fn notes_on_task_instances_wait_for_their_run_instead_of_deadlocking() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag("noted", vec![empty("a", &[]), empty("b", &[])])],
    )
    .await;
    trigger(&db.pool, "noted", serde_json::json!({})).await;
    updraft::db::scheduling::start_queued_runs(&db.pool, &SpecCache::default())
        .await
        .unwrap();
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, run_pk FROM task_instances ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let (low, high, run) = (rows[0].0, rows[1].0, rows[0].1);
    let touch = "UPDATE task_instances SET up_success = up_success WHERE id = $1";
    let mut finish = db.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM dag_runs WHERE id = $1 FOR UPDATE")
        .bind(run)
        .execute(&mut *finish)
        .await
        .unwrap();
    sqlx::query(touch)
        .bind(high)
        .execute(&mut *finish)
        .await
        .unwrap();
    let pool = db.pool.clone();
    let notes = tokio::spawn(async move {
        updraft::db::operate::set_ti_notes(&pool, &[low, high], Some("why")).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query(touch)
        .bind(low)
        .execute(&mut *finish)
        .await
        .expect("the finish is not a deadlock's victim");
    finish.commit().await.unwrap();
    notes
        .await
        .unwrap()
        .expect("the notes are not a deadlock's victim");
    let noted: i64 = sqlx::query_scalar("SELECT count(*) FROM task_instances WHERE note = 'why'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(noted, 2);
}
