#!/usr/bin/env python3
"""Retry delays as the Airflow 3 scheduler computes them (exponential backoff with hash jitter).

Output: tests/fixtures/airflow/retry_delays.json

Real Airflow code used:
* the task is a real Task SDK operator in a real DAG, serialised and deserialised with
  ``DagSerialization.to_dict/from_dict`` -- that is the object the scheduler holds (and where
  ``retry_exponential_backoff=True`` becomes ``2.0``);
* ``airflow.models.taskinstance.TaskInstance.next_retry_datetime`` is called unbound.

Stood in: ``self`` (the ORM TaskInstance row) is a plain object with the attributes that method
reads (dag_id, task_id, logical_date, try_number, end_date, retry_delay_override=None, task, log),
because building a real row needs the metadata database. ``logical_date`` is given as the scheduler
would load it (``UtcDateTime`` column: an aware datetime in UTC), so ``str()`` of it is
``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``.
"""

from __future__ import annotations

import os
import sys
import atexit
import shutil
import tempfile


def _mk_home() -> str:
    d = tempfile.mkdtemp(prefix="updraft-airflow-home-")
    atexit.register(shutil.rmtree, d, True)
    return d


if os.environ.get("_UPDRAFT_FIXTURE_REEXEC") != "1":
    env = dict(os.environ, PYTHONHASHSEED="0", _UPDRAFT_FIXTURE_REEXEC="1", TZ="UTC")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

os.environ["AIRFLOW_HOME"] = _mk_home()
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import datetime as dt  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import pendulum  # noqa: E402

import airflow  # noqa: E402
from airflow._shared.timezones.timezone import utc  # noqa: E402
from airflow.models.taskinstance import TaskInstance  # noqa: E402
from airflow.providers.standard.operators.empty import EmptyOperator  # noqa: E402
from airflow.sdk import DAG  # noqa: E402
from airflow.sdk.definitions._internal.abstractoperator import MAX_RETRY_DELAY  # noqa: E402
from airflow.serialization.serialized_objects import DagSerialization  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "airflow" / "retry_delays.json"

END_DATE = "2024-03-05T07:00:00+00:00"  # when the failed try ended; next retry = end_date + delay

# (dag_id, task_id, logical_date, retry_delay_s, retry_exponential_backoff, max_retry_delay_s, tries)
SPECS = [
    ("etl", "load", "2024-03-05T06:07:08.123456+00:00", 300, True, None, [1, 2, 3, 4, 5, 6]),
    ("etl", "load", "2024-03-05T00:00:00+00:00", 300, True, None, [1, 2, 3, 4, 5, 6]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 60, True, 600, [1, 2, 3, 4, 5, 6, 7]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 60, 2.0, None, [1, 2, 3]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 60, 1.5, None, [1, 2, 3, 4]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 240, 5, None, [1, 2, 3]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 10, 0.5, None, [1, 2, 3, 4, 5, 6]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 300, 1.0, None, [1, 2]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 300, False, None, [1, 2]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 300, 0, None, [1, 2]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 0, True, None, [1, 2, 3]),
    ("etl", "extract", "2024-03-05T00:00:00+00:00", 1.5, True, None, [1, 2, 3]),
    ("etl", "big", "2024-03-05T00:00:00+00:00", 3600, True, None, [1, 4, 5, 6, 10, 40]),
    ("etl", "big", "2024-03-05T00:00:00+00:00", 3600, 10, 7200, [1, 2, 3]),
    ("manual_dag", "t1", None, 300, True, None, [1, 2, 3]),
    ("other.dag", "group.task", "2023-12-31T23:59:59.999999+00:00", 120, True, None, [1, 2, 3]),
]


class _RowStandIn:
    """The attributes TaskInstance.next_retry_datetime reads from the ORM row."""

    def __init__(self, dag_id, task_id, logical_date, try_number, end_date, task):
        self.dag_id = dag_id
        self.task_id = task_id
        self.logical_date = logical_date
        self.try_number = try_number
        self.end_date = end_date
        self.task = task
        self.retry_delay_override = None
        self.log = logging.getLogger("retry_delays")


def main() -> None:
    cases = []
    end_date = pendulum.parse(END_DATE)
    for dag_id, task_id, ld, delay_s, backoff, max_s, tries in SPECS:
        kwargs = {"retries": max(tries) + 1, "retry_delay": dt.timedelta(seconds=delay_s),
                  "retry_exponential_backoff": backoff}
        if max_s is not None:
            kwargs["max_retry_delay"] = dt.timedelta(seconds=max_s)
        with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
            EmptyOperator(task_id=task_id, **kwargs)
        sdag = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        task = sdag.get_task(task_id)
        # UtcDateTime.process_result_value: value.replace(tzinfo=utc) / astimezone(utc)
        logical_date = None if ld is None else dt.datetime.fromisoformat(ld).astimezone(utc)
        for try_number in tries:
            row = _RowStandIn(dag_id, task_id, logical_date, try_number, end_date, task)
            when = TaskInstance.next_retry_datetime(row)
            delay = (when - end_date).total_seconds()
            hashed = f"{dag_id}#{task_id}#{logical_date}#{try_number}"
            cases.append(
                {
                    "dag_id": dag_id,
                    "task_id": task_id,
                    "logical_date": ld,
                    "try_number": try_number,
                    "retry_delay_seconds": delay_s,
                    "retry_exponential_backoff": backoff,
                    "retry_exponential_backoff_after_serialization": task.retry_exponential_backoff,
                    "max_retry_delay_seconds": max_s,
                    "hashed_string": hashed,
                    "sha1_hex": hashlib.sha1(hashed.encode()).hexdigest(),
                    "delay_seconds": delay,
                    "end_date": END_DATE,
                    "next_retry_datetime": pendulum.instance(when).in_timezone("UTC").isoformat(),
                }
            )
    doc = {
        "airflow_version": airflow.__version__,
        "generated_by": "scripts/airflow-fixtures/retry_delays.py",
        "max_task_retry_delay_seconds": MAX_RETRY_DELAY,
        "formula": (
            "m = retry_exponential_backoff (bool True->2.0, False->0 after DAG serialisation); "
            "if m == 0: m = 1.0. If m != 1.0 and m > 0: "
            "min_backoff = max(1, ceil(retry_delay_s * m ** (try_number - 1))); "
            "h = int(sha1(f'{dag_id}#{task_id}#{logical_date}#{try_number}').hexdigest(), 16); "
            "delay_s = min(min_backoff + h % min_backoff, max_task_retry_delay (86400 default)); "
            "delay = min(max_retry_delay, timedelta(seconds=delay_s)) if max_retry_delay else that. "
            "Else delay = retry_delay. next_retry_datetime = end_date + delay. "
            "str(logical_date) is Python's datetime str with +00:00 ('2024-03-05 06:07:08.123456+00:00'; "
            "no fraction when microsecond == 0; 'None' for runs without a logical date). "
            "try_number is the number of the try that just failed (1 for the first failure)."
        ),
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}: {len(cases)} cases")


if __name__ == "__main__":
    main()
