//! A DAG version stored by the first release (format 1, `tests/fixtures/specs/spec_v1.json`,
//! written by that release's code) runs on this one: queued and running runs survive an
//! upgrade.

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_spec_stored_by_the_first_release_still_runs() {
    let db = fresh_db().await;
    let pool = &db.pool;
    let spec: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/specs/spec_v1.json")).unwrap();
    assert!(
        spec.get("format_version").is_none(),
        "the fixture is the first release's format"
    );
    // Stored as that release stored it: the version row, the DAG row pointing at it.
    let version_id: i64 = sqlx::query_scalar(
        "INSERT INTO dag_versions (dag_id, hash, spec, fileloc, source)
         VALUES ('stored_spec_v1', 'v1-fixture', $1, 'spec_v1_dag.yaml', '') RETURNING id",
    )
    .bind(&spec)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dags (dag_id, version_id, fileloc, is_paused, schedule, max_active_runs, max_active_tasks)
         VALUES ('stored_spec_v1', $1, 'spec_v1_dag.yaml', false, NULL, 2, 8)",
    )
    .bind(version_id)
    .execute(pool)
    .await
    .unwrap();

    let engine = Engine::start(pool, fast_settings(empty_folder().path()), 1, 1);
    let run_id = trigger(
        pool,
        "stored_spec_v1",
        serde_json::json!({"greeting": "hi"}),
    )
    .await;
    let state = wait_run(pool, "stored_spec_v1", &run_id, Duration::from_secs(60)).await;
    engine.stop().await;
    assert_eq!(state, "success");
    let states = states(pool, "stored_spec_v1", &run_id).await;
    assert_eq!(states.len(), 5);
    assert!(states.values().all(|(s, _)| s == "success"), "{states:?}");
    // The template, the XCom hand-over and `$const` behave as they did.
    let lines: Vec<String> = sqlx::query_scalar(
        "SELECT l.line FROM task_logs l JOIN task_instances t ON t.id = l.ti_id
         WHERE t.task_id IN ('echo_back', 'literal') AND l.stream = 'stdout' ORDER BY l.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![format!("hi 3 {run_id}"), "{{ not a template }}".to_string()]
    );
}
