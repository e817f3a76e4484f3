-- A DAG's end_date, so the lists can say why a DAG has no next run ("end_date passed").
ALTER TABLE dags ADD COLUMN end_date TIMESTAMPTZ;
