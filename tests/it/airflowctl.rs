//! `airflowctl` (Airflow's command-line client, PyPI `apache-airflow-ctl` 0.1.5) against a
//! running updraft: log in with a username and password, list DAGs, list runs without
//! `--limit` (it sends `limit=`), trigger a run and read its state.

use std::path::Path;

use crate::api_client::test_venv;
use crate::web_support::*;

/// Runs `airflowctl args…` with its state in `home`; returns stdout, failing with stderr.
async fn ctl(home: &Path, args: &[&str]) -> String {
    let bin = test_venv().join("bin/airflowctl");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(&bin)
            .args(args)
            .env("AIRFLOW_HOME", home)
            // Credentials in a file under AIRFLOW_HOME instead of a system keyring, which a
            // test machine does not have.
            .env("AIRFLOW_CLI_DEBUG_MODE", "true")
            .env_remove("AIRFLOW_CLI_TOKEN")
            .output(),
    )
    .await
    .expect("airflowctl took longer than 2 minutes")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e}; run `scripts/test`, which installs it",
            bin.display()
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "airflowctl {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test]
async fn airflowctl_logs_in_lists_triggers_and_reads_a_run() {
    assert!(
        test_venv().join("bin/airflowctl").exists(),
        "airflowctl is missing: run `scripts/test`, which creates {} with it",
        test_venv().display()
    );
    let app = TestApp::spawn().await;
    crate::api_compat::seed(&app).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ctl(
        home,
        &[
            "auth",
            "login",
            "--api-url",
            &app.base,
            "--username",
            "alice",
            "--password",
            PASSWORD,
        ],
    )
    .await;
    let creds = std::fs::read_to_string(home.join("debug_creds_production.json")).unwrap();
    assert!(creds.contains("api_token_production"), "{creds}");

    let dags = ctl(home, &["dags", "list"]).await;
    for dag in ["etl", "etl_backup", "report"] {
        assert!(dags.contains(&format!("\"{dag}\"")), "{dags}");
    }
    // No --limit: airflowctl sends `limit=`, which updraft reads as "the default".
    let runs = ctl(home, &["dagrun", "list"]).await;
    for run in ["r1", "r2", "r3"] {
        assert!(runs.contains(&format!("\"{run}\"")), "{runs}");
    }
    let failed = ctl(
        home,
        &[
            "dagrun", "list", "--dag-id", "etl", "--state", "failed", "--limit", "5",
        ],
    )
    .await;
    assert!(
        failed.contains("\"r2\"") && !failed.contains("\"r1\""),
        "{failed}"
    );

    ctl(
        home,
        &[
            "dags",
            "trigger",
            "etl_backup",
            "--dag-run-id",
            "ctl_run",
            "--note",
            "from airflowctl",
        ],
    )
    .await;
    // (`--conf` cannot be given: airflowctl 0.1.5 parses it with `dict(text)`, which fails.)
    let note: Option<String> = sqlx::query_scalar(
        "SELECT note FROM dag_runs WHERE dag_id = 'etl_backup' AND run_id = 'ctl_run'",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(note.as_deref(), Some("from airflowctl"));
    let run = ctl(home, &["dagrun", "get", "etl_backup", "ctl_run"]).await;
    assert!(run.contains("\"queued\""), "{run}");
}
