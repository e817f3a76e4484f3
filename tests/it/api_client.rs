//! Airflow's own Python client (`apache-airflow-client`) against a running updraft.

use crate::web_support::*;

/// The Python with Airflow's client (and `airflowctl`): `UPDRAFT_TEST_PYTHON`, else the
/// virtualenv `scripts/test` creates, else `python3`.
pub fn test_python() -> String {
    if let Ok(p) = std::env::var("UPDRAFT_TEST_PYTHON") {
        return p;
    }
    let venv = test_venv().join("bin/python");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".into()
}

/// Where `scripts/test` puts its virtualenv (`UPDRAFT_TEST_VENV` to move it).
pub fn test_venv() -> std::path::PathBuf {
    match std::env::var("UPDRAFT_TEST_VENV") {
        Ok(v) => v.into(),
        Err(_) => {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/updraft/test-venv")
        }
    }
}

pub fn has_client(python: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import airflow_client.client"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Airflow's own Python client: list DAGs, trigger with conf, get the run, read task
/// instances and a log, list import errors, and a 404.
#[tokio::test]
async fn airflow_python_client_works() {
    // `scripts/test` installs the client (pinned); running this test alone needs it too.
    let python = test_python();
    assert!(
        has_client(&python),
        "Airflow's Python client is missing: run `scripts/test`, or `python3 -m pip install apache-airflow-client==3.3.2`"
    );
    let app = TestApp::spawn().await;
    store_dags(app.pool(), vec![sample_dag("user_automation", &["users"])]).await;
    // A finished run with a task log, for the log and task instance calls.
    let req = updraft::db::runs::TriggerRequest {
        run_id: Some("seeded".into()),
        ..Default::default()
    };
    updraft::db::runs::trigger(app.pool(), "user_automation", req)
        .await
        .unwrap();
    let pk = start_run(
        app.pool(),
        "user_automation",
        "seeded",
        &["extract", "load"],
    )
    .await;
    let ti = set_task(app.pool(), pk, "extract", "running").await;
    set_task(app.pool(), pk, "extract", "success").await;
    add_log(app.pool(), ti, 1, &["hello from extract", "done"]).await;
    finish_run(app.pool(), pk, "success").await;
    let token = app.token().await;
    let script = r#"
import sys, airflow_client.client as c
from airflow_client.client.api import dag_api, dag_run_api, task_instance_api, import_error_api
from airflow_client.client.models import TriggerDAGRunPostBody, DAGPatchBody
conf = c.Configuration(host=sys.argv[1], access_token=sys.argv[2])
with c.ApiClient(conf) as api:
    dags = dag_api.DAGApi(api).get_dags(tags=["users"])
    assert dags.total_entries == 1 and dags.dags[0].dag_id == "user_automation", dags
    assert dags.dags[0].tags[0].name == "users"
    d = dag_api.DAGApi(api).patch_dag("user_automation", DAGPatchBody(is_paused=False))
    assert d.is_paused is False
    runs = dag_run_api.DagRunApi(api)
    run = runs.trigger_dag_run("user_automation", TriggerDAGRunPostBody(dag_run_id="py_run", logical_date=None, conf={"who": "python"}))
    assert run.dag_run_id == "py_run" and run.conf == {"who": "python"}, run
    got = runs.get_dag_run("user_automation", "py_run")
    assert got.state.value == "queued", got
    listed = runs.get_dag_runs("~")
    assert listed.total_entries == 2
    ti_api = task_instance_api.TaskInstanceApi(api)
    seeded = ti_api.get_task_instances("user_automation", "seeded")
    states = {t.task_id: (t.state.value if t.state else None) for t in seeded.task_instances}
    assert states == {"extract": "success", "load": None}, states
    log = ti_api.get_log("user_automation", "seeded", "extract", 1)
    events = [m.event for m in log.content.actual_instance]
    assert events == ["hello from extract", "done"], events
    assert log.continuation_token is None
    tis = task_instance_api.TaskInstanceApi(api).get_task_instances("user_automation", "py_run")
    assert tis.total_entries == 0
    errs = import_error_api.ImportErrorApi(api).get_import_errors()
    assert errs.total_entries == 0
    try:
        runs.get_dag_run("user_automation", "nope")
        raise SystemExit("expected 404")
    except c.exceptions.NotFoundException:
        pass
print("ok")
"#;
    let out = tokio::process::Command::new(&python)
        .args(["-c", script, &app.base, &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed:\n{stdout}\n{stderr}"
    );
}

/// Every endpoint updraft implements, through Airflow's Python client, with the filters
/// clients use (`tests/it/python/client_every_endpoint.py`).
#[tokio::test]
async fn airflow_python_client_calls_every_endpoint() {
    let python = test_python();
    assert!(
        has_client(&python),
        "Airflow's Python client is missing: run `scripts/test`, which creates its virtualenv"
    );
    let app = TestApp::spawn().await;
    crate::api_compat::seed(&app).await;
    add_import_error(app.pool(), "report.yaml", "report.yaml:1:1: broken").await;
    let token = app.token().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/python/client_every_endpoint.py"
    );
    let out = tokio::process::Command::new(&python)
        .args([script, &app.base, &token])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed:\n{stdout}\n{stderr}"
    );
}
