-- Claims count the slots each pool has running (weighted by pool_slots).
CREATE INDEX task_instances_running_by_pool ON task_instances (pool) WHERE state = 'running';
