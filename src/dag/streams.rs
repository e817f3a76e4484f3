//! A DAG's sink tasks as streams: which consumer group, topic and brokers a sink task uses,
//! for replay and the topic views. Pure: the brokers come from the operator environment.

use super::model::{Dag, Task};
use crate::operators::sink::replay::SinkGroup;
use crate::operators::{OperatorEnv, OperatorName};

/// Sink task `task_id` of `dag` with its `with:` written out, or why it is not one.
pub fn sink_task<'a>(dag: &'a Dag, task_id: &str) -> Result<&'a Task, String> {
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
    Ok(task)
}

/// The group, topic and brokers of sink task `task_id` of `dag`, or why there are none.
pub fn sink_group(dag: &Dag, task_id: &str, env: &OperatorEnv) -> Result<SinkGroup, String> {
    let task = sink_task(dag, task_id)?;
    SinkGroup::of_task(
        task.args.to_literal_json(),
        dag.dag_id.as_str(),
        task_id,
        env,
    )
    .map_err(|e| e.to_string())
}

/// What a publish or sink task does with its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Publishes,
    Consumes,
}

/// A task that publishes to or consumes from a topic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TopicUse {
    pub dag_id: String,
    pub task_id: String,
    pub role: Role,
    pub topic: String,
    /// The consumer group (sinks).
    pub group: Option<String>,
    #[serde(skip)]
    pub servers: String,
}

/// The topics a DAG's publish and sink tasks use; tasks whose `with:` is computed at run
/// time, or names brokers that are not configured, are left out.
pub fn topic_uses(dag: &Dag, env: &OperatorEnv) -> Vec<TopicUse> {
    let mut out = Vec::new();
    for t in &dag.tasks {
        if !t.args.is_literal() {
            continue;
        }
        let use_ = match t.operator {
            OperatorName::Sink => sink_group(dag, t.task_id.as_str(), env)
                .ok()
                .map(|g| (Role::Consumes, g.topic, Some(g.group), g.servers)),
            OperatorName::Publish => {
                let Ok(c) = crate::operators::parse_config::<crate::operators::publish::Config>(
                    t.args.to_literal_json(),
                ) else {
                    continue;
                };
                crate::operators::kafka::bootstrap_servers(
                    c.bootstrap_servers.as_deref(),
                    c.kafka_conn_id.as_deref(),
                    env,
                )
                .ok()
                .map(|s| (Role::Publishes, c.topic, None, s))
            }
            _ => None,
        };
        if let Some((role, topic, group, servers)) = use_ {
            out.push(TopicUse {
                dag_id: dag.dag_id.to_string(),
                task_id: t.task_id.to_string(),
                role,
                topic,
                group,
                servers,
            });
        }
    }
    out
}
