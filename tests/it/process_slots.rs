//! Process slots: a worker runs no more commands in processes of their own (`bash`) at once
//! than its process slots, and in-process tasks are claimed past the commands waiting.

use std::time::Duration;

use crate::helpers::*;

type Span = (
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
);

/// The most spans running at once (at some span's start).
fn most_at_once(spans: &[&Span]) -> usize {
    spans
        .iter()
        .map(|s| spans.iter().filter(|o| o.1 <= s.1 && s.1 < o.2).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn commands_are_bounded_by_process_slots_and_empty_tasks_pass_them() {
    let db = fresh_db().await;
    let mut tasks: Vec<_> = (0..6)
        .map(|i| bash(&format!("cmd{i}"), "sleep 0.4", &[]))
        .collect();
    tasks.extend((0..6).map(|i| empty(&format!("nop{i}"), &[])));
    install(&db.pool, &[dag("mixed", tasks)]).await;
    let folder = empty_folder();
    let mut settings = fast_settings(folder.path());
    settings.worker_process_slots = 2;
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let run = trigger(&db.pool, "mixed", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "mixed", &run, Duration::from_secs(60)).await,
        "success"
    );
    engine.stop().await;
    let spans: Vec<Span> =
        sqlx::query_as("SELECT task_id, start_date, end_date FROM task_instances")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let commands: Vec<&Span> = spans.iter().filter(|s| s.0.starts_with("cmd")).collect();
    assert_eq!(most_at_once(&commands), 2, "{commands:?}");
    // Every empty task ended before the last two commands started: they did not wait.
    let last_command_start = commands.iter().map(|s| s.1).max().unwrap();
    for nop in spans.iter().filter(|s| s.0.starts_with("nop")) {
        assert!(
            nop.2 < last_command_start,
            "{nop:?} waited behind the commands"
        );
    }
}
