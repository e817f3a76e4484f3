"""Clear, mark, notes, delete and the audit log through Airflow's own Python client.

Run by tests/it/operate_api.rs against a server with a failed run `r1` of `etl`
(extract → transform → load, + notify; transform failed, load upstream_failed)."""

import sys

import airflow_client.client as c
from airflow_client.client.api import dag_run_api, event_log_api, task_instance_api
from airflow_client.client.models import (
    ClearTaskInstancesBodyTaskIdsInner,
    ClearTaskInstancesBody,
    DAGRunClearBody,
    DAGRunPatchBody,
    PatchTaskInstanceBody,
)

conf = c.Configuration(host=sys.argv[1], access_token=sys.argv[2])
with c.ApiClient(conf) as api:
    tis = task_instance_api.TaskInstanceApi(api)
    runs = dag_run_api.DagRunApi(api)

    dry = tis.post_clear_task_instances("etl", ClearTaskInstancesBody())
    assert sorted(t.task_id for t in dry.task_instances) == ["load", "transform"], dry
    cleared = tis.post_clear_task_instances(
        "etl",
        ClearTaskInstancesBody(
            dry_run=False, dag_run_id="r1", task_ids=[ClearTaskInstancesBodyTaskIdsInner("transform")], include_downstream=True
        ),
    )
    assert cleared.total_entries == 2, cleared
    assert runs.get_dag_run("etl", "r1").state.value == "running"

    would = tis.patch_task_instance_dry_run(
        "etl", "r1", "transform", PatchTaskInstanceBody(new_state="success")
    )
    assert [t.task_id for t in would.task_instances] == ["transform"], would
    marked = tis.patch_task_instance(
        "etl", "r1", "transform", PatchTaskInstanceBody(new_state="success", note="checked")
    )
    assert marked.task_instances[0].state.value == "success", marked
    assert marked.task_instances[0].note == "checked"
    load = tis.get_task_instance("etl", "r1", "load")
    assert load.state.value == "queued", load

    run = runs.patch_dag_run("etl", "r1", DAGRunPatchBody(state="failed", note="stopped"))
    assert run.state.value == "failed" and run.note == "stopped", run
    again = runs.clear_dag_run("etl", "r1", DAGRunClearBody(dry_run=False))
    assert again.actual_instance.state.value == "running", again

    runs.delete_dag_run("etl", "r1")
    try:
        runs.get_dag_run("etl", "r1")
        raise SystemExit("expected 404 after delete")
    except c.exceptions.NotFoundException:
        pass

    log = event_log_api.EventLogApi(api).get_event_logs(dag_id="etl")
    events = [e.event for e in log.event_logs]
    assert events == ["clear", "mark", "mark", "clear", "delete"], events
    assert all(e.owner == "alice" for e in log.event_logs), log
print("ok")
