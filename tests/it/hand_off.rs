//! Direct hand-offs: the transaction that records a try's outcome leases one of the tasks it
//! queues to the same worker, for the slot the try frees, but only where that cannot
//! overshoot a limit or jump a queue that has waited; and tries leased to a worker that
//! does not know of them go back to the queue.

use std::collections::HashMap;

use crate::helpers::*;
use updraft::core::Duration as UDuration;
use updraft::db::tasks::{self, Claimed, Fence, Finish, FinishItem, Finished, HandOff, SpecCache};

/// Installs and starts one run of `tasks`, registers a worker and claims the roots.
async fn started(db: &TestDb, tasks_: Vec<updraft::dag::Task>) -> (uuid::Uuid, Vec<Claimed>) {
    started_runs(db, &[dag("handed", tasks_)], &["handed"]).await
}

/// Installs `dags`, starts a run of each of `runs` (a DAG id, as often as it is named),
/// registers a worker and claims what it can (up to 8).
async fn started_runs(
    db: &TestDb,
    dags: &[updraft::dag::Dag],
    runs: &[&str],
) -> (uuid::Uuid, Vec<Claimed>) {
    install(&db.pool, dags).await;
    for dag_id in runs {
        trigger(&db.pool, dag_id, serde_json::json!({})).await;
    }
    updraft::db::scheduling::start_queued_runs(&db.pool, &SpecCache::default())
        .await
        .unwrap();
    let worker = uuid::Uuid::new_v4();
    tasks::register_worker(&db.pool, worker, "test", 8, UDuration::from_secs(60))
        .await
        .unwrap();
    let claimed = tasks::claim(&db.pool, worker, "test", (8, 8))
        .await
        .unwrap();
    (worker, claimed)
}

/// `c`'s success, asking for a hand-off.
async fn success(db: &TestDb, worker: uuid::Uuid, c: &Claimed) -> FinishItem {
    let dag = SpecCache::default()
        .get(&db.pool, c.version_id)
        .await
        .unwrap();
    FinishItem {
        ti_id: c.ti_id,
        run_pk: c.run_pk,
        fence: Fence::Lease {
            owner: worker,
            try_number: c.try_number,
        },
        outcome: Finish::Success { xcom: Vec::new() },
        dag,
        tail: Vec::new(),
        hand_off: Some(HandOff {
            worker,
            hostname: "test".into(),
        }),
    }
}

/// What each of `items`, recorded in one batch, was handed.
async fn succeed_together(db: &TestDb, items: &[FinishItem]) -> Vec<Option<Claimed>> {
    tasks::finish_many(&db.pool, items)
        .await
        .unwrap()
        .into_iter()
        .map(|f| match f {
            Finished::Recorded { next, .. } => next.map(|n| *n),
            Finished::LeaseLost => panic!("the fence held"),
        })
        .collect()
}

/// Records `c` as a success, asking for a hand-off; returns what was handed over.
async fn succeed(db: &TestDb, worker: uuid::Uuid, c: &Claimed) -> Option<Claimed> {
    let item = success(db, worker, c).await;
    succeed_together(db, &[item]).await.pop().flatten()
}

async fn task_states(db: &TestDb) -> HashMap<String, (String, i32, Option<uuid::Uuid>)> {
    let rows: Vec<(String, String, i32, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT task_id, state, try_number, lease_owner FROM task_instances")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(t, s, n, o)| (t, (s, n, o)))
        .collect()
}

#[tokio::test]
async fn a_chain_is_handed_down_to_the_worker_that_ran_its_upstream() {
    let db = fresh_db().await;
    let (worker, roots) = started(
        &db,
        vec![empty("a", &[]), empty("b", &["a"]), empty("c", &["b"])],
    )
    .await;
    assert_eq!(roots.len(), 1);
    let b = succeed(&db, worker, &roots[0])
        .await
        .expect("b handed over");
    assert_eq!((b.task_id.as_str(), b.try_number), ("b", 1));
    assert_eq!(
        task_states(&db).await["b"],
        ("running".into(), 1, Some(worker))
    );
    // It is leased, not queued: another worker's claim finds nothing.
    let other = uuid::Uuid::new_v4();
    tasks::register_worker(&db.pool, other, "test", 8, UDuration::from_secs(60))
        .await
        .unwrap();
    assert!(tasks::claim(&db.pool, other, "test", (8, 8))
        .await
        .unwrap()
        .is_empty());
    let c = succeed(&db, worker, &b).await.expect("c handed over");
    assert_eq!(c.task_id, "c");
    assert_eq!(
        succeed(&db, worker, &c).await,
        None,
        "nothing after the leaf"
    );
    let run: String = sqlx::query_scalar("SELECT state FROM dag_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(run, "success");
}

/// An in-process try hands over neither a command (it holds no process slot) nor a task of
/// another pool (that pool's room was not checked); both stay queued for a claim.
#[tokio::test]
async fn no_hand_off_of_a_command_or_across_pools() {
    let db = fresh_db().await;
    let (worker, roots) = started(
        &db,
        vec![
            empty("a", &[]),
            bash("cmd", "true", &["a"]),
            empty("elsewhere", &["a"]),
        ],
    )
    .await;
    sqlx::query("UPDATE task_instances SET pool = 'other' WHERE task_id = 'elsewhere'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(succeed(&db, worker, &roots[0]).await, None);
    let states = task_states(&db).await;
    assert_eq!(states["cmd"].0, "queued");
    assert_eq!(states["elsewhere"].0, "queued");
}

/// A hand-off goes past the queue, so none is made while a task has been due for more than
/// a second: the slot goes back to the queue, in due order.
#[tokio::test]
async fn no_hand_off_past_a_task_that_has_waited() {
    let db = fresh_db().await;
    let (worker, roots) = started(
        &db,
        vec![empty("a", &[]), empty("b", &["a"]), empty("waiting", &[])],
    )
    .await;
    let a = roots.iter().find(|c| c.task_id == "a").unwrap();
    let waiting = roots.iter().find(|c| c.task_id == "waiting").unwrap();
    // `waiting` back in the queue, due 5 s ago.
    sqlx::query(
        "UPDATE task_instances SET state = 'queued', try_number = 0, lease_owner = NULL,
                not_before = now() - interval '5 s'
         WHERE id = $1",
    )
    .bind(waiting.ti_id)
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(succeed(&db, worker, a).await, None);
    let mut order = Vec::new();
    for _ in 0..2 {
        let c = tasks::claim(&db.pool, worker, "test", (1, 1))
            .await
            .unwrap();
        order.push(c[0].task_id.clone());
    }
    assert_eq!(order, ["waiting", "b"]);
}

/// A claim whose answer was lost (the connection broke at COMMIT) leaves tries leased to a
/// worker that never started them; its heartbeat puts them back, untried, once they are
/// older than the lease.
#[tokio::test]
async fn tries_a_worker_does_not_know_of_go_back_to_the_queue() {
    let db = fresh_db().await;
    let (worker, roots) = started(&db, vec![empty("a", &[]), empty("b", &[])]).await;
    let (a, b) = (&roots[0], &roots[1]);
    let ttl = UDuration::from_secs(60);
    // Fresh claims are left alone, whatever the worker knows.
    assert!(tasks::requeue_strays(&db.pool, worker, &[], ttl)
        .await
        .unwrap()
        .is_empty());
    sqlx::query("UPDATE task_instances SET heartbeat_at = now() - interval '2 minutes'")
        .execute(&db.pool)
        .await
        .unwrap();
    let back = tasks::requeue_strays(&db.pool, worker, &[a.ti_id], ttl)
        .await
        .unwrap();
    assert_eq!(back, [b.ti_id], "only the try the worker does not know of");
    let states = task_states(&db).await;
    assert_eq!(states[&a.task_id], ("running".into(), 1, Some(worker)));
    assert_eq!(states[&b.task_id], ("queued".into(), 0, None));
    let again = tasks::claim(&db.pool, worker, "test", (8, 8))
        .await
        .unwrap();
    assert_eq!((again[0].ti_id, again[0].try_number), (b.ti_id, 1));
}

/// A late outcome of a try the reaper had already taken back (`up_for_retry`, nobody has
/// claimed it since) is still recorded, but hands nothing off: the reaped try no longer
/// counted against the run's and the pool's limits, so a task taking its place would add
/// to them.
#[tokio::test]
async fn a_reaped_try_s_late_outcome_hands_nothing_off() {
    let db = fresh_db().await;
    let (worker, roots) = started(&db, vec![empty("a", &[]), empty("b", &["a"])]).await;
    sqlx::query("UPDATE task_instances SET state = 'up_for_retry' WHERE id = $1")
        .bind(roots[0].ti_id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(succeed(&db, worker, &roots[0]).await, None);
    let states = task_states(&db).await;
    assert_eq!(states["a"].0, "success", "the outcome is kept");
    assert_eq!(states["b"].0, "queued");
}

/// A limit lowered while a chain runs stops its hand-offs: the pool set to 0 slots (to
/// drain it) gets no new task, though the hand-off would only have swapped one for another.
#[tokio::test]
async fn no_hand_off_into_a_pool_with_no_room() {
    let db = fresh_db().await;
    let (worker, roots) = started(&db, vec![empty("a", &[]), empty("b", &["a"])]).await;
    sqlx::query("UPDATE pools SET slots = 0 WHERE pool = $1")
        .bind(&roots[0].pool)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(succeed(&db, worker, &roots[0]).await, None);
    assert_eq!(task_states(&db).await["b"].0, "queued");
}

/// A worker that stops puts back what is leased to it without its knowing (a lost answer):
/// after it has gone, nothing else would, and the reaper would count the untried task as a
/// failed try.
#[tokio::test]
async fn a_stopping_worker_puts_back_tries_it_did_not_know_of() {
    let db = fresh_db().await;
    install(
        &db.pool,
        &[dag(
            "stray",
            vec![bash("slow", "sleep 1", &[]), empty("lost", &["slow"])],
        )],
    )
    .await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run_id = trigger(&db.pool, "stray", serde_json::json!({})).await;
    let worker: uuid::Uuid = loop {
        let owner: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT lease_owner FROM task_instances WHERE task_id = 'slow' AND state = 'running'",
        )
        .fetch_optional(&db.pool)
        .await
        .unwrap()
        .flatten();
        if let Some(w) = owner {
            break w;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // `lost` leased to the worker as a claim whose answer never arrived would leave it.
    sqlx::query(
        "UPDATE task_instances SET state = 'running', try_number = 1, lease_owner = $1,
                heartbeat_at = now(), start_date = now()
         WHERE task_id = 'lost'",
    )
    .bind(worker)
    .execute(&db.pool)
    .await
    .unwrap();
    engine.stop().await;
    let states = states(&db.pool, "stray", &run_id).await;
    assert_eq!(states["lost"], ("queued".into(), 0), "{states:?}");
}

/// One batch of outcomes from several runs hands each try the next task of its own run,
/// and a task two tries of the batch lead to is counted for both and handed over once.
#[tokio::test]
async fn one_batch_hands_each_try_its_own_run_s_next_task() {
    let db = fresh_db().await;
    let tasks_ = vec![
        empty("a", &[]),
        empty("b", &[]),
        empty("after_a", &["a"]),
        empty("after_both", &["a", "b"]),
    ];
    let (worker, roots) = started_runs(&db, &[dag("handed", tasks_)], &["handed", "handed"]).await;
    assert_eq!(roots.len(), 4, "a and b of both runs");
    let mut items = Vec::new();
    for c in &roots {
        items.push(success(&db, worker, c).await);
    }
    let handed = succeed_together(&db, &items).await;
    // Per run, `a` and `b` ended: `after_a` and `after_both` are ready, and the run's two
    // tries each take one of them.
    for (c, next) in roots.iter().zip(&handed) {
        let next = next.as_ref().expect("every try is handed a task");
        assert_eq!(
            next.run_pk, c.run_pk,
            "{} was handed another run's task",
            c.task_id
        );
    }
    let rows: Vec<(i64, String, String, i32, i32)> = sqlx::query_as(
        "SELECT run_pk, task_id, state, try_number, up_success FROM task_instances
         WHERE task_id LIKE 'after%' ORDER BY run_pk, task_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 4);
    for (_, task_id, state, try_number, up_success) in &rows {
        assert_eq!((state.as_str(), *try_number), ("running", 1), "{task_id}");
        let expected = if task_id == "after_both" { 2 } else { 1 };
        assert_eq!(*up_success, expected, "{task_id}'s upstream successes");
    }
    let mut handed_ids: Vec<i64> = handed.iter().flatten().map(|c| c.ti_id).collect();
    handed_ids.sort_unstable();
    handed_ids.dedup();
    assert_eq!(handed_ids.len(), 4, "no task handed over twice");
}

/// Two tries of one run that end in the same batch hand over no more tasks than the run
/// has room for: a `max_active_tasks` lowered to 1 while both ran lets one through.
#[tokio::test]
async fn a_batch_hands_off_no_more_than_a_run_has_room_for() {
    let db = fresh_db().await;
    let (worker, roots) = started(
        &db,
        vec![
            empty("a", &[]),
            empty("b", &[]),
            empty("after_a", &["a"]),
            empty("after_b", &["b"]),
        ],
    )
    .await;
    assert_eq!(roots.len(), 2);
    sqlx::query("UPDATE dags SET max_active_tasks = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut items = Vec::new();
    for c in &roots {
        items.push(success(&db, worker, c).await);
    }
    let handed = succeed_together(&db, &items).await;
    assert_eq!(handed.iter().flatten().count(), 1, "{handed:?}");
    let states = task_states(&db).await;
    let mut after: Vec<&str> = vec![states["after_a"].0.as_str(), states["after_b"].0.as_str()];
    after.sort_unstable();
    assert_eq!(after, ["queued", "running"]);
}

/// Only tasks that have waited *and could be claimed now* stop hand-offs: a backlog that a
/// freed slot could not serve anyway (a run at its `max_active_tasks`, a full pool, such as
/// a large fan-out under its limit) does not turn hand-offs off for every other DAG.
#[tokio::test]
async fn a_backlog_that_cannot_be_claimed_does_not_stop_hand_offs() {
    let db = fresh_db().await;
    let mut busy = dag("busy", vec![empty("x", &[]), empty("y", &[])]);
    busy.max_active_tasks = 1;
    let handed = dag(
        "handed",
        vec![
            empty("a", &[]),
            empty("b", &["a"]),
            empty("c", &["b"]),
            empty("stuck", &[]),
        ],
    );
    let (worker, claimed) = started_runs(&db, &[busy, handed], &["busy", "handed"]).await;
    let a = claimed.iter().find(|c| c.task_id == "a").unwrap();
    // `y` waits behind `x` for its run's one slot, and `stuck` for a pool of no slots; both
    // have been due for 5 s.
    sqlx::query("INSERT INTO pools (pool, slots) VALUES ('tiny', 0)")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE task_instances SET state = 'queued', try_number = 0, lease_owner = NULL,
                pool = CASE WHEN task_id = 'stuck' THEN 'tiny' ELSE pool END,
                not_before = now() - interval '5 s'
         WHERE task_id IN ('y', 'stuck')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let states = task_states(&db).await;
    assert_eq!(states["x"].0, "running", "{states:?}");
    let b = succeed(&db, worker, a).await.expect("b handed over");
    assert_eq!(b.task_id, "b");
    // Once `stuck` could be claimed, it has waited longest: no more hand-offs past it.
    sqlx::query("UPDATE pools SET slots = 1 WHERE pool = 'tiny'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(succeed(&db, worker, &b).await, None);
    assert_eq!(task_states(&db).await["c"].0, "queued");
}
