#!/usr/bin/env bash
# Regenerates tests/fixtures/airflow/*.json with real Airflow: creates a scratch virtualenv
# with apache-airflow 3.3.2 (and croniter) from PyPI if it is not there yet, runs the three
# fixture scripts, and shows what changed. The test suite never needs this: the fixtures are
# committed. See README.md next to this file.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${AIRFLOW_FIXTURES_VENV:-/work/venvs/airflow}"
if ! "$venv/bin/python" -c "import airflow, croniter" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -U pip
  "$venv/bin/pip" install "apache-airflow==3.3.2" "croniter==7.0.0" \
      "apache-airflow-client==3.3.2" "apache-airflow-ctl==0.1.5"
fi
for s in render_templates cron_ticks retry_delays; do
  "$venv/bin/python" "scripts/airflow-fixtures/$s.py"
done
git diff --stat tests/fixtures/airflow/
