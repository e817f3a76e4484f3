-- Notes on task instances (Markdown, as Airflow's), set from the UI, the API and the CLI.
ALTER TABLE task_instances ADD COLUMN note TEXT;
