//! Templates rendered by a real worker: the context's database parts (`ti.xcom_pull`,
//! `prev_*_success`, the run and try) and a template error failing the try with Airflow's
//! message.

use std::time::Duration;

use crate::helpers::*;
use updraft::dag::Arg;

const LIMIT: Duration = Duration::from_secs(30);

async fn xcom_of(pool: &sqlx::PgPool, run_id: &str, task: &str) -> serde_json::Value {
    sqlx::query_scalar(
        "SELECT x.value FROM xcom x JOIN dag_runs r ON r.id = x.run_pk WHERE r.run_id = $1 AND x.task_id = $2",
    )
    .bind(run_id)
    .bind(task)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn templates_read_xcoms_earlier_runs_and_the_try() {
    let db = fresh_db().await;
    let mut second = bash("second", "unused", &["first"]);
    second.args = Arg::Map(vec![(
        "bash_command".into(),
        Arg::Template(
            "echo \"{{ ti.xcom_pull(task_ids='first') }}|{{ prev_start_date_success is none }}|\
             {{ prev_start_date_success == None }}|{{ ti.xcom_pull(task_ids='second', include_prior_dates=True) }}|\
             {{ dag_run.run_type }}|{{ task.task_id }}|{{ ti.try_number }}|{{ (logical_date - macros.timedelta(days=1)) | ds }}\""
                .into(),
        ),
    )]);
    let d = dag("tpl", vec![bash("first", "echo from-first", &[]), second]);
    install(&db.pool, &[d]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run1 = trigger(&db.pool, "tpl", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "tpl", &run1, LIMIT).await, "success");
    let run2 = trigger(&db.pool, "tpl", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "tpl", &run2, LIMIT).await, "success");
    engine.stop().await;

    let day_before = |run_id: &str| -> String {
        let ld =
            chrono::DateTime::parse_from_rfc3339(run_id.trim_start_matches("manual__")).unwrap();
        (ld - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string()
    };
    let first = xcom_of(&db.pool, &run1, "second").await;
    assert_eq!(
        first,
        serde_json::json!(format!(
            "from-first|False|True|None|DagRunType.MANUAL|second|1|{}",
            day_before(&run1)
        )),
        "no earlier success: prev_* is Airflow's None proxy"
    );
    let second = xcom_of(&db.pool, &run2, "second").await;
    let text = second.as_str().unwrap();
    // Run 1 succeeded, so prev_* is a datetime; the prior-dates pull finds run 1's XCom of
    // this very task (the whole line above).
    let want_start = format!("from-first|False|False|{}|", first.as_str().unwrap());
    assert!(text.starts_with(&want_start), "{text}");
}

#[tokio::test]
async fn a_template_error_fails_the_try_with_airflows_message() {
    let db = fresh_db().await;
    let mut t = bash("t", "unused", &[]);
    t.args = Arg::Map(vec![(
        "bash_command".into(),
        Arg::Template("echo {{ params.missing }}".into()),
    )]);
    install(&db.pool, &[dag("bad_tpl", vec![t])]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run = trigger(&db.pool, "bad_tpl", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "bad_tpl", &run, LIMIT).await, "failed");
    engine.stop().await;
    let lines: Vec<String> = sqlx::query_scalar("SELECT line FROM task_logs ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("UndefinedError: 'dict object' has no attribute 'missing'")),
        "{lines:#?}"
    );
}
