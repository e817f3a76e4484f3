-- Variables, connections and pools: managed at run time from the UI, the API and the CLI.
-- Secrets (connection passwords and extras, variable values) are stored as Fernet tokens
-- (the `is_*encrypted` flags say so), never in plain text when a key is configured.

CREATE TABLE variables (
    id            BIGSERIAL PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    -- The value as text, or its Fernet token when is_encrypted.
    val           TEXT NOT NULL,
    description   TEXT,
    is_encrypted  BOOLEAN NOT NULL DEFAULT false,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE connections (
    id                  BIGSERIAL PRIMARY KEY,
    conn_id             TEXT NOT NULL UNIQUE,
    conn_type           TEXT NOT NULL,
    description         TEXT,
    host                TEXT,
    schema              TEXT,
    login               TEXT,
    -- Fernet token when is_encrypted.
    password            TEXT,
    port                INT,
    -- A JSON object as text; its Fernet token when is_extra_encrypted.
    extra               TEXT,
    is_encrypted        BOOLEAN NOT NULL DEFAULT false,
    is_extra_encrypted  BOOLEAN NOT NULL DEFAULT false,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Workers cache connections and variables and reload them when this counter moves, so a
-- change takes effect at the next try without every try reading both tables.
CREATE TABLE config_generation (
    id          BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    generation  BIGINT NOT NULL
);
INSERT INTO config_generation (id, generation) VALUES (true, 1);

CREATE FUNCTION bump_config_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_generation SET generation = generation + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER variables_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON variables
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_generation();
CREATE TRIGGER connections_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON connections
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_generation();

CREATE TABLE pools (
    pool              TEXT PRIMARY KEY,
    slots             INT NOT NULL CHECK (slots >= -1),
    description       TEXT NOT NULL DEFAULT '',
    include_deferred  BOOLEAN NOT NULL DEFAULT false
);
INSERT INTO pools (pool, slots, description, include_deferred)
VALUES ('default_pool', 128, 'Default pool', false);

ALTER TABLE task_instances ADD COLUMN pool TEXT NOT NULL DEFAULT 'default_pool';
ALTER TABLE task_instances ADD COLUMN pool_slots INT NOT NULL DEFAULT 1;
-- Slot counts per pool read only the tasks that hold or wait for slots.
CREATE INDEX task_instances_pool_active ON task_instances (pool) WHERE state IN ('queued', 'running', 'scheduled');
