-- Backfills (Airflow 3): runs of type `backfill` for every schedule tick in a logical-date
-- range, started `max_active_runs` at a time by the scheduler as earlier ones finish.
CREATE TABLE backfills (
    id                    BIGSERIAL PRIMARY KEY,
    dag_id                TEXT NOT NULL REFERENCES dags (dag_id),
    from_date             TIMESTAMPTZ NOT NULL,
    to_date               TIMESTAMPTZ NOT NULL,
    dag_run_conf          JSONB NOT NULL DEFAULT '{}',
    reprocess_behavior    TEXT NOT NULL CHECK (reprocess_behavior IN ('none', 'failed', 'completed')),
    max_active_runs       INT NOT NULL CHECK (max_active_runs > 0),
    run_backwards         BOOLEAN NOT NULL DEFAULT false,
    is_paused             BOOLEAN NOT NULL DEFAULT false,
    triggering_user_name  TEXT,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when every date has been run (or the backfill was cancelled).
    completed_at          TIMESTAMPTZ
);
CREATE INDEX backfills_by_dag ON backfills (dag_id, id DESC);
CREATE INDEX backfills_active ON backfills (id) WHERE completed_at IS NULL;

-- One row per logical date of a backfill, in the order it runs (`sort_ordinal`).
CREATE TABLE backfill_runs (
    backfill_id       BIGINT NOT NULL REFERENCES backfills (id) ON DELETE CASCADE,
    sort_ordinal      INT NOT NULL,
    logical_date      TIMESTAMPTZ NOT NULL,
    interval_start    TIMESTAMPTZ NOT NULL,
    interval_end      TIMESTAMPTZ NOT NULL,
    -- The run: one the backfill created, or an existing one it runs again.
    run_pk            BIGINT REFERENCES dag_runs (id) ON DELETE SET NULL,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'started', 'skipped', 'cancelled')),
    -- Why a date is skipped ("already exists", "in flight"), as Airflow's.
    exception_reason  TEXT,
    PRIMARY KEY (backfill_id, sort_ordinal)
);
CREATE INDEX backfill_runs_pending ON backfill_runs (backfill_id, sort_ordinal) WHERE state = 'pending';

ALTER TABLE dag_runs ADD COLUMN backfill_id BIGINT REFERENCES backfills (id) ON DELETE SET NULL;
CREATE INDEX dag_runs_by_backfill ON dag_runs (backfill_id) WHERE backfill_id IS NOT NULL;
