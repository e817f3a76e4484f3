"""Airflow's own Python client (apache-airflow-client 3.3.2) against a running updraft:
every endpoint updraft implements, with the filters clients use. Run by
tests/it/api_client.rs with the server URL and a token; prints "ok" at the end.

The data is tests/it/api_compat.rs's `seed`: DAGs etl, etl_backup, report; runs r1
(success, scheduled), r2 (failed, two tries), r3 (running) of etl, each with XComs
`return_value` and `rows` of task extract."""

import json
import sys
from datetime import datetime, timezone

import airflow_client.client as c
from airflow_client.client.api import (
    config_api, dag_api, dag_run_api, dag_source_api, dag_stats_api, dag_version_api,
    dag_warning_api, import_error_api, monitor_api, task_api, task_instance_api,
    version_api, x_com_api,
)
from airflow_client.client.models import (
    DagRunState,
    DAGPatchBody, DAGRunsBatchBody, TaskInstancesBatchBody, TriggerDAGRunPostBody,
)

conf = c.Configuration(host=sys.argv[1], access_token=sys.argv[2])
with c.ApiClient(conf) as api:
    # Version needs no token.
    with c.ApiClient(c.Configuration(host=sys.argv[1])) as anon:
        assert version_api.VersionApi(anon).get_version().version
    assert monitor_api.MonitorApi(anon).get_health().metadatabase.status == "healthy"

    dags = dag_api.DAGApi(api)
    got = dags.get_dags(order_by=["-dag_id"], limit=2)
    assert [d.dag_id for d in got.dags] == ["report", "etl_backup"] and got.total_entries == 3, got
    got = dags.get_dags(dag_id_pattern="etl%back", tags=["core"], tags_match_mode="all", paused=False)
    assert [d.dag_id for d in got.dags] == ["etl_backup"], got
    got = dags.get_dags(has_import_errors=False, last_dag_run_state=DagRunState.RUNNING, exclude_stale=True)
    assert [d.dag_id for d in got.dags] == ["etl"], got
    got = dags.get_dags(dag_run_state=["failed", "running"], owners=["data-team"])
    assert [d.dag_id for d in got.dags] == ["etl"], got
    assert dags.get_dag("etl").dag_id == "etl"
    assert dags.patch_dag("report", DAGPatchBody(is_paused=True)).is_paused is True
    assert dags.get_dags(paused=True).total_entries == 1
    details = dags.get_dag_details("etl")
    assert details.timezone == "UTC" and details.latest_dag_version.version_number == 1, details
    assert dags.get_dag_tags(order_by=["name"]).tags == ["core", "daily"]

    tasks = task_api.TaskApi(api)
    assert [t.task_id for t in tasks.get_tasks("etl").tasks] == ["extract", "load", "notify", "transform"]
    assert tasks.get_task("etl", "load").owner == "data-team"
    assert "dag_id: etl" in dag_source_api.DagSourceApi(api).get_dag_source("etl").content
    stats = dag_stats_api.DagStatsApi(api).get_dag_stats(dag_ids=["etl"])
    assert {s.state.value: s.count for s in stats.dags[0].stats}["failed"] == 1, stats
    versions = dag_version_api.DagVersionApi(api)
    assert versions.get_dag_versions("etl").total_entries == 1
    assert versions.get_dag_version("etl", 1).version_number == 1
    assert dag_warning_api.DagWarningApi(api).list_dag_warnings(dag_id="etl").total_entries == 0

    runs = dag_run_api.DagRunApi(api)
    got = runs.get_dag_runs("~", state=["failed"])
    assert [r.dag_run_id for r in got.dag_runs] == ["r2"], got
    got = runs.get_dag_runs("etl", run_type=["manual"], order_by=["-run_id"], limit=1)
    assert [r.dag_run_id for r in got.dag_runs] == ["r3"] and got.total_entries == 2, got
    got = runs.get_dag_runs("~", end_date_gte=datetime(2000, 1, 1, tzinfo=timezone.utc), run_id_pattern="r")
    assert sorted(r.dag_run_id for r in got.dag_runs) == ["r1", "r2"], got
    got = runs.get_list_dag_runs_batch("~", DAGRunsBatchBody(dag_ids=["etl"], states=["running"]))
    assert [r.dag_run_id for r in got.dag_runs] == ["r3"], got
    run = runs.trigger_dag_run("etl_backup", TriggerDAGRunPostBody(dag_run_id="py_run", logical_date=None, conf={"who": "python"}))
    assert run.conf == {"who": "python"} and run.state.value == "queued", run
    assert runs.get_dag_run("etl", "r1").state.value == "success"
    # NDJSON, which the generated method cannot decode (against Airflow neither): read raw.
    raw = runs.wait_dag_run_until_finished_without_preload_content("etl", "r1", interval=0.1, result=["extract"])
    lines = [json.loads(line) for line in raw.data.decode().splitlines()]
    assert lines[-1] == {"state": "success", "results": {"extract": {"run": "r1"}}}, lines

    tis = task_instance_api.TaskInstanceApi(api)
    got = tis.get_task_instances("etl", "r2", state=["failed"])
    assert [t.task_id for t in got.task_instances] == ["extract"], got
    got = tis.get_task_instances("~", "~", task_id="load", pool=["default_pool"], order_by=["-id"])
    assert got.total_entries == 3, got
    got = tis.get_task_instances_batch("~", "~", TaskInstancesBatchBody(dag_ids=["etl"], dag_run_ids=["r1"], state=["success"]))
    assert [t.task_id for t in got.task_instances] == ["extract"], got
    ti = tis.get_task_instance("etl", "r2", "extract")
    assert ti.try_number == 2 and ti.state.value == "failed", ti
    tries = tis.get_task_instance_tries("etl", "r2", "extract")
    assert [t.try_number for t in tries.task_instances] == [1, 2], tries
    assert tis.get_task_instance_try_details("etl", "r2", "extract", 1).try_number == 1
    log = tis.get_log("etl", "r2", "extract", 2, full_content=True)
    assert [m.event for m in log.content.actual_instance] == ["second try"], log

    xcoms = x_com_api.XComApi(api)
    got = xcoms.get_xcom_entries("etl", "r1", "extract", xcom_key_pattern="row")
    assert [x.key for x in got.xcom_entries] == ["rows"], got
    entry = xcoms.get_xcom_entry("etl", "extract", "r1", "return_value")
    assert entry.actual_instance.value == {"run": "r1"}, entry

    errors = import_error_api.ImportErrorApi(api)
    got = errors.get_import_errors(filename_pattern="report")
    assert got.total_entries == 1, got
    assert errors.get_import_error(got.import_errors[0].import_error_id).filename == "report.yaml"

    try:
        config_api.ConfigApi(api).get_config()
        raise SystemExit("expected 403: the configuration is not exposed")
    except c.exceptions.ForbiddenException:
        pass
    try:
        runs.get_dag_run("etl", "nope")
        raise SystemExit("expected 404")
    except c.exceptions.NotFoundException:
        pass
print("ok")
