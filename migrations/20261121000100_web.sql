-- Web sessions and API tokens. Only a SHA-256 of each secret is stored, so a database dump
-- does not let anyone log in.
CREATE TABLE auth_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('session', 'api')),
    -- Per-session CSRF token, echoed in every form the session posts.
    csrf        TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_at);

-- Reads the UI and API make at scale.
CREATE INDEX dag_runs_recent ON dag_runs (id DESC);
CREATE INDEX dag_runs_state ON dag_runs (state);
CREATE INDEX task_instances_state ON task_instances (state);
CREATE INDEX dags_tags ON dags USING GIN (tags);
CREATE INDEX dag_versions_by_dag ON dag_versions (dag_id, id DESC);
