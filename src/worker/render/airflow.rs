//! `dag`, `task` and `dag_run`: Airflow's objects as templates read them, with Airflow's
//! attribute names, reprs and enum members.

use std::any::Any;

use chrono::{DateTime, Utc};
use minijinja::Value;

use super::facts::{DagFacts, RunFacts, TaskFacts};
use super::objects::{PyEnum, PySeq};
use super::time::{PyDateTime, PyTimedelta};
use super::value::{Py, PyObject};

pub fn json_map(pairs: &[(String, serde_json::Value)]) -> Value {
    Value::from_iter(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
            .collect::<Vec<_>>(),
    )
}

pub fn date(t: Option<DateTime<Utc>>) -> Value {
    t.map(PyDateTime::value).unwrap_or(Value::from(()))
}

pub fn seconds(s: Option<f64>) -> Value {
    s.map(|s| Py::value(PyTimedelta::seconds(s)))
        .unwrap_or(Value::from(()))
}

pub fn strings(v: &[String]) -> Value {
    Value::from(
        v.iter()
            .map(|s| Value::from(s.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// `dag`.
#[derive(Debug)]
pub struct DagObj {
    pub facts: DagFacts,
}

impl PyObject for DagObj {
    fn class(&self) -> &'static str {
        "airflow.sdk.definitions.dag.DAG"
    }
    fn type_name(&self) -> &'static str {
        "DAG"
    }
    fn str(&self) -> String {
        format!("<DAG: {}>", self.facts.dag_id)
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let f = &self.facts;
        Some(match name {
            "dag_id" | "dag_display_name" => Value::from(f.dag_id.as_str()),
            "description" => Value::from(f.description.clone()),
            "owner" => Value::from(f.owner.as_str()),
            "tags" => strings(&f.tags),
            "catchup" => Value::from(f.catchup),
            "max_active_runs" => Value::from(f.max_active_runs),
            "max_active_tasks" => Value::from(f.max_active_tasks),
            "dagrun_timeout" => seconds(f.dagrun_timeout),
            "start_date" => date(f.start_date),
            "end_date" => date(f.end_date),
            "doc_md" => Value::from(f.doc_md.clone()),
            "schedule" => Value::from(f.schedule.clone()),
            "task_ids" => strings(&f.task_ids),
            "default_args" => Value::from_iter(Vec::<(String, Value)>::new()),
            "params" => json_map(&f.params),
            "is_paused_upon_creation" => Value::from(()),
            _ => return None,
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `task`.
#[derive(Debug)]
pub struct TaskObj {
    pub facts: TaskFacts,
    pub dag_id: String,
    pub params: Value,
}

impl TaskObj {
    fn class_name(&self) -> &str {
        self.facts
            .class_path
            .rsplit('.')
            .next()
            .unwrap_or(&self.facts.class_path)
    }
}

/// A number that prints as Python would for a value the user wrote (`0`, `2.0`).
fn multiplier(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

impl PyObject for TaskObj {
    fn class(&self) -> &'static str {
        "airflow.sdk.bases.operator.BaseOperator"
    }
    fn type_name(&self) -> &'static str {
        "BaseOperator"
    }
    fn str(&self) -> String {
        format!("<Task({}): {}>", self.class_name(), self.facts.task_id)
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let f = &self.facts;
        Some(match name {
            "task_id" | "task_display_name" => Value::from(f.task_id.as_str()),
            "dag_id" => Value::from(self.dag_id.as_str()),
            "owner" => Value::from(f.owner.as_str()),
            "retries" => Value::from(f.retries),
            "retry_delay" => seconds(Some(f.retry_delay)),
            "retry_exponential_backoff" => multiplier(f.retry_exponential_backoff),
            "max_retry_delay" => seconds(f.max_retry_delay),
            "execution_timeout" => seconds(f.execution_timeout),
            "queue" => Value::from(f.queue.as_str()),
            "pool" => Value::from(f.pool.as_str()),
            "pool_slots" => Value::from(1),
            "priority_weight" => Value::from(f.priority_weight),
            "trigger_rule" => PyEnum::of(
                "TriggerRule",
                "airflow.task.trigger_rule.TriggerRule",
                &f.trigger_rule,
            ),
            "depends_on_past" => Value::from(f.depends_on_past),
            "doc_md" => Value::from(f.doc_md.clone()),
            "upstream_task_ids" => {
                PySeq::set(f.upstream.iter().map(|s| Value::from(s.as_str())).collect())
            }
            "downstream_task_ids" => PySeq::set(
                f.downstream
                    .iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect(),
            ),
            "params" => self.params.clone(),
            "operator_name" | "task_type" => Value::from(self.class_name()),
            "map_index" => Value::from(-1),
            _ => return None,
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `dag_run`.
#[derive(Debug)]
pub struct DagRunObj {
    pub facts: RunFacts,
    pub dag_id: String,
}

impl PyObject for DagRunObj {
    fn class(&self) -> &'static str {
        "airflow.sdk.api.datamodels._generated.DagRun"
    }
    fn type_name(&self) -> &'static str {
        "DagRun"
    }
    fn str(&self) -> String {
        format!(
            "dag_id='{}' run_id='{}' run_type=<DagRunType.{}: '{}'> state=<DagRunState.{}: '{}'>",
            self.dag_id,
            self.facts.run_id,
            self.facts.run_type.to_ascii_uppercase(),
            self.facts.run_type,
            self.facts.state.to_ascii_uppercase(),
            self.facts.state
        )
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let f = &self.facts;
        Some(match name {
            "dag_id" => Value::from(self.dag_id.as_str()),
            "run_id" => Value::from(f.run_id.as_str()),
            "run_type" => PyEnum::of("DagRunType", "airflow.utils.types.DagRunType", &f.run_type),
            "state" => PyEnum::of("DagRunState", "airflow.utils.state.DagRunState", &f.state),
            "logical_date" => date(f.logical_date),
            "data_interval_start" => date(f.data_interval_start),
            "data_interval_end" => date(f.data_interval_end),
            "run_after" => date(f.run_after),
            "start_date" => date(f.start_date),
            "end_date" => date(f.end_date),
            "queued_at" => date(f.queued_at),
            "conf" => Value::from_serialize(&f.conf),
            "clear_number" => Value::from(f.clear_number),
            "triggered_by" => Value::from(()),
            "consumed_asset_events" => Value::from(Vec::<Value>::new()),
            _ => return None,
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
