-- Every recorded try of a task, written by the finishing transaction: task_instances holds
-- only the latest try, and the run page's timeline shows them all.
CREATE TABLE task_tries (
    ti_id      BIGINT NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number INT NOT NULL,
    state      TEXT NOT NULL,
    start_date TIMESTAMPTZ,
    end_date   TIMESTAMPTZ,
    PRIMARY KEY (ti_id, try_number)
);
