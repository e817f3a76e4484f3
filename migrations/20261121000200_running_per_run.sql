-- max_active_tasks is per DAG run (as in Airflow 3): the claim counts running tasks by run.
CREATE INDEX task_instances_running_by_run ON task_instances (run_pk) WHERE state = 'running';
