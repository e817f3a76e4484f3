#!/usr/bin/env python3
"""Connections and Fernet as Airflow 3 does them.

Output: tests/fixtures/airflow/connections.json and tests/fixtures/airflow/fernet.json

Real Airflow code used:
* ``airflow.models.Connection(conn_id=..., uri=...)`` parses each URI; ``get_uri()`` prints it
  back; ``extra_dejson`` is the parsed extra;
* ``airflow.models.crypto.get_fernet()`` with ``AIRFLOW__CORE__FERNET_KEY`` set to two fixed keys
  (newest first, as for a rotation) encrypts values, exactly what the ORM stores in
  ``connection.password`` / ``connection.extra`` / ``variable.val``.

``fernet.json`` also carries tokens that updraft wrote (``from_updraft``); this script checks that
Airflow decrypts them with the same keys, so the fixture proves both directions. To refresh those,
run ``cargo test --lib fernet_fixture -- --ignored`` first (it rewrites ``from_updraft``), then this
script, which keeps them and verifies them.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

KEY_NEW = "nv1xUWtT4S85XgcAbJ1tjjC-MAAVfXKsgWtla0TYNuo="
KEY_OLD = "kzESK5XBNe-vk-4Z4NkIKCR07Dv0DrPW8xtCOdfZDiY="


def _mk_home() -> str:
    d = tempfile.mkdtemp(prefix="updraft-airflow-home-")
    atexit.register(shutil.rmtree, d, True)
    return d


if os.environ.get("PYTHONHASHSEED") != "0" or os.environ.get("TZ") != "UTC":
    env = dict(os.environ, PYTHONHASHSEED="0", TZ="UTC")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

os.environ["AIRFLOW_HOME"] = _mk_home()
os.environ["AIRFLOW__CORE__FERNET_KEY"] = f"{KEY_NEW},{KEY_OLD}"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from airflow.models import Connection  # noqa: E402
from airflow.models.crypto import get_fernet  # noqa: E402
import airflow  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "airflow"

URIS = [
    "postgres://user:pass@db.example.com:5432/mydb",
    "postgresql://u%40corp:p%2Fw%3Ad@DB.Example.com/my%20db?sslmode=require&connect_timeout=10",
    "http://api.example.com",
    "https://user:pw@api.example.com:8443/v1",
    "http://example.com/https?headers=%7B%22X%22%3A+%221%22%7D",
    "kafka://broker:9092",
    "cassandra://cass:secret@cass1:9042/spark_streams",
    "mysql://h/?__extra__=%7B%22a%22%3A+%5B1%2C+2%5D%7D",
    "my-conn-type://login:password@host:1234/schema?param1=val1&param2=val2",
    "aws://?region_name=eu-west-1&role=arn%3Aaws%3Aiam",
    "http://@:8080",
    "google-cloud-platform://?extra__google_cloud_platform__project=airflow",
    "http://https://example.com:443/path",
    "sqlite://%2Ftmp%2Fdb.sqlite",
    "x://only-login@host",
    "x://:only-pw@host",
    "x://h?empty=&num=5&flag=true&obj=%7B%22k%22%3A1%7D",
]


def conn_case(uri: str) -> dict:
    c = Connection(conn_id="c", uri=uri)
    return {
        "uri": uri,
        "parsed": {
            "conn_type": c.conn_type,
            "host": c.host,
            "schema": c.schema,
            "login": c.login,
            "password": c.password,
            "port": c.port,
            "extra_dejson": c.extra_dejson,
        },
        "get_uri": c.get_uri(),
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cases = [conn_case(u) for u in URIS]
    (OUT / "connections.json").write_text(json.dumps(cases, indent=2, sort_keys=True) + "\n")

    fernet = get_fernet()
    plain = ["s3cret-p@ss", '{"sslmode": "require", "api_key": "k3y"}', "héllo wörld ✓", ""]
    from_airflow = [{"plain": p, "token": fernet.encrypt(p.encode()).decode()} for p in plain]
    # A token made with the old key only: readable while both keys are configured.
    old_only = Fernet(KEY_OLD.encode())
    from_airflow.append({"plain": "rotated-away", "token": old_only.encrypt(b"rotated-away").decode()})
    fixture_path = OUT / "fernet.json"
    from_updraft = []
    if fixture_path.exists():
        from_updraft = json.loads(fixture_path.read_text()).get("from_updraft", [])
    for case in from_updraft:
        got = fernet.decrypt(case["token"].encode()).decode()
        assert got == case["plain"], f"Airflow decrypted {got!r}, updraft wrote {case['plain']!r}"
    print(f"Airflow decrypted {len(from_updraft)} token(s) written by updraft", file=sys.stderr)
    fixture = {
        "airflow_version": airflow.__version__,
        "fernet_key": f"{KEY_NEW},{KEY_OLD}",
        "from_airflow": from_airflow,
        "from_updraft": from_updraft,
        "generated_by": "scripts/airflow-fixtures/connections_fernet.py",
    }
    fixture_path.write_text(json.dumps(fixture, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
