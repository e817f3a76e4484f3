-- Core state. Postgres is the source of truth; every process coordinates only through it.

CREATE TABLE dag_versions (
    id          BIGSERIAL PRIMARY KEY,
    dag_id      TEXT NOT NULL,
    -- sha256 of the validated spec: the same content is stored once.
    hash        TEXT NOT NULL,
    -- The validated DAG (crate::dag::Dag as JSON); workers execute this.
    spec        JSONB NOT NULL,
    fileloc     TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (dag_id, hash)
);

CREATE TABLE dags (
    dag_id                   TEXT PRIMARY KEY,
    version_id               BIGINT NOT NULL REFERENCES dag_versions (id),
    fileloc                  TEXT NOT NULL,
    -- false once the file is gone; the DAG and its history stay visible.
    is_active                BOOLEAN NOT NULL DEFAULT true,
    is_paused                BOOLEAN NOT NULL,
    schedule                 TEXT,
    description              TEXT,
    owners                   TEXT NOT NULL DEFAULT '',
    tags                     TEXT[] NOT NULL DEFAULT '{}',
    max_active_runs          INT NOT NULL,
    max_active_tasks         INT NOT NULL,
    -- The next scheduled run: its logical date, data interval, and when it may be created.
    next_logical_date        TIMESTAMPTZ,
    next_interval_start      TIMESTAMPTZ,
    next_interval_end        TIMESTAMPTZ,
    next_run_after           TIMESTAMPTZ,
    last_parsed_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dags_due ON dags (next_run_after) WHERE is_active AND NOT is_paused;

CREATE TABLE import_errors (
    filename    TEXT PRIMARY KEY,
    -- Every error of the file, one per line, each "file:line:col: ...".
    message     TEXT NOT NULL,
    -- The same errors as structured JSON: [{line, column, dag_id, task_id, field, message}].
    errors      JSONB NOT NULL DEFAULT '[]',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE dag_runs (
    id                   BIGSERIAL PRIMARY KEY,
    dag_id               TEXT NOT NULL REFERENCES dags (dag_id),
    run_id               TEXT NOT NULL,
    run_type             TEXT NOT NULL CHECK (run_type IN ('scheduled', 'manual', 'backfill')),
    logical_date         TIMESTAMPTZ NOT NULL,
    data_interval_start  TIMESTAMPTZ NOT NULL,
    data_interval_end    TIMESTAMPTZ NOT NULL,
    run_after            TIMESTAMPTZ NOT NULL DEFAULT now(),
    state                TEXT NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed')),
    conf                 JSONB NOT NULL DEFAULT '{}',
    note                 TEXT,
    version_id           BIGINT NOT NULL REFERENCES dag_versions (id),
    -- Tasks not yet in a final state; the finishing transaction that brings it to 0 ends the run.
    unfinished_tasks     INT NOT NULL DEFAULT 0,
    -- start_date + dagrun_timeout, set when the run starts.
    timeout_at           TIMESTAMPTZ,
    queued_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    start_date           TIMESTAMPTZ,
    end_date             TIMESTAMPTZ,
    UNIQUE (dag_id, run_id)
);
-- Restarts and several schedulers never double-fire a scheduled interval.
CREATE UNIQUE INDEX dag_runs_scheduled_once ON dag_runs (dag_id, logical_date) WHERE run_type = 'scheduled';
CREATE INDEX dag_runs_by_dag ON dag_runs (dag_id, id DESC);
CREATE INDEX dag_runs_open ON dag_runs (dag_id) WHERE state IN ('queued', 'running');
CREATE INDEX dag_runs_timeouts ON dag_runs (timeout_at) WHERE state = 'running' AND timeout_at IS NOT NULL;

CREATE TABLE task_instances (
    id                 BIGSERIAL PRIMARY KEY,
    run_pk             BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id             TEXT NOT NULL,
    task_id            TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT 'none' CHECK (state IN (
                           'none', 'scheduled', 'queued', 'running', 'success', 'failed',
                           'up_for_retry', 'upstream_failed', 'skipped')),
    try_number         INT NOT NULL DEFAULT 0,
    max_tries          INT NOT NULL,
    -- How many direct upstreams ended in each state; trigger rules read these counters so a
    -- finish touches one row per downstream, not every upstream's row.
    upstream_total     INT NOT NULL,
    up_success         INT NOT NULL DEFAULT 0,
    up_failed          INT NOT NULL DEFAULT 0,
    up_skipped         INT NOT NULL DEFAULT 0,
    up_upstream_failed INT NOT NULL DEFAULT 0,
    not_before         TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    lease_owner        UUID,
    lease_expires_at   TIMESTAMPTZ,
    heartbeat_at       TIMESTAMPTZ,
    queued_at          TIMESTAMPTZ,
    start_date         TIMESTAMPTZ,
    end_date           TIMESTAMPTZ,
    hostname           TEXT,
    UNIQUE (run_pk, task_id)
);
CREATE INDEX task_instances_ready ON task_instances (not_before, id) WHERE state = 'queued';
CREATE INDEX task_instances_retry ON task_instances (not_before) WHERE state = 'up_for_retry';
CREATE INDEX task_instances_leases ON task_instances (lease_expires_at) WHERE state = 'running';
CREATE INDEX task_instances_lease_owner ON task_instances (lease_owner) WHERE state = 'running';
CREATE INDEX task_instances_running_by_dag ON task_instances (dag_id) WHERE state = 'running';

-- One row per line, append-only, per try; pages are read by (ti_id, try_number, id).
CREATE TABLE task_logs (
    id          BIGSERIAL PRIMARY KEY,
    ti_id       BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number  INT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    stream      TEXT NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX task_logs_by_try ON task_logs (ti_id, try_number, id);

CREATE TABLE xcom (
    run_pk      BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    task_id     TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_pk, task_id, key)
);

CREATE TABLE workers (
    id            UUID PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           INT NOT NULL,
    slots         INT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE scheduler_heartbeats (
    id            UUID PRIMARY KEY,
    hostname      TEXT NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL DEFAULT 'admin',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
