#!/usr/bin/env python3
"""Render a corpus of Jinja expressions with real Airflow and write the results as a fixture.

Output: tests/fixtures/airflow/template_corpus.json (relative to the repository root).

Everything that decides *what a template renders to* is Airflow's own code, imported from the
installed ``apache-airflow`` / ``apache-airflow-task-sdk`` packages:

* the DAG and operator classes (``airflow.sdk.DAG``, ``BaseOperator``), their defaults and reprs;
* ``DAG.get_template_env()`` -> Airflow's ``SandboxedEnvironment`` with ``StrictUndefined``, the
  ``jinja2.ext.do`` extension and Airflow's ``ds``/``ts``/... filters;
* ``BaseOperator.render_template_fields()`` -> ``Templater.render_template`` ->
  ``render_template_to_string`` (the exact path ``task_runner._prepare`` takes for a templated field);
* ``RuntimeTaskInstance.get_template_context()`` (the context a worker builds: ``ds``, ``ts``,
  ``params`` merged with ``dag_run.conf``, ``var``, ``conn``, ``macros``, lazy ``prev_*_success``...);
* ``RuntimeTaskInstance.xcom_pull`` -> ``XCom.get_one/get_all`` -> ``SUPERVISOR_COMMS.send``;
* the worker's secrets chain (``EnvironmentVariablesBackend`` then ``ExecutionAPISecretsBackend``)
  for ``var.*`` / ``conn.*``; variables and connections live in ``AIRFLOW_VAR_*`` / ``AIRFLOW_CONN_*``;
* the supervisor's request handlers (``request_handlers.handle_get_xcom`` ...) and the real
  Execution API HTTP ``Client``; the StartupDetails message (which carries ``dag_run``) goes
  through the real msgpack frame encoder/decoder, as it does between supervisor and task process.

Stood in (no database, no API server, no subprocess):

* the Execution API *server*: an ``httpx.MockTransport`` answers the handful of routes the
  templates need (``xcoms/...``, ``xcoms/.../slice``, ``task-instances/{id}/previous-successful-dagrun``,
  ``variables/{key}``, ``connections/{id}``) from the fixed tables in CONTEXT, re-implementing the
  SQL of ``airflow/api_fastapi/execution_api/routes/{xcoms,task_instances}.py`` (filters and ordering
  copied, see ``FakeExecutionAPI``);
* the supervisor process: ``LoopbackComms`` encodes each request with the real frame encoder,
  decodes it as the supervisor would, dispatches it to the real request handler, and decodes the
  response frame with the real ``CommsDecoder`` code, all in-process (like ``dag.test()``'s
  ``InProcessSupervisorComms``, plus the msgpack round trip).

Rerun with scripts/airflow-fixtures/README.md.
"""

from __future__ import annotations

import os
import sys

# --- make the run reproducible: fixed hash seed (set reprs), private AIRFLOW_HOME, UTC ------------
if os.environ.get("PYTHONHASHSEED") != "0" or os.environ.get("_UPDRAFT_FIXTURE_REEXEC") != "1":
    env = dict(os.environ, PYTHONHASHSEED="0", _UPDRAFT_FIXTURE_REEXEC="1", TZ="UTC")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import json
import atexit
import shutil
import tempfile


def _mk_home() -> str:
    d = tempfile.mkdtemp(prefix="updraft-airflow-home-")
    atexit.register(shutil.rmtree, d, True)
    return d

import uuid
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "airflow" / "template_corpus.json"

_home = _mk_home()
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DEFAULT_TIMEZONE"] = "utc"
# Drop any AIRFLOW_VAR_/AIRFLOW_CONN_ from the caller's shell: only ours count.
for _k in list(os.environ):
    if _k.startswith(("AIRFLOW_VAR_", "AIRFLOW_CONN_")):
        del os.environ[_k]

# =================================================================================================
# The fixed context. Everything below is plain JSON and is written verbatim into the fixture, so the
# Rust side can rebuild the same context. All instants are UTC.
# =================================================================================================

DAG_ID = "updraft_fixture"

DAG_SPEC = {
    "dag_id": DAG_ID,
    "description": "Fixture DAG for template rendering",
    "schedule": "@daily",
    "start_date": "2024-01-01T00:00:00+00:00",
    "tags": ["fixtures", "templates"],
    # dict key order == insertion order; written with sort_keys, so keep these already sorted
    "params": {
        "env": "prod",
        "flag": True,
        "nested": {"a": {"b": [1, 2, 3]}},
        "none_param": None,
        "ratio": 0.5,
        "threshold": 10,
    },
    "default_args": {"owner": "data-eng", "retries": 2, "retry_delay_seconds": 300},
    # tasks in definition order; every task inherits default_args unless overridden here
    "tasks": [
        {"task_id": "extract"},
        {"task_id": "transform", "upstream": ["extract"]},
        {"task_id": "fan_out", "upstream": ["extract"]},
        {"task_id": "flag_task"},
        {
            "task_id": "render",
            "upstream": ["transform", "fan_out"],
            "retries": 3,
            "params": {"task_param": "tp"},
            "doc_md": "Renders *things*",
        },
    ],
}

RENDER_TASK_ID = "render"


def _run(day: int, state: str, start: str | None, end: str | None, conf=None, run_type="scheduled"):
    ld = f"2024-03-{day:02d}T06:07:08.123456+00:00"
    return {
        "run_id": f"{run_type}__{ld}",
        "run_type": run_type,
        "logical_date": ld,
        "run_after": ld,
        "data_interval_start": f"2024-03-{day - 1:02d}T00:00:00+00:00",
        "data_interval_end": f"2024-03-{day:02d}T00:00:00+00:00",
        "start_date": start,
        "end_date": end,
        "state": state,
        "conf": conf or {},
    }


# All runs of the DAG the stand-in API server knows about (for prev_*_success and prior XComs).
DAG_RUNS = [
    _run(2, "success", "2024-03-02T06:09:00+00:00", "2024-03-02T06:12:00+00:00"),
    _run(3, "success", "2024-03-03T06:10:00.250000+00:00", "2024-03-03T06:15:30+00:00"),
    _run(4, "failed", "2024-03-04T06:11:00+00:00", "2024-03-04T06:20:00+00:00"),
    _run(
        5,
        "running",
        "2024-03-05T06:10:00.500000+00:00",
        None,
        # keys sorted so that the JSON file keeps Airflow's insertion order
        conf={"conf_nested": {"x": [1, 2]}, "env": "staging", "k": "v", "num": 3},
    ),
    {
        "run_id": "manual__2024-03-06T09:00:00+00:00",
        "run_type": "manual",
        "logical_date": None,
        "run_after": "2024-03-06T09:00:00+00:00",
        "data_interval_start": None,
        "data_interval_end": None,
        "start_date": "2024-03-06T09:00:01+00:00",
        "end_date": None,
        "state": "running",
        "conf": {},
    },
]
RUNS_BY_ID = {r["run_id"]: r for r in DAG_RUNS}
MAIN_RUN = DAG_RUNS[3]["run_id"]
FIRST_RUN = DAG_RUNS[0]["run_id"]
NULL_LD_RUN = DAG_RUNS[4]["run_id"]

# XCom table: what upstream tasks pushed. "value" is the Python value the task returned/pushed; the
# stand-in stores XCom.serialize_value(value), as the real API server's xcom table would hold.
XCOMS = [
    {"run_id": MAIN_RUN, "task_id": "extract", "map_index": -1, "key": "return_value",
     "value": {"path": "/data/2024-03-05.csv", "rows": 42}},
    {"run_id": MAIN_RUN, "task_id": "extract", "map_index": -1, "key": "meta", "value": "m1"},
    {"run_id": MAIN_RUN, "task_id": "transform", "map_index": -1, "key": "return_value", "value": [1, 2, 3]},
    {"run_id": MAIN_RUN, "task_id": "fan_out", "map_index": 0, "key": "return_value", "value": "a"},
    {"run_id": MAIN_RUN, "task_id": "fan_out", "map_index": 1, "key": "return_value", "value": "b"},
    {"run_id": MAIN_RUN, "task_id": "fan_out", "map_index": 2, "key": "return_value", "value": "c"},
    {"run_id": MAIN_RUN, "task_id": "flag_task", "map_index": -1, "key": "return_value", "value": True},
    # only in earlier runs -> visible with include_prior_dates=True
    {"run_id": DAG_RUNS[2]["run_id"], "task_id": "extract", "map_index": -1, "key": "legacy", "value": "old-value"},
    {"run_id": DAG_RUNS[1]["run_id"], "task_id": "transform", "map_index": -1, "key": "summary",
     "value": {"total": 6}},
    # a run *after* the main run: never visible from the main run
    {"run_id": NULL_LD_RUN, "task_id": "extract", "map_index": -1, "key": "future", "value": "from-manual-run"},
]

# Variables / connections: exported as AIRFLOW_VAR_<KEY.upper()> / AIRFLOW_CONN_<ID.upper()>.
VARIABLES = {
    "config_json": '{"bucket": "b1", "enabled": true, "nested": {"depth": 2, "list": [1, 2, 3]}}',
    "empty": "",
    "greeting": "hello world",
    "list_var": '["x", "y"]',
    "number": "42",
}
CONNECTIONS = {
    # URI form (user/password percent-encoded in the URI)
    "pg_main": "postgres://user%40x:p%40ss%2Fw@db.example.com:5432/analytics?application_name=updraft&sslmode=require",
    # JSON form
    "http_json": json.dumps(
        {
            "conn_type": "http",
            "extra": {"timeout": 30, "verify": False},
            "host": "api.example.com",
            "login": "svc",
            "password": "s3cret",
            "port": 443,
            "schema": "https",
        },
        sort_keys=True,
    ),
}

TI_SPECS = {
    # context name -> the task instance being rendered
    "main": {"id": "00000000-0000-4000-8000-000000000001", "run_id": MAIN_RUN, "try_number": 2,
             "map_index": -1, "max_tries": 3, "hostname": "worker-1",
             "start_date": "2024-03-05T06:10:01.750000+00:00"},
    "first_run": {"id": "00000000-0000-4000-8000-000000000002", "run_id": FIRST_RUN, "try_number": 1,
                  "map_index": -1, "max_tries": 3, "hostname": "worker-1",
                  "start_date": "2024-03-02T06:09:01+00:00"},
    "null_logical_date": {"id": "00000000-0000-4000-8000-000000000003", "run_id": NULL_LD_RUN,
                          "try_number": 1, "map_index": -1, "max_tries": 3, "hostname": "worker-1",
                          "start_date": "2024-03-06T09:00:02+00:00"},
}
DAG_VERSION_ID = "00000000-0000-4000-8000-0000000000ff"

# =================================================================================================
# The corpus. (context name, expression[, note])
# =================================================================================================
M = "main"
F = "first_run"
N = "null_logical_date"

CASES: list[tuple] = [
    # --- ds / ts family ------------------------------------------------------------------------
    (M, "{{ ds }}"),
    (M, "{{ ds_nodash }}"),
    (M, "{{ ts }}"),
    (M, "{{ ts_nodash }}"),
    (M, "{{ ts_nodash_with_tz }}"),
    (M, "s3://bucket/{{ ds_nodash }}/part-{{ ts_nodash }}.csv"),
    (M, "{{ ds[:4] }}/{{ ds[5:7] }}"),
    (M, "{{ ds | length }}"),
    (M, "{{ task_instance_key_str }}"),
    (F, "{{ ts }}"),
    (N, "{{ ds }}", "no logical_date -> ds is not in the context at all"),
    (N, "{{ ds | default('no-ds') }}"),
    (N, "{{ ts_nodash }}"),
    (N, "{{ task_instance_key_str }}", "falls back to <dag>__<task>__<run_id>"),
    # --- filters on datetimes ------------------------------------------------------------------
    (M, "{{ logical_date | ds }}"),
    (M, "{{ logical_date | ds_nodash }}"),
    (M, "{{ logical_date | ts }}"),
    (M, "{{ logical_date | ts_nodash }}"),
    (M, "{{ logical_date | ts_nodash_with_tz }}"),
    (M, "{{ data_interval_start | ts }}", "isoformat drops .000000 when microsecond == 0"),
    (M, "{{ data_interval_end | ts_nodash_with_tz }}"),
    (M, "{{ dag_run.start_date | ts }}"),
    (M, "{{ dag_run.end_date | ds }}", "filters map None -> None, which renders as 'None'"),
    (M, "{{ logical_date.date() | ts }}"),
    (M, "{{ (logical_date + macros.timedelta(days=1)) | ds }}"),
    (M, "{{ (logical_date - macros.timedelta(hours=7)) | ts_nodash }}"),
    # --- logical_date ---------------------------------------------------------------------------
    (M, "{{ logical_date }}"),
    (M, "{{ logical_date.isoformat() }}"),
    (M, "{{ logical_date.strftime('%Y-%m-%d %H:%M:%S') }}"),
    (M, "{{ logical_date.strftime('%Y%m%d%H%M%S.%f %z %Z') }}"),
    (M, "{{ logical_date.strftime('%a %A %b %B %d %j %U %w %y %I %p') }}"),
    (M, "{{ logical_date.year }}-{{ logical_date.month }}-{{ logical_date.day }}"),
    (M, "{{ logical_date.hour }}:{{ logical_date.minute }}:{{ logical_date.second }}.{{ logical_date.microsecond }}"),
    (M, "{{ logical_date.weekday() }} {{ logical_date.isoweekday() }}"),
    (M, "{{ logical_date.timestamp() }}"),
    (M, "{{ logical_date.tzinfo }}"),
    (M, "{{ logical_date.date() }}"),
    (M, "{{ logical_date.time() }}"),
    (M, "{{ logical_date.replace(hour=0, minute=0, second=0, microsecond=0) }}"),
    (M, "{{ logical_date.replace(hour=0, minute=0, second=0, microsecond=0).isoformat() }}"),
    (M, "{{ logical_date + macros.timedelta(days=1) }}"),
    (M, "{{ (logical_date + macros.timedelta(days=1)).isoformat() }}"),
    (M, "{{ logical_date - macros.timedelta(days=1) }}"),
    (M, "{{ logical_date > data_interval_start }}"),
    (M, "{{ logical_date == dag_run.logical_date }}"),
    (M, "{{ logical_date < macros.datetime(2024, 1, 1, tzinfo=logical_date.tzinfo) }}"),
    (M, "{{ logical_date.add(days=1) }}", "pendulum-only API"),
    (M, "{{ logical_date.start_of('day') }}", "pendulum-only API"),
    (M, "{{ logical_date.format('YYYY-MM-DD HH:mm') }}", "pendulum-only API"),
    (M, "{{ logical_date.int_timestamp }}", "pendulum-only API"),
    (N, "{{ logical_date }}"),
    (N, "{{ dag_run.logical_date }}"),
    # --- data intervals -------------------------------------------------------------------------
    (M, "{{ data_interval_start }}"),
    (M, "{{ data_interval_end }}"),
    (M, "{{ data_interval_start.isoformat() }}"),
    (M, "{{ data_interval_end.strftime('%Y%m%d') }}"),
    (M, "{{ data_interval_end - data_interval_start }}", "pendulum Interval str"),
    (M, "{{ (data_interval_end - data_interval_start).total_seconds() }}"),
    (M, "{{ data_interval_start + macros.timedelta(hours=12) }}"),
    (M, "{{ data_interval_start < data_interval_end }}"),
    (N, "{{ data_interval_start }}"),
    # --- prev_*_success -------------------------------------------------------------------------
    (M, "{{ prev_data_interval_start_success }}", "previous *successful* run (the failed 03-04 run is skipped)"),
    (M, "{{ prev_data_interval_end_success }}"),
    (M, "{{ prev_start_date_success }}"),
    (M, "{{ prev_end_date_success }}"),
    (M, "{{ prev_start_date_success | ts }}"),
    (M, "{{ prev_end_date_success.isoformat() }}"),
    (M, "{{ prev_data_interval_start_success | ds }}"),
    (M, "{{ prev_start_date_success is none }}"),
    (F, "{{ prev_data_interval_start_success }}", "no earlier successful run: lazy proxy around None"),
    (F, "{{ prev_data_interval_end_success }}"),
    (F, "{{ prev_start_date_success }}"),
    (F, "{{ prev_end_date_success }}"),
    (F, "{{ prev_start_date_success is none }}", "a lazy_object_proxy.Proxy(None) is not None"),
    (F, "{% if prev_start_date_success %}set{% else %}unset{% endif %}", "bool(proxy) is bool(None)"),
    (F, "{{ prev_start_date_success == None }}"),
    (F, "{{ prev_start_date_success | ds }}", "ds filter checks `is None`, the proxy passes, then .strftime fails"),
    (F, "{{ prev_start_date_success or 'never' }}"),
    (N, "{{ prev_start_date_success }}"),
    (N, "{{ prev_data_interval_start_success }}", "only defined when the run has a logical_date"),
    # --- run_id / dag_run -----------------------------------------------------------------------
    (M, "{{ run_id }}"),
    (M, "{{ dag_run.run_id }}"),
    (M, "{{ dag_run.dag_id }}"),
    (M, "{{ dag_run.run_type }}", "str() of the DagRunType enum"),
    (M, "{{ dag_run.run_type == 'scheduled' }}"),
    (M, "{{ dag_run.run_type.value }}"),
    (M, "{{ dag_run.state }}"),
    (M, "{{ dag_run.logical_date }}", "dag_run datetimes are stdlib datetimes, not pendulum"),
    (M, "{{ dag_run.logical_date.isoformat() }}"),
    (M, "{{ dag_run.start_date }}"),
    (M, "{{ dag_run.end_date }}"),
    (M, "{{ dag_run.data_interval_start }}"),
    (M, "{{ dag_run.run_after }}"),
    (M, "{{ dag_run.conf }}"),
    (M, "{{ dag_run.conf['k'] }}"),
    (M, "{{ dag_run.conf.k }}"),
    (M, "{{ dag_run.conf.get('k', 'd') }}"),
    (M, "{{ dag_run.conf.get('missing', 'd') }}"),
    (M, "{{ dag_run.conf.get('missing') }}"),
    (M, "{{ dag_run.conf.conf_nested.x[1] }}"),
    (M, "{{ dag_run.conf.num * 2 }}"),
    (M, "{{ dag_run.conf | tojson }}"),
    (M, "{{ dag_run.conf.missing }}"),
    (M, "{{ dag_run.conf['missing'] }}"),
    (M, "{{ dag_run.clear_number }}"),
    (N, "{{ run_id }}"),
    (N, "{{ dag_run.run_type }}"),
    (N, "{{ dag_run.conf }}"),
    (N, "{{ dag_run.conf.get('k', 'd') }}"),
    # --- params ---------------------------------------------------------------------------------
    (M, "{{ params }}", "dag params, then task params, then dag_run.conf keys (conf overrides params)"),
    (M, "{{ params.env }}", "dag_run.conf overrides the DAG param"),
    (M, "{{ params['env'] }}"),
    (M, "{{ params.threshold + 1 }}"),
    (M, "{{ params.nested.a.b[0] }}"),
    (M, "{{ params.nested['a'] }}"),
    (M, "{{ params.nested.a.b | sum }}"),
    (M, "{{ params.get('env') }}"),
    (M, "{{ params.get('missing', 'fallback') }}"),
    (M, "{{ params.flag }}"),
    (M, "{{ params.none_param }}"),
    (M, "{{ params.ratio * 2 }}"),
    (M, "{{ params.task_param }}"),
    (M, "{{ params.k }}", "conf-only keys end up in params too"),
    (M, "{{ params | length }}"),
    (M, "{{ params.missing }}"),
    (M, "{{ params.none_param | default('d') }}"),
    (M, "{{ params.none_param | default('d', true) }}"),
    (F, "{{ params.env }}"),
    (F, "{{ params }}"),
    # --- dag ------------------------------------------------------------------------------------
    (M, "{{ dag }}"),
    (M, "{{ dag.dag_id }}"),
    (M, "{{ dag.owner }}"),
    (M, "{{ dag.description }}"),
    (M, "{{ dag.tags | sort }}"),
    (M, "{{ dag.tags | sort | join(',') }}"),
    (M, "{{ dag.tags | length }}"),
    (M, "{{ 'fixtures' in dag.tags }}"),
    (M, "{{ dag.catchup }}"),
    (M, "{{ dag.max_active_runs }}"),
    (M, "{{ dag.max_active_tasks }}"),
    (M, "{{ dag.dagrun_timeout }}"),
    (M, "{{ dag.start_date }}"),
    (M, "{{ dag.doc_md }}"),
    (M, "{{ dag.task_ids }}"),
    (M, "{{ dag.default_args }}"),
    (M, "{{ dag.params }}"),
    (M, "{{ dag.nope }}"),
    # --- task -----------------------------------------------------------------------------------
    (M, "{{ task }}"),
    (M, "{{ task.task_id }}"),
    (M, "{{ task.owner }}"),
    (M, "{{ task.retries }}"),
    (M, "{{ task.retry_delay }}"),
    (M, "{{ task.retry_delay.total_seconds() }}"),
    (M, "{{ task.queue }}"),
    (M, "{{ task.pool }}"),
    (M, "{{ task.priority_weight }}"),
    (M, "{{ task.trigger_rule }}"),
    (M, "{{ task.retry_exponential_backoff }}"),
    (M, "{{ task.max_retry_delay }}"),
    (M, "{{ task.execution_timeout }}"),
    (M, "{{ task.depends_on_past }}"),
    (M, "{{ task.doc_md }}"),
    (M, "{{ task.dag_id }}"),
    (M, "{{ task.upstream_task_ids | sort }}"),
    (M, "{{ task.downstream_task_ids | list }}"),
    (M, "{{ task.params }}"),
    # --- ti / task_instance ---------------------------------------------------------------------
    (M, "{{ ti.try_number }}"),
    (M, "{{ ti.max_tries }}"),
    (M, "{{ ti.task_id }}"),
    (M, "{{ ti.dag_id }}"),
    (M, "{{ ti.run_id }}"),
    (M, "{{ ti.map_index }}"),
    (M, "{{ ti.hostname }}"),
    (M, "{{ ti.start_date }}"),
    (M, "{{ task_instance.try_number }}"),
    (M, "{{ task_instance.task_id }}"),
    (M, "{{ ti.task.task_id }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract') }}"),
    (M, "{{ ti.xcom_pull('extract') }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract')['rows'] }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract').path }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract') | tojson }}"),
    (M, "{{ ti.xcom_pull(task_ids='transform') }}"),
    (M, "{{ ti.xcom_pull(task_ids='transform') | sum }}"),
    (M, "{{ ti.xcom_pull(task_ids='flag_task') }}"),
    (M, "{{ ti.xcom_pull(task_ids=['extract', 'transform']) }}"),
    (M, "{{ ti.xcom_pull(task_ids=['fan_out', 'transform']) }}", "lists are flattened one level across tasks"),
    (M, "{{ ti.xcom_pull(task_ids=['extract', 'missing']) }}"),
    (M, "{{ ti.xcom_pull(task_ids='fan_out') }}", "all map indexes of a mapped upstream, by map_index"),
    (M, "{{ ti.xcom_pull(task_ids='fan_out', map_indexes=1) }}"),
    (M, "{{ ti.xcom_pull(task_ids='fan_out', map_indexes=[2, 0]) }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract', key='meta') }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract', key='nope') }}"),
    (M, "{{ ti.xcom_pull(task_ids='missing') }}"),
    (M, "{{ ti.xcom_pull(task_ids='missing', default='d') }}", "default is ignored unless map_indexes is given"),
    (M, "{{ ti.xcom_pull(task_ids='missing', default='d', map_indexes=-1) }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract', default='d', map_indexes=-1) }}"),
    (M, "{{ ti.xcom_pull() }}", "task_ids=None means the calling task"),
    (M, "{{ ti.xcom_pull(task_ids='extract', key='legacy') }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract', key='legacy', include_prior_dates=True) }}"),
    (M, "{{ ti.xcom_pull(task_ids='transform', key='summary', include_prior_dates=True) }}"),
    (M, "{{ ti.xcom_pull(task_ids='extract', include_prior_dates=True, map_indexes=-1) }}",
     "get_one with prior dates: newest logical_date first"),
    (M, "{{ ti.xcom_pull(task_ids='extract', key='future', include_prior_dates=True) }}",
     "runs after this one are never included"),
    (M, "{{ ti.xcom_pull(task_ids='extract', dag_id='other_dag') }}"),
    (M, "{{ task_instance.xcom_pull(task_ids='extract', key='meta') | upper }}"),
    (F, "{{ ti.xcom_pull(task_ids='extract') }}"),
    (N, "{{ ti.try_number }}"),
    # --- var ------------------------------------------------------------------------------------
    (M, "{{ var.value.greeting }}"),
    (M, "{{ var.value.GREETING }}", "env-var backend upper-cases the key"),
    (M, "{{ var.value['greeting'] }}"),
    (M, "{{ var.value.get('greeting') }}"),
    (M, "{{ var.value.get('greeting', 'd') }}"),
    (M, "{{ var.value.get('missing', 'd') }}"),
    (M, "{{ var.value.get('missing') }}", "default is a NOTSET sentinel, not None"),
    (M, "{{ var.value.get('missing', none) }}"),
    (M, "{{ var.value.number }}"),
    (M, "{{ var.value.number | int + 1 }}"),
    (M, "{{ var.value.number + '1' }}"),
    (M, "{{ var.value.empty }}"),
    (M, "[{{ var.value.empty }}] {{ var.value.empty | length }}"),
    (M, "{{ var.value.config_json }}"),
    (M, "{{ var.json.config_json }}"),
    (M, "{{ var.json.config_json.bucket }}"),
    (M, "{{ var.json.config_json.nested.depth }}"),
    (M, "{{ var.json.config_json.nested.list[2] }}"),
    (M, "{{ var.json.config_json.enabled }}"),
    (M, "{{ var.json.config_json['nested']['list'] }}"),
    (M, "{{ var.json.get('config_json').bucket }}"),
    (M, "{{ var.json.get('missing', {'a': 1}) }}"),
    (M, "{{ var.json.get('missing', {'a': 1}).a }}"),
    (M, "{{ var.json.number }}"),
    (M, "{{ var.json.number + 1 }}"),
    (M, "{{ var.json.list_var }}"),
    (M, "{{ var.json.list_var | join('+') }}"),
    (M, "{{ var.value.missing }}"),
    (M, "{{ var.json.missing }}"),
    (M, "{{ var.json.greeting }}", "value is not JSON"),
    (M, "{{ var.json.config_json.nope }}"),
    # --- conn -----------------------------------------------------------------------------------
    (M, "{{ conn.pg_main.host }}"),
    (M, "{{ conn.pg_main.login }}"),
    (M, "{{ conn.pg_main.password }}"),
    (M, "{{ conn.pg_main.port }}"),
    (M, "{{ conn.pg_main.schema }}"),
    (M, "{{ conn.pg_main.conn_type }}"),
    (M, "{{ conn.pg_main.conn_id }}"),
    (M, "{{ conn.pg_main.extra }}"),
    (M, "{{ conn.pg_main.extra_dejson }}"),
    (M, "{{ conn.pg_main.extra_dejson.sslmode }}"),
    (M, "{{ conn.pg_main.get_uri() }}"),
    (M, "{{ conn.pg_main.description }}"),
    (M, "{{ conn.http_json.host }}"),
    (M, "{{ conn.http_json.login }}:{{ conn.http_json.password }}"),
    (M, "{{ conn.http_json.port }}"),
    (M, "{{ conn.http_json.port + 1 }}"),
    (M, "{{ conn.http_json.schema }}"),
    (M, "{{ conn.http_json.conn_type }}"),
    (M, "{{ conn.http_json.extra }}"),
    (M, "{{ conn.http_json.extra_dejson }}"),
    (M, "{{ conn.http_json.extra_dejson.timeout }}"),
    (M, "{{ conn.http_json.get_uri() }}"),
    (M, "{{ conn.get('pg_main').host }}"),
    (M, "{{ conn.get('missing') }}"),
    (M, "{{ conn.PG_MAIN.host }}"),
    (M, "{{ conn.missing.host }}"),
    (M, "{{ conn.pg_main.nope }}"),
    # --- macros ---------------------------------------------------------------------------------
    (M, "{{ macros.ds_add(ds, 5) }}"),
    (M, "{{ macros.ds_add(ds, -5) }}"),
    (M, "{{ macros.ds_add('2024-02-28', 1) }}"),
    (M, "{{ macros.ds_add('2023-12-31', 1) }}"),
    (M, "{{ macros.ds_add(ds, 0) }}"),
    (M, "{{ macros.ds_add('not-a-date', 0) }}", "days=0 returns the input untouched"),
    (M, "{{ macros.ds_add('not-a-date', 1) }}"),
    (M, "{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}"),
    (M, "{{ macros.ds_format('20240305', '%Y%m%d', '%A %B %d') }}"),
    (M, "{{ macros.ds_format(ds_nodash, '%Y%m%d', '%Y-W%W') }}"),
    (M, "{{ macros.ds_format_locale(ds, '%Y-%m-%d', 'EEEE d MMMM yyyy', 'en_US') }}"),
    (M, "{{ macros.datetime(2024, 1, 2) }}"),
    (M, "{{ macros.datetime(2024, 1, 2, 3, 4, 5, 6) }}"),
    (M, "{{ macros.datetime(2024, 1, 2).isoformat() }}"),
    (M, "{{ macros.datetime.strptime(ds, '%Y-%m-%d').strftime('%j') }}"),
    (M, "{{ macros.datetime.strptime('2024-03-05', '%Y-%m-%d') }}"),
    (M, "{{ macros.datetime.fromisoformat('2024-03-05T01:02:03+00:00') }}"),
    (M, "{{ macros.timedelta(days=1) }}"),
    (M, "{{ macros.timedelta(hours=36) }}"),
    (M, "{{ macros.timedelta(days=-1) }}"),
    (M, "{{ macros.timedelta(seconds=1.5) }}"),
    (M, "{{ macros.timedelta(minutes=90).total_seconds() }}"),
    (M, "{{ macros.timedelta(days=2) > macros.timedelta(hours=47) }}"),
    (M, "{{ macros.time.strftime('%Y', macros.time.gmtime(0)) }}"),
    (M, "{{ macros.time.time() > 0 }}"),
    (M, "{{ macros.uuid.uuid4() | string | length }}"),
    (M, "{{ macros.uuid.UUID('12345678123456781234567812345678') }}"),
    (M, "{{ macros.uuid.uuid5(macros.uuid.NAMESPACE_DNS, 'example.com') }}"),
    (M, "{{ macros.random() < 1 }}"),
    (M, "{{ (macros.random() * 0) | int }}"),
    (M, "{{ macros.json.dumps({'b': 1, 'a': [1, 2]}) }}"),
    (M, "{{ macros.json.loads('[1, 2, 3]')[1] }}"),
    (M, "{{ macros.datetime_diff_for_humans(logical_date, data_interval_start) }}"),
    (M, "{{ macros.nope }}"),
    # --- literals & how Python values render -----------------------------------------------------
    (M, "{{ True }}"),
    (M, "{{ true }}"),
    (M, "{{ False }}"),
    (M, "{{ None }}"),
    (M, "{{ none }}"),
    (M, "{{ 1 }}"),
    (M, "{{ -0.0 }}"),
    (M, "{{ 1.0 }}"),
    (M, "{{ 2.50 }}"),
    (M, "{{ 1e20 }}"),
    (M, "{{ 1.5e-7 }}"),
    (M, "{{ 12345678901234567890 }}"),
    (M, "{{ 'text' }}"),
    (M, "{{ \"it's\" }}"),
    (M, "{{ ['a', 'b'] }}"),
    (M, "{{ [1, 'a', None, True, 2.5] }}"),
    (M, "{{ [\"it's\"] }}", "Python repr picks double quotes when the string has a single quote"),
    (M, "{{ ['a\"b'] }}"),
    (M, "{{ ['é', '\\n'] }}"),
    (M, "{{ [] }}"),
    (M, "{{ {} }}"),
    (M, "{{ {'k': 1} }}"),
    (M, "{{ {'k': None, 'b': [1, 2], 'a': {'x': True}} }}", "insertion order, not sorted"),
    (M, "{{ ('a', 1) }}"),
    (M, "{{ ('a',) }}"),
    (M, "{{ {'k': 'v'}.items() | list }}"),
    (M, "{{ [1, 2] == [1, 2] }}"),
    (M, "{{ '' }}"),
    (M, "a{{ '' }}b"),
    (M, "line1\nline2\n", "Jinja drops ONE trailing newline (keep_trailing_newline=False)"),
    (M, "line1\n\n"),
    (M, "plain text, no template"),
    (M, "{% raw %}{{ ds }}{% endraw %}"),
    (M, "{# comment #}x"),
    # --- arithmetic -----------------------------------------------------------------------------
    (M, "{{ 1 + 2 }}"),
    (M, "{{ 7 / 2 }}"),
    (M, "{{ 6 / 2 }}", "true division always gives a float"),
    (M, "{{ 7 // 2 }}"),
    (M, "{{ -7 // 2 }}"),
    (M, "{{ 7 % 3 }}"),
    (M, "{{ -7 % 3 }}"),
    (M, "{{ 2 ** 10 }}"),
    (M, "{{ 2 ** -1 }}"),
    (M, "{{ 0.1 + 0.2 }}"),
    (M, "{{ 10 / 3 }}"),
    (M, "{{ 1 / 3 * 3 }}"),
    (M, "{{ 3 * 1.1 }}"),
    (M, "{{ 1 / 0 }}"),
    (M, "{{ 5 - 7 }}"),
    (M, "{{ True + 1 }}"),
    (M, "{{ 1 == 1.0 }}"),
    (M, "{{ 'a' + 'b' }}"),
    (M, "{{ 'a' ~ 1 ~ None ~ True }}"),
    (M, "{{ 'ab' * 3 }}"),
    (M, "{{ 1 + 'a' }}"),
    (M, "{{ 'b' in 'abc' }}"),
    (M, "{{ 3 in [1, 2, 3] }}"),
    (M, "{{ not 0 }}"),
    (M, "{{ 1 and 'x' }}"),
    (M, "{{ 0 or 'fallback' }}"),
    (M, "{{ 1 < 2 < 3 }}"),
    # --- string methods -------------------------------------------------------------------------
    (M, "{{ 'a,b'.split(',') }}"),
    (M, "{{ 'a b  c'.split() }}"),
    (M, "{{ 'a,b,c'.split(',', 1) }}"),
    (M, "{{ 'a,b,c'.rsplit(',', 1) }}"),
    (M, "{{ 'abc'.upper() }}"),
    (M, "{{ 'ABC'.lower() }}"),
    (M, "{{ 'hello world'.title() }}"),
    (M, "{{ 'hello'.capitalize() }}"),
    (M, "{{ ds.replace('-', '/') }}"),
    (M, "{{ ds.startswith('2024') }}"),
    (M, "{{ ds.endswith('05') }}"),
    (M, "{{ '{}-{}'.format(ds, 1) }}"),
    (M, "{{ '{0}/{1:03d}/{x}'.format('a', 7, x='y') }}"),
    (M, "{{ '%s-%03d' % ('x', 7) }}"),
    (M, "{{ '%.2f' % 3.14159 }}"),
    (M, "{{ '%(a)s' % {'a': 1} }}"),
    (M, "{{ '  pad  '.strip() }}|"),
    (M, "{{ 'xxhixx'.strip('x') }}"),
    (M, "{{ '  pad  '.lstrip() }}|"),
    (M, "{{ '-'.join(['a', 'b', 'c']) }}"),
    (M, "{{ ','.join(params.nested.a.b | map('string')) }}"),
    (M, "{{ '7'.zfill(3) }}"),
    (M, "{{ 'abc'[1:] }}"),
    (M, "{{ 'abc'[::-1] }}"),
    (M, "{{ 'abc'[-1] }}"),
    (M, "{{ 'abc'.find('c') }}"),
    (M, "{{ 'a-b-c'.count('-') }}"),
    (M, "{{ 'x'.center(5, '*') }}"),
    (M, "{{ 'abc'.isdigit() }} {{ '123'.isdigit() }}"),
    (M, "{{ 'a_b'.partition('_') }}"),
    (M, "{{ 'Hello %s' | format('you') }}"),
    (M, "{{ ''.__class__ }}", "sandbox"),
    (M, "{{ ds.nope }}"),
    # --- control structures ---------------------------------------------------------------------
    (M, "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}:{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"),
    (M, "{% for x in [10, 20] %}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}"),
    (M, "{% for x in [1, 2, 3] %}{{ loop.cycle('odd', 'even') }} {% endfor %}"),
    (M, "{% for k, v in params.nested.a.items() %}{{ k }}={{ v }}{% endfor %}"),
    (M, "{% for x in [] %}a{% else %}empty{% endfor %}"),
    (M, "{% for x in range(1, 10, 3) %}{{ x }}{% endfor %}"),
    (M, "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }} {% endfor %}"),
    (M, "{% for x in [3, 1, 2] if x > 1 %}{{ x }}{% endfor %}"),
    (M, "{% if ds > '2024-01-01' %}yes{% else %}no{% endif %}"),
    (M, "{% if params.flag %}on{% elif params.env %}env{% else %}off{% endif %}"),
    (M, "{% if none_such is defined %}def{% else %}undef{% endif %}"),
    (M, "{{ 'yes' if params.flag else 'no' }}"),
    (M, "{{ 'x' if false }}", "inline if without else yields Undefined"),
    (M, "{% set x = 5 %}{{ x * 2 }}"),
    (M, "{% set parts = ds.split('-') %}{{ parts[0] }}|{{ parts | length }}"),
    (M, "{% set l = [] %}{% do l.append(1) %}{% do l.append(2) %}{{ l }}"),
    (M, "{% set d = {} %}{% do d.update({'a': 1}) %}{{ d }}"),
    (M, "{% set n = namespace(c=0) %}{% for i in range(3) %}{% set n.c = n.c + i %}{% endfor %}{{ n.c }}"),
    (M, "{% macro m(x, y='d') %}[{{ x }}|{{ y }}]{% endmacro %}{{ m(1) }}{{ m(2, y=3) }}"),
    (M, "{% filter upper %}abc {{ ds }}{% endfilter %}"),
    (M, "{%- if true -%}  x  {%- endif -%}  "),
    (M, "  {{- ' trimmed ' -}}  "),
    (M, "{{ range(3) }}"),
    (M, "{{ range(3) | list }}"),
    (M, "{{ range(200000) | list | length }}", "sandbox MAX_RANGE"),
    (M, "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }}"),
    (M, "{{ ds is string }} {{ 1 is number }} {{ params is mapping }} {{ none is none }}"),
    (M, "{{ nope is defined }} {{ ds is defined }}"),
    # --- filters --------------------------------------------------------------------------------
    (M, "{{ params.nested | tojson }}"),
    (M, "{{ {'b': 1, 'a': '<x>&\\'y'} | tojson }}", "tojson sorts keys and escapes < > & '"),
    (M, "{{ 'x' | tojson }}"),
    (M, "{{ None | tojson }}"),
    (M, "{{ [True, 1.0, 'é'] | tojson }}"),
    (M, "{{ params.nested | tojson(indent=2) }}"),
    (M, "{{ nope | default('d') }}"),
    (M, "{{ nope | d('d') }}"),
    (M, "{{ '' | default('d') }}"),
    (M, "{{ '' | default('d', true) }}"),
    (M, "{{ [1, 2, 3] | length }}"),
    (M, "{{ 'abc' | length }}"),
    (M, "{{ {'a': 1} | count }}"),
    (M, "{{ [1, 2, 3] | join(', ') }}"),
    (M, "{{ ['a', 'b'] | join }}"),
    (M, "{{ '42' | int + 1 }}"),
    (M, "{{ 'abc' | int }}"),
    (M, "{{ '3.9' | int }}"),
    (M, "{{ 3.9 | int }}"),
    (M, "{{ '0x1A' | int(base=16) }}"),
    (M, "{{ 'abc' | int(7) }}"),
    (M, "{{ 3 | float }}"),
    (M, "{{ 'x' | float }}"),
    (M, "{{ 3.14159 | round(2) }}"),
    (M, "{{ 2.5 | round }}", "round(2.5, 0) -> 2.0 (banker's rounding via Python round)"),
    (M, "{{ 3.5 | round }}"),
    (M, "{{ 2.1 | round(method='ceil') }}"),
    (M, "{{ 2.9 | round(method='floor') | int }}"),
    (M, "{{ 'abc' | upper }}"),
    (M, "{{ 'ABC' | lower }}"),
    (M, "{{ 'hello world' | title }}"),
    (M, "{{ 'hello world' | capitalize }}"),
    (M, "{{ 'a-b-c' | replace('-', '_') }}"),
    (M, "{{ 'a-b-c' | replace('-', '_', 1) }}"),
    (M, "{{ [3, 1, 2] | first }}"),
    (M, "{{ [3, 1, 2] | last }}"),
    (M, "{{ [] | first }}"),
    (M, "{{ 'abc' | list }}"),
    (M, "{{ (1, 2) | list }}"),
    (M, "{{ [3, 1, 2] | sort }}"),
    (M, "{{ [3, 1, 2] | sort(reverse=true) }}"),
    (M, "{{ ['b', 'A', 'c'] | sort }}", "case-insensitive by default"),
    (M, "{{ ['b', 'A', 'c'] | sort(case_sensitive=true) }}"),
    (M, "{{ [{'n': 2}, {'n': 1}] | sort(attribute='n') }}"),
    (M, "{{ {'b': 2, 'a': 1, 'C': 3} | dictsort }}"),
    (M, "{{ {'b': 2, 'a': 1} | dictsort(by='value', reverse=true) }}"),
    (M, "{{ [{'x': 1, 'n': 'a'}, {'x': 2, 'n': 'b'}] | selectattr('x', 'equalto', 2) | list }}"),
    (M, "{{ [{'x': 1, 'n': 'a'}, {'x': 2, 'n': 'b'}] | selectattr('x', 'gt', 0) | map(attribute='n') | join }}"),
    (M, "{{ [{'x': 0}, {'x': 2}] | selectattr('x') | list }}"),
    (M, "{{ [{'x': 0}, {'x': 2}] | rejectattr('x') | list }}"),
    (M, "{{ [1, 2, 3, 4] | select('odd') | list }}"),
    (M, "{{ [1, 2, 3, 4] | reject('odd') | list }}"),
    (M, "{{ ['1', '2'] | map('int') | sum }}"),
    (M, "{{ [1, 2, 2, 3, 1] | unique | list }}"),
    (M, "{{ [1, 5, 3] | max }} {{ [1, 5, 3] | min }}"),
    (M, "{{ [1.5, 2] | sum }}"),
    (M, "{{ -3 | abs }}"),
    (M, "{{ '  x  ' | trim }}|"),
    (M, "{{ 'xxhixx' | trim('x') }}"),
    (M, "{{ 'a very long sentence here' | truncate(9) }}"),
    (M, "{{ 'one two three' | wordcount }}"),
    (M, "{{ 123 | string }}"),
    (M, "{{ [1, 2] | string }}"),
    (M, "{{ [1, 2, 3, 4, 5] | batch(2) | list }}"),
    (M, "{{ [1, 2, 3, 4, 5] | slice(2) | list }}"),
    (M, "{{ {'a': 1, 'b': 2} | items | list }}"),
    (M, "{{ '<b>&' | e }}"),
    (M, "{{ '<b>&' }}", "no autoescape"),
    (M, "{{ 'a b&c' | urlencode }}"),
    (M, "{{ {'q': 'a b', 'n': 1} | urlencode }}"),
    (M, "{{ 1048576 | filesizeformat }}"),
    (M, "{{ 'a\\nb' | indent(2, first=true) }}"),
    (M, "{{ 'x' | center(5) }}|"),
    (M, "{{ [1, [2, 3]] | pprint }}"),
    (M, "{{ '%s=%d' | format('n', 3) }}"),
    (M, "{{ 'abc' | reverse }}"),
    (M, "{{ [1, 2, 3] | reverse | list }}"),
    (M, "{{ [[1, 2], [3]] | sum(start=[]) }}"),
    (M, "{{ ds | nofilter }}"),
    # --- Airflow 2 names that Airflow 3 no longer provides ------------------------------------
    (M, "{{ execution_date }}"),
    (M, "{{ next_ds }}"),
    (M, "{{ prev_ds }}"),
    (M, "{{ yesterday_ds }}"),
    (M, "{{ tomorrow_ds }}"),
    (M, "{{ next_execution_date }}"),
    (M, "{{ prev_execution_date_success }}"),
    (M, "{{ conf }}"),
    (M, "{{ test_mode }}"),
    # --- other context keys --------------------------------------------------------------------
    (M, "{{ inlets }}"),
    (M, "{{ outlets }}"),
    (M, "{{ map_index_template }}"),
    (M, "{{ task_reschedule_count }}"),
    (M, "{{ partition_key }}"),
    (M, "{{ triggering_asset_events | length }}"),
    # --- errors ---------------------------------------------------------------------------------
    (M, "{{ nope }}"),
    (M, "{{ nope.attr }}"),
    (M, "{{ nope['k'] }}"),
    (M, "{{ nope | upper }}"),
    (M, "{{ nope ~ 'x' }}"),
    (M, "{{ nope + 1 }}"),
    (M, "{% if nope %}x{% endif %}"),
    (M, "{% for x in nope %}{% endfor %}"),
    (M, "{{ [1][5] }}"),
    (M, "{{ {'a': 1}.b }}"),
    (M, "{{ params.nested.a.missing }}"),
    (M, "{{ ds }"),
    (M, "{% if %}x{% endif %}"),
    (M, "{% for x in [1] %}"),
    (M, "{{ nope() }}"),
    # --- reprs of the accessor objects ----------------------------------------------------------
    (M, "{{ var.value }}"),
    (M, "{{ var.json }}"),
    (M, "{{ conn }}"),
    (M, "{{ macros }}"),
    (M, "{{ conn.pg_main }}"),
    (M, "{{ ds() }}"),
]


# =================================================================================================
# Airflow machinery
# =================================================================================================

import datetime as dt  # noqa: E402

import httpx  # noqa: E402
import msgspec  # noqa: E402
import pendulum  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

import airflow  # noqa: E402
from airflow.sdk import DAG  # noqa: E402
from airflow.sdk.api.client import Client  # noqa: E402
from airflow.sdk.api.datamodels._generated import (  # noqa: E402
    BundleInfo,
    TaskInstance as TaskInstanceModel,
    TIRunContext,
)
from airflow.sdk.bases.operator import BaseOperator  # noqa: E402
from airflow.sdk.bases.xcom import BaseXCom  # noqa: E402
from airflow.sdk.execution_time import request_handlers, task_runner  # noqa: E402
from airflow.sdk.execution_time.comms import (  # noqa: E402
    CommsDecoder,
    GetConnection,
    GetPrevSuccessfulDagRun,
    GetVariable,
    GetXCom,
    GetXComSequenceSlice,
    MaskSecret,
    StartupDetails,
    ToSupervisor,
    ToTask,
    _RequestFrame,
    _ResponseFrame,
)
from airflow.sdk.execution_time.context import get_previous_dagrun_success  # noqa: E402
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance  # noqa: E402


def parse_ts(s: str | None) -> dt.datetime | None:
    return None if s is None else dt.datetime.fromisoformat(s)


def api_ts(s: str | None) -> str | None:
    """How the Execution API (FastAPI/pydantic) serialises an aware UTC datetime: ...Z."""
    if s is None:
        return None
    return TypeAdapter(dt.datetime).dump_python(parse_ts(s), mode="json")


class FakeExecutionAPI:
    """Stand-in for the Execution API server's routes used by templates (see module docstring)."""

    def __init__(self, ti_run: dict[str, str]):
        self.ti_run = ti_run  # ti id -> run_id
        self.rows = []
        for seq, x in enumerate(XCOMS):
            self.rows.append(
                {
                    **x,
                    "dag_id": DAG_ID,
                    "stored": BaseXCom.serialize_value(x["value"]),
                    "seq": seq,  # stands in for XComModel.timestamp (insertion order)
                }
            )

    @staticmethod
    def _run_date(run_id: str):
        r = RUNS_BY_ID.get(run_id)
        if r is None:
            return None
        return parse_ts(r["logical_date"] or r["run_after"])

    def _matching(self, dag_id, run_id, task_id, key, include_prior_dates):
        """XComModel.get_many(run_id, key, task_ids, dag_ids, include_prior_dates) WHERE clause."""
        cur = self._run_date(run_id)
        out = []
        for r in self.rows:
            if r["key"] != key or r["task_id"] != task_id or r["dag_id"] != dag_id:
                continue
            if include_prior_dates:
                # coalesce(DagRun.logical_date, DagRun.run_after) <= that of the requested run
                if cur is None or self._run_date(r["run_id"]) > cur:
                    continue
            elif r["run_id"] != run_id:
                continue
            out.append(r)
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        parts = [unquote(p) for p in request.url.path.strip("/").split("/")]
        q = request.url.params

        def truthy(name):
            return q.get(name, "false").lower() in ("true", "1")

        if parts[0] == "xcoms" and request.method == "GET":
            dag_id, run_id, task_id = parts[1:4]
            if parts[-1] == "slice":
                key = "/".join(parts[4:-1])
                assert not (q.get("start") or q.get("stop") or q.get("step")), "slice args unsupported"
                rows = self._matching(dag_id, run_id, task_id, key, truthy("include_prior_dates"))
                # routes/xcoms.py get_mapped_xcom_by_slice: order_by(None) then map_index ASC.
                # Ties (same map_index from several runs) are database order: we refuse to guess.
                idx = [r["map_index"] for r in rows]
                if len(set(idx)) != len(idx):
                    raise RuntimeError(f"ambiguous DB order for slice {dag_id}/{run_id}/{task_id}/{key}")
                rows.sort(key=lambda r: r["map_index"])
                return httpx.Response(200, json=[r["stored"] for r in rows])
            key = "/".join(parts[4:])
            map_index = int(q.get("map_index", "-1"))
            rows = [
                r
                for r in self._matching(dag_id, run_id, task_id, key, truthy("include_prior_dates"))
                if r["map_index"] == map_index
            ]
            # XComModel.get_many: ORDER BY DagRun.logical_date DESC, XCom.timestamp DESC; LIMIT 1
            rows.sort(key=lambda r: (self._run_date(r["run_id"]), r["seq"]), reverse=True)
            if not rows:
                msg = (
                    f"XCom with key={key!r} map_index={map_index} not found for "
                    f"task {task_id!r} in DAG run {run_id!r} of {dag_id!r}"
                )
                return httpx.Response(404, json={"detail": {"reason": "not_found", "message": msg}})
            return httpx.Response(200, json={"key": key, "value": rows[0]["stored"]})

        if parts[0] == "task-instances" and parts[2:] == ["previous-successful-dagrun"]:
            # routes/task_instances.py get_previous_successful_dagrun
            run = RUNS_BY_ID[self.ti_run[parts[1]]]
            if run["logical_date"] is None:
                return httpx.Response(200, json={})
            cur = parse_ts(run["logical_date"])
            prev = [
                r
                for r in DAG_RUNS
                if r["logical_date"] and parse_ts(r["logical_date"]) < cur and r["state"] == "success"
            ]
            if not prev:
                return httpx.Response(200, json={})
            p = max(prev, key=lambda r: parse_ts(r["logical_date"]))
            return httpx.Response(
                200,
                json={k: api_ts(p[k]) for k in ("data_interval_start", "data_interval_end", "start_date", "end_date")},
            )

        if parts[0] == "variables" and request.method == "GET":
            # Everything the fixture uses is in AIRFLOW_VAR_*; the metadata DB is empty.
            return httpx.Response(
                404,
                json={"detail": {"reason": "not_found", "message": f"Variable with key '{parts[1]}' not found"}},
            )
        if parts[0] == "connections" and request.method == "GET":
            return httpx.Response(
                404,
                json={"detail": {"reason": "not_found", "message": f"Connection with ID {parts[1]} not found"}},
            )
        raise RuntimeError(f"stand-in API: unexpected request {request.method} {request.url}")


class _NoRetryClient(Client):
    # Same trick as airflow.sdk.execution_time.supervisor.InProcessTestSupervisor._Client
    def request(self, *args, **kwargs):
        return super().request.__wrapped__(self, *args, **kwargs)


class LoopbackComms(CommsDecoder):
    """SUPERVISOR_COMMS stand-in: real frames and real request handlers, no socket/subprocess."""

    api_client: Client | None = None

    def send(self, msg):
        # task side -> bytes (real encoder)
        raw = bytes(self._make_frame(msg).as_bytes())[4:]
        # supervisor side: decode request like ActivitySubprocess.handle_requests
        req = msgspec.msgpack.Decoder(_RequestFrame).decode(raw)
        sup_msg = TypeAdapter(ToSupervisor).validate_python(req.body)
        resp, dump_opts = self._dispatch(sup_msg)
        if resp is None:
            frame = _ResponseFrame(id=req.id)
        else:
            frame = _ResponseFrame(id=req.id, body=resp.model_dump(**dump_opts))
        # back to the task side (real decoder)
        decoded = self.resp_decoder.decode(bytes(frame.as_bytes())[4:])
        return self._from_frame(decoded)

    def _dispatch(self, msg):
        c = self.api_client
        if isinstance(msg, GetXCom):
            return request_handlers.handle_get_xcom(c, msg)
        if isinstance(msg, GetXComSequenceSlice):
            return request_handlers.handle_get_xcom_sequence_slice(c, msg)
        if isinstance(msg, GetVariable):
            return request_handlers.handle_get_variable(c, msg)
        if isinstance(msg, GetConnection):
            return request_handlers.handle_get_connection(c, msg)
        if isinstance(msg, GetPrevSuccessfulDagRun):
            return request_handlers.handle_get_prev_successful_dag_run(c, msg.ti_id)
        if isinstance(msg, MaskSecret):
            return None, {}
        raise RuntimeError(f"stand-in supervisor: unexpected message {type(msg).__name__}")


class TemplatedOp(BaseOperator):
    """An operator with one templated string field: what e.g. BashOperator.bash_command is."""

    template_fields = ("value",)

    def __init__(self, value: str = "", **kwargs):
        super().__init__(**kwargs)
        self.value = value

    def execute(self, context):  # pragma: no cover - never executed
        return None


def build_dag() -> DAG:
    da = DAG_SPEC["default_args"]
    default_args = {
        "owner": da["owner"],
        "retries": da["retries"],
        "retry_delay": dt.timedelta(seconds=da["retry_delay_seconds"]),
    }
    with DAG(
        dag_id=DAG_SPEC["dag_id"],
        description=DAG_SPEC["description"],
        schedule=DAG_SPEC["schedule"],
        start_date=pendulum.parse(DAG_SPEC["start_date"]),
        tags=DAG_SPEC["tags"],
        params=DAG_SPEC["params"],
        default_args=default_args,
    ) as dag:
        ops = {}
        for t in DAG_SPEC["tasks"]:
            kw = {k: v for k, v in t.items() if k not in ("task_id", "upstream")}
            ops[t["task_id"]] = TemplatedOp(task_id=t["task_id"], **kw)
        for t in DAG_SPEC["tasks"]:
            for up in t.get("upstream", []):
                ops[up] >> ops[t["task_id"]]
    return dag


def startup_over_the_wire(ti_spec: dict) -> StartupDetails:
    """Build StartupDetails as the supervisor does and pass it through the real frame codec."""
    run = RUNS_BY_ID[ti_spec["run_id"]]
    # what GET/PATCH task-instances/{id}/run returns (JSON), parsed like Client.task_instances.start
    api_json = {
        "dag_run": {
            "dag_id": DAG_ID,
            "run_id": run["run_id"],
            "logical_date": api_ts(run["logical_date"]),
            "data_interval_start": api_ts(run["data_interval_start"]),
            "data_interval_end": api_ts(run["data_interval_end"]),
            "run_after": api_ts(run["run_after"]),
            "start_date": api_ts(run["start_date"]),
            "end_date": api_ts(run["end_date"]),
            "clear_number": 0,
            "run_type": run["run_type"],
            "state": run["state"],
            "conf": run["conf"],
            "triggering_user_name": None,
            "consumed_asset_events": [],
            "partition_key": None,
        },
        "task_reschedule_count": 0,
        "max_tries": ti_spec["max_tries"],
        "should_retry": False,
    }
    ti_context = TIRunContext.model_validate_json(json.dumps(api_json))
    msg = StartupDetails.model_construct(
        ti=TaskInstanceModel(
            id=uuid.UUID(ti_spec["id"]),
            task_id=RENDER_TASK_ID,
            dag_id=DAG_ID,
            run_id=run["run_id"],
            try_number=ti_spec["try_number"],
            dag_version_id=uuid.UUID(DAG_VERSION_ID),
            map_index=ti_spec["map_index"],
        ),
        dag_rel_path="updraft_fixture.py",
        bundle_info=BundleInfo(name="dags-folder", version=None),
        ti_context=ti_context,
        start_date=parse_ts(ti_spec["start_date"]),
        sentry_integration="",
    )
    frame = _ResponseFrame(id=0, body=msg.model_dump())
    raw = bytes(frame.as_bytes())[4:]
    decoded = msgspec.msgpack.Decoder(_ResponseFrame).decode(raw)
    out = TypeAdapter(ToTask).validate_python(decoded.body)
    assert isinstance(out, StartupDetails)
    return out


def build_runtime(name: str, dag: DAG, comms: LoopbackComms):
    spec = TI_SPECS[name]
    what = startup_over_the_wire(spec)
    task = dag.get_task(RENDER_TASK_ID)
    # task_runner.parse(): RuntimeTaskInstance.model_construct(**what.ti.model_dump(exclude_unset=True), ...)
    ti = RuntimeTaskInstance.model_construct(
        **what.ti.model_dump(exclude_unset=True),
        task=task,
        bundle_instance=None,
        _ti_context_from_server=what.ti_context,
        max_tries=what.ti_context.max_tries,
        start_date=what.start_date,
        state="running",
        sentry_integration=what.sentry_integration,
    )
    context = ti.get_template_context()
    # task_runner._prepare()
    ti.hostname = spec["hostname"]
    ti.task = ti.task.prepare_for_execution()
    context["task"] = ti.task
    jinja_env = ti.task.dag.get_template_env()
    return ti, context, jinja_env


def render_case(ti, context, jinja_env, expr: str) -> dict:
    task = ti.task
    task.value = expr
    try:
        # what RuntimeTaskInstance.render_templates -> BaseOperator.render_template_fields does
        task.render_template_fields(context, jinja_env)
    except Exception as e:  # noqa: BLE001
        return {
            "error": type(e).__name__,
            "error_module": type(e).__module__,
            "message": str(e),
        }
    out = task.value
    if not isinstance(out, str):
        # empty-string fields are skipped by _iter_templated_fields and stay as-is
        raise AssertionError(f"non-string render for {expr!r}: {out!r}")
    return {"expected": out}


def context_spec() -> dict:
    """The fixed context, as JSON, for the fixture."""

    def task_attrs(t):
        return {
            "task_id": t.task_id,
            "owner": t.owner,
            "retries": t.retries,
            "retry_delay_seconds": t.retry_delay.total_seconds(),
            "retry_exponential_backoff": t.retry_exponential_backoff,
            "max_retry_delay": None if t.max_retry_delay is None else t.max_retry_delay.total_seconds(),
            "queue": t.queue,
            "pool": t.pool,
            "priority_weight": t.priority_weight,
            "trigger_rule": str(t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule),
            "depends_on_past": t.depends_on_past,
            "execution_timeout": t.execution_timeout,
            "doc_md": t.doc_md,
            "params": dict(t.params) if t.params else {},
            "upstream_task_ids": sorted(t.upstream_task_ids),
            "downstream_task_ids": sorted(t.downstream_task_ids),
            "repr": repr(t),
        }

    dag = build_dag()
    contexts = {}
    for name, spec in TI_SPECS.items():
        run = RUNS_BY_ID[spec["run_id"]]
        prev = [
            r
            for r in DAG_RUNS
            if run["logical_date"]
            and r["logical_date"]
            and parse_ts(r["logical_date"]) < parse_ts(run["logical_date"])
            and r["state"] == "success"
        ]
        p = max(prev, key=lambda r: parse_ts(r["logical_date"])) if prev else {}
        contexts[name] = {
            "dag_id": DAG_ID,
            "dag_run": run,
            "prev_success": {
                "prev_data_interval_start_success": p.get("data_interval_start"),
                "prev_data_interval_end_success": p.get("data_interval_end"),
                "prev_start_date_success": p.get("start_date"),
                "prev_end_date_success": p.get("end_date"),
            },
            "run_id": run["run_id"],
            "task_id": RENDER_TASK_ID,
            "ti_id": spec["id"],
            "try_number": spec["try_number"],
            "max_tries": spec["max_tries"],
            "map_index": spec["map_index"],
            "hostname": spec["hostname"],
            "ti_start_date": spec["start_date"],
        }
    return {
        "timezone": "UTC",
        "dag": {
            **{k: v for k, v in DAG_SPEC.items() if k != "tasks"},
            "owner": dag.owner,
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "max_active_tasks": dag.max_active_tasks,
            "dagrun_timeout": dag.dagrun_timeout,
            "doc_md": dag.doc_md,
            "task_ids": list(dag.task_ids),
            "repr": repr(dag),
            "render_template_as_native_obj": dag.render_template_as_native_obj,
            "template_undefined": f"{dag.template_undefined.__module__}.{dag.template_undefined.__name__}",
        },
        "tasks": {t.task_id: task_attrs(t) for t in dag.tasks},
        "dag_runs": DAG_RUNS,
        "task_instances": contexts,
        "xcoms": [{**x, "dag_id": DAG_ID} for x in XCOMS],
        "variables": VARIABLES,
        "variables_env": {f"AIRFLOW_VAR_{k.upper()}": v for k, v in VARIABLES.items()},
        "connections_env": {f"AIRFLOW_CONN_{k.upper()}": v for k, v in CONNECTIONS.items()},
        "dag_run_conf_overrides_params": True,
    }


def main() -> None:
    import logging

    # Templater logs every failing render with a traceback; the fixture records the error instead.
    logging.getLogger("airflow.sdk.definitions._internal.templater").setLevel(logging.CRITICAL)
    for k, v in VARIABLES.items():
        os.environ[f"AIRFLOW_VAR_{k.upper()}"] = v
    for k, v in CONNECTIONS.items():
        os.environ[f"AIRFLOW_CONN_{k.upper()}"] = v

    ti_run = {spec["id"]: spec["run_id"] for spec in TI_SPECS.values()}
    fake_api = FakeExecutionAPI(ti_run)
    comms = LoopbackComms(socket=None)
    comms.api_client = _NoRetryClient(
        base_url="http://execution-api.invalid/",
        token="stand-in",
        transport=httpx.MockTransport(fake_api.handle),
    )
    task_runner.SUPERVISOR_COMMS = comms

    runtimes = {}
    for name in TI_SPECS:
        get_previous_dagrun_success.cache_clear()
        # A fresh DAG per context, as each worker process parses the DAG file anew: building a
        # context mutates the task's Param objects (process_params applies dag_run.conf to them).
        runtimes[name] = build_runtime(name, build_dag(), comms)

    cases = []
    seen = set()
    for entry in CASES:
        name, expr = entry[0], entry[1]
        note = entry[2] if len(entry) > 2 else None
        if (name, expr) in seen:
            raise SystemExit(f"duplicate case {name} {expr!r}")
        seen.add((name, expr))
        ti, context, jinja_env = runtimes[name]
        get_previous_dagrun_success.cache_clear()  # @cache keyed by ti id; harmless, keeps cases independent
        result = render_case(ti, context, jinja_env, expr)
        case = {"context": name, "expr": expr, **result}
        if note:
            case["note"] = note
        cases.append(case)

    # context key listing (what a template can see), per context
    visible = {name: sorted(ctx.keys()) for name, (_, ctx, _) in runtimes.items()}
    ti_m, ctx_m, _ = runtimes["main"]

    import jinja2

    from importlib.metadata import version

    doc = {
        "airflow_version": airflow.__version__,
        "task_sdk_version": version("apache-airflow-task-sdk"),
        "jinja2_version": jinja2.__version__,
        "pendulum_version": version("pendulum"),
        "python_version": sys.version.split()[0],
        "generated_by": "scripts/airflow-fixtures/render_templates.py",
        "how_rendered": (
            "task.value = expr; task.render_template_fields(context, dag.get_template_env()) with the "
            "context from RuntimeTaskInstance.get_template_context(); errors are the exception that "
            "propagates out of rendering (class name, module, str(exc))"
        ),
        "context": context_spec(),
        "context_keys": visible,
        "params_resolved": {name: list(ctx["params"].items()) for name, (_, ctx, _) in runtimes.items()},
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False, default=_json_default) + "\n"
    OUT.write_text(text, encoding="utf-8")
    n_err = sum(1 for c in cases if "error" in c)
    print(f"wrote {OUT.relative_to(REPO)}: {len(cases)} cases ({n_err} errors)")


def _json_default(o):
    if isinstance(o, dt.timedelta):
        return o.total_seconds()
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o)}")


if __name__ == "__main__":
    main()
