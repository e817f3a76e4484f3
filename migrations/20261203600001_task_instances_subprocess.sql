-- Whether a task instance runs a command in processes of its own (`bash`): a worker claims
-- no more of those at once than its process slots, so that a small machine is not swamped
-- by commands while in-process tasks (empty, http, fetch, publish, sink) keep flowing.
ALTER TABLE task_instances ADD COLUMN subprocess BOOLEAN NOT NULL DEFAULT false;
