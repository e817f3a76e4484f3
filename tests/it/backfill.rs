//! Backfills against the real engine: runs of type `backfill` for each tick, at most
//! `max_active_runs` at a time, backwards on request, and each `reprocess_behavior`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::helpers::*;
use updraft::core::{ReprocessBehavior, RunState};
use updraft::db::backfill::{self, BackfillError, BackfillRequest};

const LIMIT: Duration = Duration::from_secs(60);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn request(behavior: ReprocessBehavior, max_active_runs: i32, backwards: bool) -> BackfillRequest {
    BackfillRequest {
        dag_id: "daily".into(),
        from_date: at("2026-01-01T00:00:00Z"),
        to_date: at("2026-01-05T00:00:00Z"),
        run_backwards: backwards,
        dag_run_conf: serde_json::json!({"why": "backfill"}),
        reprocess_behavior: behavior,
        max_active_runs,
        user: Some("tester".into()),
    }
}

/// Waits for a backfill to complete, returning the most backfill runs seen active at once.
async fn wait_backfill(pool: &sqlx::PgPool, id: i64) -> i64 {
    let deadline = Instant::now() + LIMIT;
    let mut most = 0;
    loop {
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dag_runs WHERE backfill_id = $1 AND state = 'running'",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap();
        most = most.max(active);
        let b = backfill::get(pool, id).await.unwrap().unwrap();
        if b.completed_at.is_some() {
            return most;
        }
        assert!(
            Instant::now() < deadline,
            "backfill {id} never completed: {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn backfill_runs(pool: &sqlx::PgPool) -> Vec<(String, String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT run_id, state, logical_date FROM dag_runs WHERE run_type = 'backfill' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn backfill_runs_each_tick_within_max_active_runs_and_reprocesses_as_asked() {
    let db = fresh_db().await;
    let mut d = dag("daily", vec![bash("work", "sleep 0.3", &[])]);
    d.schedule = updraft::core::Schedule::Cron {
        expr: "@daily".into(),
        cron: "0 0 0 * * *".into(),
    };
    d.start_date = Some(at("2026-01-01T00:00:00Z"));
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);

    let plan = backfill::plan(&db.pool, &request(ReprocessBehavior::None, 2, true), false)
        .await
        .unwrap();
    assert_eq!(plan.len(), 5);
    assert_eq!(
        plan[0].run.logical_date,
        at("2026-01-05T00:00:00Z"),
        "backwards"
    );

    let b = backfill::create(&db.pool, &request(ReprocessBehavior::None, 2, true), false)
        .await
        .unwrap();
    assert_eq!(b.total_runs, 5);
    let again = backfill::create(&db.pool, &request(ReprocessBehavior::None, 2, true), false).await;
    assert!(
        matches!(again, Err(BackfillError::AlreadyRunning(_))),
        "{again:?}"
    );
    let most = wait_backfill(&db.pool, b.id).await;
    assert!((1..=2).contains(&most), "max_active_runs 2, saw {most}");
    let runs = backfill_runs(&db.pool).await;
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert!(runs.iter().all(|r| r.1 == "success"), "{runs:?}");
    assert_eq!(
        runs[0].2,
        at("2026-01-05T00:00:00Z"),
        "the newest date ran first"
    );
    assert_eq!(runs[0].0, "backfill__2026-01-05T00:00:00+00:00");
    let conf: serde_json::Value =
        sqlx::query_scalar("SELECT conf FROM dag_runs WHERE run_type = 'backfill' LIMIT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(conf["why"], "backfill");
    let done = backfill::get(&db.pool, b.id).await.unwrap().unwrap();
    assert_eq!((done.finished_runs, done.failed_runs), (5, 0));

    // One date failed: `none` has nothing to do, `failed` runs only it again, `completed` all.
    let failed_run = updraft::db::runs::get(&db.pool, "daily", &runs[2].0)
        .await
        .unwrap()
        .unwrap();
    let m = updraft::db::operate::MarkRequest {
        run_pk: failed_run.id,
        version_id: failed_run.version_id,
        task_ids: vec!["work".into()],
        state: updraft::core::TaskState::Failed,
        include_upstream: false,
        include_downstream: false,
        dry_run: false,
    };
    updraft::db::operate::mark_tasks(&db.pool, &m)
        .await
        .unwrap();
    let none = backfill::create(&db.pool, &request(ReprocessBehavior::None, 2, false), false).await;
    assert!(matches!(none, Err(BackfillError::Invalid(_))), "{none:?}");
    let completed = backfill::plan(
        &db.pool,
        &request(ReprocessBehavior::Completed, 2, false),
        false,
    )
    .await
    .unwrap();
    assert!(completed.iter().all(|d| d.plan.runs()), "{completed:?}");

    let b2 = backfill::create(
        &db.pool,
        &request(ReprocessBehavior::Failed, 1, false),
        false,
    )
    .await
    .unwrap();
    assert_eq!((b2.total_runs, b2.skipped_dates), (1, 4));
    wait_backfill(&db.pool, b2.id).await;
    let after = updraft::db::runs::get(&db.pool, "daily", &runs[2].0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.state, RunState::Success, "the failed date ran again");
    let tries: i32 = sqlx::query_scalar("SELECT try_number FROM task_instances WHERE run_pk = $1")
        .bind(after.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tries, 2, "the failed task ran again as try 2");
    assert_eq!(
        backfill_runs(&db.pool).await.len(),
        5,
        "no new run for a reprocessed date"
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_paused_backfill_starts_nothing_and_a_cancelled_one_fails_its_queued_runs() {
    let db = fresh_db().await;
    let mut d = dag("daily", vec![bash("work", "true", &[])]);
    d.schedule = updraft::core::Schedule::Cron {
        expr: "@daily".into(),
        cron: "0 0 0 * * *".into(),
    };
    install(&db.pool, &[d]).await;
    let b = backfill::create(&db.pool, &request(ReprocessBehavior::None, 2, false), false)
        .await
        .unwrap();
    use backfill::Steer;
    assert_eq!(
        backfill::steer(&db.pool, b.id, Steer::Pause).await.unwrap(),
        Some(true)
    );
    assert_eq!(backfill::advance(&db.pool).await.unwrap(), 0, "paused");
    assert_eq!(
        backfill::steer(&db.pool, b.id, Steer::Unpause)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        backfill::advance(&db.pool).await.unwrap(),
        2,
        "max_active_runs 2"
    );
    assert_eq!(
        backfill::advance(&db.pool).await.unwrap(),
        0,
        "both still queued"
    );
    assert_eq!(
        backfill::steer(&db.pool, b.id, Steer::Cancel)
            .await
            .unwrap(),
        Some(true)
    );
    let states: Vec<String> = backfill_runs(&db.pool)
        .await
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(states, vec!["failed", "failed"]);
    let done = backfill::get(&db.pool, b.id).await.unwrap().unwrap();
    assert!(done.completed_at.is_some());
    assert_eq!(
        backfill::steer(&db.pool, b.id, Steer::Pause).await.unwrap(),
        Some(false)
    );
    assert_eq!(
        backfill::steer(&db.pool, 999, Steer::Pause).await.unwrap(),
        None
    );
}
