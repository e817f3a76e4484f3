//! The Airflow template context: every name `RuntimeTaskInstance.get_template_context()`
//! gives a task in Airflow 3.3, built from plain [`Facts`] about the DAG, the task, the run
//! and the try. The worker fills the facts from its database rows; the corpus test fills
//! them from the Airflow fixture, so both render through the same objects.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use minijinja::Value;

use super::accessors::{ConnAccessor, VarAccessor};
use super::airflow::{date, json_map, DagObj, DagRunObj, TaskObj};
use super::facts::Facts;
use super::lookup::TemplateData;
use super::objects::PyNoneProxy;
use super::ti::TiObj;
use super::time::{strftime, PyDateTime};
use super::value::Py;

/// Builds the context of one try. `now` is the render's clock (`macros.time.time()`).
pub fn build(facts: &Facts, data: Arc<dyn TemplateData>, now: DateTime<Utc>) -> Value {
    let params = json_map(&facts.params);
    let dag = Py::value(DagObj {
        facts: facts.dag.clone(),
    });
    // `task.params` sees the conf's values for the keys it has, not conf-only keys.
    let task_params: Vec<(String, serde_json::Value)> = facts
        .task
        .params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                facts.run.conf.get(k).cloned().unwrap_or_else(|| v.clone()),
            )
        })
        .collect();
    let task = Py::value(TaskObj {
        facts: facts.task.clone(),
        dag_id: facts.dag.dag_id.clone(),
        params: json_map(&task_params),
    });
    let ti = Py::value(TiObj {
        facts: facts.ti.clone(),
        dag_id: facts.dag.dag_id.clone(),
        task_id: facts.task.task_id.clone(),
        run_id: facts.run.run_id.clone(),
        logical_date: facts.run.logical_date,
        task: task.clone(),
        data: data.clone(),
    });
    let dag_run = Py::value(DagRunObj {
        facts: facts.run.clone(),
        dag_id: facts.dag.dag_id.clone(),
    });
    let var = Value::from_iter([
        (
            "json",
            Py::value(VarAccessor {
                json: true,
                data: data.clone(),
            }),
        ),
        (
            "value",
            Py::value(VarAccessor {
                json: false,
                data: data.clone(),
            }),
        ),
    ]);
    let prev = facts.prev_success.clone().unwrap_or_default();
    let prev_date = |t: Option<DateTime<Utc>>| match t {
        Some(t) => PyDateTime::value(t),
        None => Py::value(PyNoneProxy),
    };
    let run = &facts.run;
    let key_suffix = match run.logical_date {
        Some(t) => t.format("%Y%m%d").to_string(),
        None => run.run_id.clone(),
    };
    let empty_map = || Value::from_iter(Vec::<(String, Value)>::new());
    let mut ctx: Vec<(&str, Value)> = vec![
        ("conn", Py::value(ConnAccessor { data })),
        ("dag", dag),
        ("dag_run", dag_run),
        ("inlet_events", empty_map()),
        ("inlets", Value::from(Vec::<Value>::new())),
        ("macros", super::macros::macros(now)),
        ("map_index_template", Value::from(())),
        ("outlet_events", empty_map()),
        ("outlets", Value::from(Vec::<Value>::new())),
        ("params", params),
        ("partition_date", Value::from(())),
        ("partition_key", Value::from(())),
        ("prev_end_date_success", prev_date(prev.end_date)),
        ("prev_start_date_success", prev_date(prev.start_date)),
        ("run_id", Value::from(run.run_id.as_str())),
        ("task", task),
        ("task_instance", ti.clone()),
        (
            "task_instance_key_str",
            Value::from(format!(
                "{}__{}__{key_suffix}",
                facts.dag.dag_id, facts.task.task_id
            )),
        ),
        ("task_reschedule_count", Value::from(0)),
        ("task_state_store", empty_map()),
        ("ti", ti),
        ("triggering_asset_events", empty_map()),
        ("var", var),
    ];
    if let Some(ld) = run.logical_date {
        let iso = PyDateTime::utc(ld).isoformat("T");
        let l = ld.naive_utc();
        ctx.extend([
            ("data_interval_end", date(run.data_interval_end)),
            ("data_interval_start", date(run.data_interval_start)),
            ("ds", Value::from(strftime(l, None, "%Y-%m-%d"))),
            ("ds_nodash", Value::from(strftime(l, None, "%Y%m%d"))),
            ("logical_date", PyDateTime::value(ld)),
            (
                "prev_data_interval_end_success",
                prev_date(prev.data_interval_end),
            ),
            (
                "prev_data_interval_start_success",
                prev_date(prev.data_interval_start),
            ),
            ("ts", Value::from(iso.as_str())),
            ("ts_nodash", Value::from(strftime(l, None, "%Y%m%dT%H%M%S"))),
            (
                "ts_nodash_with_tz",
                Value::from(iso.replace(['-', ':'], "")),
            ),
        ]);
    }
    Value::from_iter(ctx)
}
