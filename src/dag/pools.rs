//! Pools a DAG's tasks name must exist: where the pools are known (the DAG processor reads
//! them from the database), a task naming a missing pool makes its file an import error, as
//! Airflow reports a `non-existent pool`. Like any import error, the whole file then
//! contributes no DAG. A pool deleted later is caught when a try starts (the worker fails it
//! naming the pool).

use std::collections::BTreeSet;

use super::load::DagBag;
use super::read::DagError;

impl DagBag {
    /// Moves every file with a task whose pool is not in `known` into `errors`.
    pub fn check_pools(&mut self, known: &[String]) {
        let known: BTreeSet<&str> = known.iter().map(String::as_str).collect();
        let mut bad: Vec<(String, DagError)> = Vec::new();
        for loaded in self.dags.values() {
            for task in &loaded.dag.tasks {
                let pool = task.pool_name();
                if !known.contains(pool) {
                    bad.push((
                        loaded.fileloc.clone(),
                        DagError {
                            file: loaded.fileloc.clone(),
                            line: None,
                            column: None,
                            dag_id: Some(loaded.dag.dag_id.to_string()),
                            task_id: Some(task.task_id.to_string()),
                            field: Some("pool".into()),
                            message: format!(
                                "pool `{pool}` does not exist; create it in the UI (Admin → Pools), with `updraft pools set {pool} SLOTS DESCRIPTION` or the API, or remove `pool`"
                            ),
                        },
                    ));
                }
            }
        }
        if bad.is_empty() {
            return;
        }
        let files: BTreeSet<String> = bad.iter().map(|(f, _)| f.clone()).collect();
        self.dags.retain(|_, l| !files.contains(&l.fileloc));
        for (file, error) in bad {
            self.errors.entry(file).or_default().push(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{Dag, DagId, LoadedDag, OperatorName, Task, TaskId};

    #[test]
    fn a_missing_pool_is_an_import_error_of_the_file() {
        let mut t = Task::new(TaskId::parse("t").unwrap(), OperatorName::Empty);
        t.pool = Some("etl".into());
        let dag = Dag::new(DagId::parse("d").unwrap(), vec![t]);
        let other = Dag::new(
            DagId::parse("ok").unwrap(),
            vec![Task::new(TaskId::parse("t").unwrap(), OperatorName::Empty)],
        );
        let mut bag = DagBag::default();
        bag.dags
            .insert(dag.dag_id.clone(), LoadedDag::new(dag, "a.yaml", ""));
        bag.dags
            .insert(other.dag_id.clone(), LoadedDag::new(other, "b.yaml", ""));
        let mut with_pool = bag.clone();
        with_pool.check_pools(&["default_pool".into(), "etl".into()]);
        assert_eq!(with_pool.dags.len(), 2);
        bag.check_pools(&["default_pool".into()]);
        assert_eq!(bag.dags.len(), 1);
        let e = &bag.errors["a.yaml"][0];
        assert!(e.to_string().contains("pool `etl` does not exist"), "{e}");
        assert_eq!(e.task_id.as_deref(), Some("t"));
    }
}
