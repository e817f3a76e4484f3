-- Leases are held per worker, not per task: a worker's heartbeat renews one row, and a task
-- instance it runs stays leased while that row is fresh. The reaper finds running task
-- instances whose owner's heartbeat is older than the owner's own lease TTL.
ALTER TABLE workers ADD COLUMN lease_ttl INTERVAL NOT NULL DEFAULT interval '10 seconds';

-- Queued and retrying task instances are claimed in one due-time order: `not_before` is when
-- a task became ready (queued) or when its retry is due (up_for_retry).
UPDATE task_instances SET not_before = coalesce(queued_at, now()) WHERE state = 'queued';
CREATE INDEX task_instances_due ON task_instances (not_before, id) WHERE state IN ('queued', 'up_for_retry');
DROP INDEX task_instances_ready;
DROP INDEX task_instances_retry;
DROP INDEX task_instances_leases;

-- A scheduler step that failed for one DAG is recorded on that DAG (shown in the UI, logged
-- once per new message) instead of stopping the step for every other DAG.
ALTER TABLE dags ADD COLUMN scheduler_error TEXT;
ALTER TABLE dags ADD COLUMN scheduler_error_at TIMESTAMPTZ;
