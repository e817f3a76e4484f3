//! The DAGs folder end to end: broken files beside valid ones, the watcher, and schedulers
//! killed mid-run (real processes).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixtures(kind: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dags")
        .join(kind)
}

fn with_processor(folder: &Path) -> updraft::settings::EngineSettings {
    updraft::settings::EngineSettings {
        process_dags_folder: true,
        ..fast_settings(folder)
    }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn broken_files_become_import_errors_and_valid_dags_still_run() {
    let db = fresh_db().await;
    let folder = empty_folder();
    copy_dir(&fixtures("broken"), folder.path());
    copy_dir(&fixtures("valid"), folder.path());
    let broken_files = std::fs::read_dir(fixtures("broken")).unwrap().count() as i64;
    let engine = Engine::start(&db.pool, with_processor(folder.path()), 1, 1);
    let pool = db.pool.clone();
    wait_until("the folder to load", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM import_errors")
                .fetch_one(&pool)
                .await
                .unwrap();
            n == broken_files
        }
    })
    .await;
    // One clear error per file, each naming the file and a line.
    let errors = updraft::db::dags::import_errors(&db.pool).await.unwrap();
    for (file, message) in &errors {
        assert!(message.starts_with(file.as_str()), "{file}: {message}");
        assert_eq!(
            message.lines().count(),
            1,
            "{file} should have exactly one error: {message}"
        );
    }
    let cycle = errors
        .iter()
        .find(|(f, _)| f == "cycle.yaml")
        .expect("cycle.yaml is an import error");
    assert!(cycle.1.contains("cycle"), "{}", cycle.1);
    let run_id = trigger(&db.pool, "daily_report", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "daily_report", &run_id, Duration::from_secs(30)).await,
        "success"
    );
    engine.stop().await;
}

async fn active_version(pool: &sqlx::PgPool, dag_id: &str) -> Option<(i64, bool)> {
    sqlx::query_as("SELECT version_id, is_active FROM dags WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_folder_is_watched_add_change_delete_within_a_second() {
    let db = fresh_db().await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, with_processor(folder.path()), 1, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let file = folder.path().join("watched.yaml");
    let v1 = "dag_id: watched\ntasks:\n  - id: a\n    uses: updraft.empty\n";
    std::fs::write(&file, v1).unwrap();
    let pool = db.pool.clone();
    wait_until("a new file to load", Duration::from_secs(1), || {
        let pool = pool.clone();
        async move { active_version(&pool, "watched").await.is_some() }
    })
    .await;
    let (first, _) = active_version(&db.pool, "watched").await.unwrap();

    std::fs::write(
        &file,
        format!("{v1}  - id: b\n    uses: updraft.empty\n    needs: [a]\n"),
    )
    .unwrap();
    wait_until("a change to load", Duration::from_secs(1), || {
        let pool = pool.clone();
        async move { active_version(&pool, "watched").await.map(|(v, _)| v) != Some(first) }
    })
    .await;

    std::fs::write(&file, "dag_id: watched\ntasks: [oops\n").unwrap();
    wait_until(
        "a broken file to become an import error",
        Duration::from_secs(1),
        || {
            let pool = pool.clone();
            async move {
                !updraft::db::dags::import_errors(&pool)
                    .await
                    .unwrap()
                    .is_empty()
            }
        },
    )
    .await;

    std::fs::remove_file(&file).unwrap();
    wait_until(
        "a deleted file to deactivate its DAG and clear its error",
        Duration::from_secs(1),
        || {
            let pool = pool.clone();
            async move {
                active_version(&pool, "watched")
                    .await
                    .map(|(_, active)| active)
                    == Some(false)
                    && updraft::db::dags::import_errors(&pool)
                        .await
                        .unwrap()
                        .is_empty()
            }
        },
    )
    .await;
    engine.stop().await;
}

#[tokio::test]
async fn schedulers_killed_and_restarted_never_double_fire() {
    let db = fresh_db().await;
    let folder = empty_folder();
    let start = chrono::Utc::now() - chrono::Duration::minutes(40);
    std::fs::write(
        folder.path().join("every_minute.yaml"),
        format!(
            "dag_id: every_minute\nschedule: '* * * * *'\ncatchup: true\nmax_active_runs: 1\nstart_date: {}\ntasks:\n  - id: a\n    uses: updraft.empty\n",
            start.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_updraft"))
            .arg("scheduler")
            .env("DATABASE_URL", &db.url)
            .env("UPDRAFT_DAGS_FOLDER", folder.path())
            .env("UPDRAFT_POLL_INTERVAL", "100ms")
            .env("UPDRAFT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let count = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dag_runs")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // A worker, so runs finish and the catch-up (one run at a time) can proceed.
    let worker = Engine::start(&db.pool, fast_settings(folder.path()), 0, 1);
    let mut first = spawn();
    wait_until(
        "the first scheduler to create runs",
        Duration::from_secs(20),
        || {
            let pool = db.pool.clone();
            async move { count(pool).await >= 3 }
        },
    )
    .await;
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    // Two schedulers at once, restarted after the crash.
    let mut a = spawn();
    let mut b = spawn();
    wait_until("the catch-up to complete", Duration::from_secs(30), || {
        let pool = db.pool.clone();
        async move { count(pool).await >= 40 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for c in [&mut a, &mut b] {
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
    }
    worker.stop().await;
    let dates: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT logical_date FROM dag_runs ORDER BY logical_date")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    for w in dates.windows(2) {
        assert_eq!(
            w[1] - w[0],
            chrono::Duration::minutes(1),
            "a gap or a double fire: {dates:?}"
        );
    }
    let (n, ok) = (dates.len() as i64, 40..=41);
    assert!(
        ok.contains(&n),
        "expected one run per minute since the start date, got {n}"
    );
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs WHERE state = 'running'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        running <= 1,
        "max_active_runs: 1 held across schedulers, got {running}"
    );
}

#[tokio::test]
async fn catchup_creates_no_more_runs_than_max_active_runs_allows() {
    let db = fresh_db().await;
    let folder = empty_folder();
    let start = chrono::Utc::now() - chrono::Duration::days(365);
    std::fs::write(
        folder.path().join("backlog.yaml"),
        format!(
            "dag_id: backlog\nschedule: '* * * * *'\ncatchup: true\nmax_active_runs: 3\nstart_date: {}\ntasks:\n  - id: a\n    uses: updraft.empty\n",
            start.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    )
    .unwrap();
    // No worker: nothing finishes, so a year of minutely runs must not be created at once.
    let engine = Engine::start(&db.pool, with_processor(folder.path()), 1, 0);
    let pool = db.pool.clone();
    wait_until("the first runs", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dag_runs")
                .fetch_one(&pool)
                .await
                .unwrap()
                >= 3
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    engine.stop().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        n, 3,
        "creation stops at max_active_runs while runs are open"
    );
}
