-- Runs of a DAG by logical date: the previous successful run (`prev_*_success` in templates),
-- XComs of earlier runs (`xcom_pull(include_prior_dates=True)`), and the REST API's
-- `logical_date_gte/_lte` filters.
CREATE INDEX dag_runs_by_logical_date ON dag_runs (dag_id, logical_date);
