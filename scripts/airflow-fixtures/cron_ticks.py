#!/usr/bin/env python3
"""Cron tick fixtures computed the way Airflow 3 computes them.

Output: tests/fixtures/airflow/cron_ticks.json

How Airflow uses croniter (airflow/timetables/_cron.py, CronMixin):

* the expression is first mapped through ``airflow.utils.dates.cron_presets``
  (@hourly @daily @weekly @monthly @quarterly @yearly); anything else goes to croniter as-is;
* ``_get_next(current)``: ``croniter(expr, start_time=make_naive(current, tz)).get_next(datetime)``,
  made aware again in the timetable timezone (UTC here) -- a *new* croniter for every step, always
  strictly after ``current``; ``_get_prev`` likewise with ``get_prev`` (strictly before);
* croniter's defaults are used (``day_or=True``: when both day-of-month and day-of-week are
  restricted a day matches if EITHER matches, like Vixie cron).

For each (expression, start) this records the next 5 ticks (chained ``_get_next``) and the
previous 2 (chained ``_get_prev``), all via ``CronTriggerTimetable(expr, timezone="UTC")``'s own
``_get_next/_get_prev``; the same values are cross-checked against a bare croniter iterator.
It also records ``CronTriggerTimetable.next_dagrun_info`` for a few schedules with and without
catchup, with ``utcnow()`` pinned to ``NOW``.
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
import json  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402
from unittest import mock  # noqa: E402

import pendulum  # noqa: E402
from croniter import croniter  # noqa: E402

import airflow  # noqa: E402
import airflow.timetables.trigger as trigger_mod  # noqa: E402
from airflow.timetables.base import DataInterval, TimeRestriction  # noqa: E402
from airflow.timetables.trigger import CronTriggerTimetable  # noqa: E402
from airflow.utils.dates import cron_presets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "airflow" / "cron_ticks.json"

EXPRESSIONS = [
    # presets (Airflow's table) and croniter-only presets
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
    "@annually",
    "@midnight",
    # plain fields, ranges, steps, lists
    "* * * * *",
    "*/5 * * * *",
    "*/7 * * * *",
    "5-59/20 * * * *",
    "15,45 * * * *",
    "0 * * * *",
    "30 2 * * *",
    "0 0 * * *",
    "0 0-23/6 * * *",
    "0 */5 * * *",
    "23 0-20/2 * * *",
    "1-5/2 3 * * *",
    "59 23 31 12 *",
    "0 0 1 * *",
    "0 0 1,15 * *",
    "0 0 */2 * *",
    "0 0 28-31 * *",
    "0 0 30 * *",
    "0 0 31 * *",
    "0 4 8-14 * *",
    "0 0 1 1 *",
    "0 0 1 */3 *",
    "0 0 15 6 *",
    "0 0 29 2 *",
    "0 12 * 2 *",
    # day-of-week, names
    "0 0 * * 0",
    "0 0 * * 7",
    "0 0 * * 1,3,5",
    "0 0 * * */2",
    "0 22 * * 1-5",
    "*/15 9-17 * * 1-5",
    "0 0 * * MON-FRI",
    "0 0 * * SAT,SUN",
    "0 9-17/2 * * mon-fri",
    "0 9 * JAN,JUL *",
    "0 0 1 JAN-MAR *",
    # day-of-month AND day-of-week both restricted (croniter: OR)
    "0 0 1 * 1",
    "0 12 1-7 * 5",
    "0 0 13 * 5",
    "0 0 1-7 * 1",
    "0 0 29 2 1",
    "0 0 ? * 1",
    # croniter extensions
    "0 0 L * *",
    "0 0 L 2 *",
    "0 0 * * 5L",
    "0 0 * * 1#2",
    "0 0 15W * *",
    # impossible / invalid
    "0 0 31 4 *",
    "0 0 30 2 *",
    "60 * * * *",
    "0 0 * * 8",
    "not a cron",
    "0 0 * *",
]

STARTS = [
    "2024-03-05T06:07:08.123456+00:00",
    "2024-01-01T00:00:00+00:00",
    "2024-02-28T23:59:59+00:00",
    "2024-02-29T00:00:00+00:00",
    "2023-12-31T23:30:00+00:00",
    "2025-02-28T12:00:00+00:00",
    "2024-12-31T23:59:59.999999+00:00",
]

N_NEXT = 5
N_PREV = 2

NOW = "2024-03-05T06:07:08.123456+00:00"


def iso(d) -> str:
    return pendulum.instance(d).in_timezone("UTC").isoformat()


def ticks(expr: str, start: str) -> dict:
    tt = CronTriggerTimetable(expr, timezone="UTC")
    cur = pendulum.parse(start)
    case: dict = {"expr": expr, "start": start}
    try:
        nxt, c = [], cur
        for _ in range(N_NEXT):
            c = tt._get_next(c)
            nxt.append(c)
        prv, c = [], cur
        for _ in range(N_PREV):
            c = tt._get_prev(c)
            prv.append(c)
    except Exception as e:  # noqa: BLE001
        case["error"] = type(e).__name__
        case["message"] = str(e)
        return case
    # cross-check against one croniter iterated in place
    naive = cur.in_timezone("UTC").naive()
    it = croniter(cron_presets.get(expr, expr), start_time=naive)
    raw_next = [it.get_next(dt.datetime) for _ in range(N_NEXT)]
    it = croniter(cron_presets.get(expr, expr), start_time=naive)
    raw_prev = [it.get_prev(dt.datetime) for _ in range(N_PREV)]
    same = [x.replace(tzinfo=None) for x in nxt] == raw_next and [x.replace(tzinfo=None) for x in prv] == raw_prev
    if not same:
        case["croniter_iterated_next"] = [iso(x.replace(tzinfo=dt.timezone.utc)) for x in raw_next]
        case["croniter_iterated_prev"] = [iso(x.replace(tzinfo=dt.timezone.utc)) for x in raw_prev]
    case["next"] = [iso(x) for x in nxt]
    case["prev"] = [iso(x) for x in prv]
    return case


def dagrun_info_cases() -> list[dict]:
    now = pendulum.parse(NOW)
    specs = [
        # (expr, start_date, end_date, catchup, last_interval_end, interval_hours)
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", None, True, None, 0),
        ("0 0 * * *", "2024-01-01T12:00:00+00:00", None, True, None, 0),
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", None, True, "2024-01-05T00:00:00+00:00", 0),
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", None, False, None, 0),
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", None, False, "2024-01-05T00:00:00+00:00", 0),
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", None, False, "2024-03-05T00:00:00+00:00", 0),
        ("0 0 * * *", "2024-04-01T00:00:00+00:00", None, False, None, 0),
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", "2024-01-03T00:00:00+00:00", True,
         "2024-01-03T00:00:00+00:00", 0),
        ("0 0 * * *", "2024-01-01T00:00:00+00:00", None, True, None, 24),
        ("@hourly", "2024-03-05T00:30:00+00:00", None, True, None, 0),
        ("@hourly", "2024-01-01T00:00:00+00:00", None, False, None, 0),
        ("0 12 1-7 * 5", "2024-01-01T00:00:00+00:00", None, True, None, 0),
        ("*/15 9-17 * * 1-5", "2024-03-01T17:50:00+00:00", None, True, None, 0),
        ("0 0 29 2 *", "2024-03-01T00:00:00+00:00", None, True, None, 0),
        ("@monthly", "2024-01-15T00:00:00+00:00", None, False, None, 1),
    ]
    out = []
    for expr, start, end, catchup, last_end, interval_h in specs:
        tt = CronTriggerTimetable(expr, timezone="UTC", interval=dt.timedelta(hours=interval_h))
        restriction = TimeRestriction(
            earliest=pendulum.parse(start), latest=pendulum.parse(end) if end else None, catchup=catchup
        )
        last = None
        if last_end:
            e = pendulum.parse(last_end)
            last = DataInterval(e - dt.timedelta(hours=interval_h), e)
        runs = []
        with mock.patch.object(trigger_mod, "utcnow", lambda: now):
            for _ in range(3):
                info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
                if info is None:
                    runs.append(None)
                    break
                runs.append(
                    {
                        "run_after": iso(info.run_after),
                        "data_interval_start": iso(info.data_interval.start),
                        "data_interval_end": iso(info.data_interval.end),
                        "logical_date": iso(info.logical_date),
                    }
                )
                last = info.data_interval
        out.append(
            {
                "expr": expr,
                "timezone": "UTC",
                "interval_seconds": interval_h * 3600,
                "start_date": start,
                "end_date": end,
                "catchup": catchup,
                "last_automated_data_interval_end": last_end,
                "now": NOW,
                "runs": runs,
            }
        )
    return out


def main() -> None:
    cases = [ticks(e, s) for e in EXPRESSIONS for s in STARTS]
    doc = {
        "airflow_version": airflow.__version__,
        "croniter_version": version("croniter"),
        "generated_by": "scripts/airflow-fixtures/cron_ticks.py",
        "airflow_cron_presets": cron_presets,
        "semantics": (
            "next[i] = CronTriggerTimetable(expr, timezone='UTC')._get_next(next[i-1]) starting from "
            "start (strictly after); prev likewise with _get_prev (strictly before). UTC. "
            "croniter day_or=True (DOM/DOW OR when both restricted). Seconds/microseconds of start are "
            "ignored for matching but a tick equal to start is never returned."
        ),
        "cases": cases,
        "next_dagrun_info": dagrun_info_cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    n_err = sum(1 for c in cases if "error" in c)
    n_diff = sum(1 for c in cases if "croniter_iterated_next" in c)
    print(f"wrote {OUT.relative_to(REPO)}: {len(EXPRESSIONS)} expressions, {len(cases)} cases "
          f"({n_err} errors, {n_diff} differ from iterated croniter)")


if __name__ == "__main__":
    main()
