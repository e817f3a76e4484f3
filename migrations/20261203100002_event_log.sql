-- The audit log: every change made from the UI, the API or the CLI (trigger, pause, clear,
-- mark, note, delete, backfill, sign-in), with who, when, what and from where. Append-only.
CREATE TABLE event_log (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    event        TEXT NOT NULL,
    -- The user's name; NULL for updraft itself.
    owner        TEXT,
    dag_id       TEXT,
    run_id       TEXT,
    task_id      TEXT,
    -- Where the change came from: 'api', 'ui' or 'cli', and the client's address.
    source       TEXT NOT NULL,
    remote_addr  TEXT,
    -- What was asked, as JSON.
    extra        JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX event_log_by_dag ON event_log (dag_id, id DESC);
CREATE INDEX event_log_by_event ON event_log (event, id DESC);
