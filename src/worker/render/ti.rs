//! `ti` / `task_instance`: the running try, and `xcom_pull` as Airflow 3.3's
//! `RuntimeTaskInstance` does it.

use std::any::Any;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use minijinja::{Error, ErrorKind, State, Value};

use super::airflow::date;
use super::facts::TiFacts;
use super::lookup::{TemplateData, XComQuery};
use super::value::{arg, as_int, items_of, only_kwargs, py_err, split_args, to_str, PyObject};

/// `ti` / `task_instance`.
pub struct TiObj {
    pub facts: TiFacts,
    pub dag_id: String,
    pub task_id: String,
    pub run_id: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub task: Value,
    pub data: Arc<dyn TemplateData>,
}

impl std::fmt::Debug for TiObj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.str())
    }
}

impl TiObj {
    /// Airflow 3.3's `RuntimeTaskInstance.xcom_pull`.
    fn xcom_pull(&self, args: &[Value]) -> Result<Value, Error> {
        let (pos, kwargs) = split_args(args)?;
        only_kwargs(
            &kwargs,
            &[
                "task_ids",
                "dag_id",
                "key",
                "include_prior_dates",
                "map_indexes",
                "default",
                "run_id",
            ],
            "xcom_pull",
        )?;
        let opt = |i: usize, name: &str| arg(pos, &kwargs, i, name).filter(|v| !v.is_none());
        let task_ids = opt(0, "task_ids");
        let dag_id = opt(1, "dag_id")
            .map(|v| to_str(&v))
            .unwrap_or(self.dag_id.clone());
        let key = arg(pos, &kwargs, 2, "key")
            .map(|v| {
                if v.is_none() {
                    "return_value".to_string()
                } else {
                    to_str(&v)
                }
            })
            .unwrap_or("return_value".into());
        let include_prior = opt(3, "include_prior_dates").is_some_and(|v| v.is_true());
        let map_indexes = opt(4, "map_indexes");
        let default = opt(5, "default").unwrap_or(Value::from(()));
        let run_id = opt(6, "run_id")
            .map(|v| to_str(&v))
            .unwrap_or(self.run_id.clone());
        let single_task = task_ids.as_ref().is_none_or(|t| t.as_str().is_some());
        let ids: Vec<String> = match &task_ids {
            None => vec![self.task_id.clone()],
            Some(t) if t.as_str().is_some() => vec![to_str(t)],
            Some(t) => items_of(t)
                .ok_or_else(|| {
                    py_err(
                        "TypeError",
                        "task_ids must be a string or a list of strings",
                    )
                })?
                .iter()
                .map(to_str)
                .collect(),
        };
        let query = XComQuery {
            dag_id,
            run_id,
            logical_date: self.logical_date,
            task_ids: ids.clone(),
            key,
            include_prior_dates: include_prior,
        };
        let hits = self
            .data
            .xcoms(&query)
            .map_err(|e| py_err("AirflowRuntimeError", format!("could not read XComs: {e}")))?;
        let values_of = |task: &str| -> Vec<Value> {
            hits.iter()
                .filter(|(t, _)| t == task)
                .map(|(_, v)| Value::from_serialize(v))
                .collect()
        };
        let Some(map_indexes) = map_indexes else {
            let mut out = Vec::new();
            for t in &ids {
                let vals = values_of(t);
                if vals.is_empty() {
                    out.push(Value::from(()));
                } else {
                    out.extend(vals);
                }
            }
            if single_task && out.len() == 1 {
                return Ok(out.remove(0));
            }
            return Ok(Value::from(out));
        };
        // updraft has no mapped tasks: every XCom is at map index -1.
        let single_index = as_int(&map_indexes).is_some();
        let indexes: Vec<i128> = match as_int(&map_indexes) {
            Some(i) => vec![i],
            None => items_of(&map_indexes)
                .unwrap_or_default()
                .iter()
                .filter_map(as_int)
                .collect(),
        };
        let mut out = Vec::new();
        for t in &ids {
            for i in &indexes {
                let v = if *i == -1 {
                    values_of(t).into_iter().next()
                } else {
                    None
                };
                out.push(v.unwrap_or_else(|| default.clone()));
            }
        }
        if single_task && single_index {
            return Ok(out.remove(0));
        }
        Ok(Value::from(out))
    }
}

impl PyObject for TiObj {
    fn class(&self) -> &'static str {
        "airflow.sdk.execution_time.task_runner.RuntimeTaskInstance"
    }
    fn type_name(&self) -> &'static str {
        "RuntimeTaskInstance"
    }
    fn str(&self) -> String {
        format!(
            "RuntimeTaskInstance(dag_id='{}', task_id='{}', run_id='{}', try_number={}, map_index={})",
            self.dag_id, self.task_id, self.run_id, self.facts.try_number, self.facts.map_index
        )
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let f = &self.facts;
        Some(match name {
            "try_number" => Value::from(f.try_number),
            "max_tries" => Value::from(f.max_tries),
            "task_id" => Value::from(self.task_id.as_str()),
            "dag_id" => Value::from(self.dag_id.as_str()),
            "run_id" => Value::from(self.run_id.as_str()),
            "map_index" => Value::from(f.map_index),
            "hostname" => Value::from(f.hostname.as_str()),
            "start_date" => date(f.start_date),
            "logical_date" => date(self.logical_date),
            "task" => self.task.clone(),
            "state" => Value::from("running"),
            _ => return None,
        })
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        match name {
            "xcom_pull" => self.xcom_pull(args),
            "xcom_push" => Err(py_err(
                "TypeError",
                "ti.xcom_push() cannot be called while rendering a template",
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
