//! A DAG's sink tasks as streams: which consumer group, topic and brokers a sink task uses,
//! for replay and the topic views. Pure: the brokers come from the operator environment.

use super::model::Dag;
use crate::operators::sink::replay::SinkGroup;
use crate::operators::{OperatorEnv, OperatorName};

/// The group, topic and brokers of sink task `task_id` of `dag`, or why there are none.
pub fn sink_group(dag: &Dag, task_id: &str, env: &OperatorEnv) -> Result<SinkGroup, String> {
    let task = dag
        .task(task_id)
        .ok_or_else(|| format!("DAG `{}` has no task `{task_id}`", dag.dag_id))?;
    if task.operator != OperatorName::Sink {
        return Err(format!(
            "task `{task_id}` of `{}` is not a sink but {}",
            dag.dag_id,
            task.operator.as_str()
        ));
    }
    if !task.args.is_literal() {
        return Err(format!(
            "task `{task_id}` of `{}` computes its `with:` at run time (templates or XComs), so its consumer group is only known to a try",
            dag.dag_id
        ));
    }
    SinkGroup::of_task(
        task.args.to_literal_json(),
        dag.dag_id.as_str(),
        task_id,
        env,
    )
    .map_err(|e| e.to_string())
}
