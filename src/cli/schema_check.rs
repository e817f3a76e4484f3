//! `dags validate`'s look at what is deployed: a fetch task whose record schema changes
//! incompatibly with the stored version ([`crate::dag::schema_change`]) while a topic its
//! records go through still holds records of the old shape gets a warning that says what
//! to do. Without a reachable database (validate works offline) there is nothing to
//! compare with, and it says so in one line.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::dag::contracts::{contract_source, record_schemas, ContractSource};
use crate::dag::schema_change::{breaks, Break};
use crate::dag::streams::{topic_uses, TopicUse};
use crate::dag::{Dag, DagBag};
use crate::operators::kafka::monitor::topic_offsets;
use crate::operators::OperatorEnv;
use crate::settings::Settings;

/// How long validate waits for the database and for each topic's brokers.
const PATIENCE: Duration = Duration::from_secs(3);

/// Warnings about incompatible record schema changes in `bag`, or why there was nothing to
/// compare with (no database configured is not a reason: then there is nothing deployed).
pub async fn schema_warnings(settings: &Settings, bag: &DagBag) -> Result<Vec<String>, String> {
    let Some(url) = settings.database_url_or_standalone() else {
        return Ok(Vec::new());
    };
    let stored = match tokio::time::timeout(PATIENCE, stored_specs(&url)).await {
        Ok(Ok(specs)) => specs,
        Ok(Err(e)) => return Err(format!("{e:#}")),
        Err(_) => {
            return Err(format!(
                "the database did not answer within {} s",
                PATIENCE.as_secs()
            ))
        }
    };
    let by_id: BTreeMap<&str, &Dag> = stored.iter().map(|d| (d.dag_id.as_str(), d)).collect();
    let env = settings.operator_env();
    let mut out = Vec::new();
    for loaded in bag.dags.values() {
        let new = &loaded.dag;
        let Some(old) = by_id.get(new.dag_id.as_str()) else {
            continue;
        };
        let old_schemas: BTreeMap<String, serde_json::Value> =
            record_schemas(old).into_iter().collect();
        for (task_id, schema) in record_schemas(new) {
            let Some(was) = old_schemas.get(&task_id) else {
                continue;
            };
            let found = breaks(was, &schema);
            if found.is_empty() {
                continue;
            }
            let uses = readers_and_writers(new, &task_id, &stored, &env);
            if let Some(held) = old_records(&uses).await {
                out.push(warning(&loaded.fileloc, new, &task_id, &found, &held));
            }
        }
    }
    Ok(out)
}

async fn stored_specs(url: &str) -> anyhow::Result<Vec<Dag>> {
    let pool = crate::db::connect(url, 1).await?;
    let specs = crate::db::dags::current_specs(&pool).await?;
    pool.close().await;
    Ok(specs)
}

/// The publish and sink tasks held to `fetch_task`'s record: in the new version of its DAG,
/// and in other deployed DAGs that name it in `schema_from`.
fn readers_and_writers(
    dag: &Dag,
    fetch_task: &str,
    stored: &[Dag],
    env: &OperatorEnv,
) -> Vec<TopicUse> {
    let held_here = |d: &Dag, u: &TopicUse| {
        let Some(t) = d.task(&u.task_id) else {
            return false;
        };
        match contract_source(d, t, &t.args.to_literal_json()) {
            Some(ContractSource::Here(f)) => d.dag_id == dag.dag_id && f == fetch_task,
            Some(ContractSource::Other { dag_id, task_id }) => {
                dag_id == dag.dag_id.as_str() && task_id == fetch_task
            }
            None => false,
        }
    };
    let others = stored.iter().filter(|d| d.dag_id != dag.dag_id);
    std::iter::once(dag)
        .chain(others)
        .flat_map(|d| {
            topic_uses(d, env)
                .into_iter()
                .filter(move |u| held_here(d, u))
        })
        .collect()
}

/// What the topics hold, one line each; `None` when every topic is known to be empty (no
/// record of the old shape anywhere, nothing to warn about). A topic whose brokers do not
/// answer counts as holding records: validate cannot tell.
async fn old_records(uses: &[TopicUse]) -> Option<Vec<String>> {
    let mut topics: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for u in uses {
        let groups = topics.entry((&u.servers, &u.topic)).or_default();
        groups.extend(u.group.clone());
    }
    let mut lines = Vec::new();
    for ((servers, topic), mut groups) in topics {
        groups.sort();
        groups.dedup();
        match topic_offsets(servers, topic, &groups, PATIENCE).await {
            Ok(o) => {
                let held: i64 = o.partitions.iter().map(|p| p.end - p.low).sum();
                if held == 0 {
                    continue;
                }
                let mut line =
                    format!("topic `{topic}` still holds {held} record(s) of the old shape");
                for (group, parts) in &o.groups {
                    let lag: i64 = parts.iter().map(|p| p.lag).sum();
                    line.push_str(&format!("; group `{group}` has {lag} left to read"));
                }
                lines.push(line);
            }
            Err(e) => lines.push(format!(
                "topic `{topic}` could not be checked for records of the old shape ({e})"
            )),
        }
    }
    (!lines.is_empty()).then_some(lines)
}

fn warning(fileloc: &str, dag: &Dag, task_id: &str, found: &[Break], held: &[String]) -> String {
    let mut w = format!(
        "{fileloc}: the record of `{}.{task_id}` changes incompatibly with the deployed version:",
        dag.dag_id
    );
    for b in found {
        w.push_str(&format!("\n  - {b}"));
    }
    for h in held {
        w.push_str(&format!("\n  {h}"));
    }
    let sink_tasks = "updraft streams replay-dead-letters <dag_id> <sink task>";
    w.push_str(&format!(
        "\n  what to do: deploy it in steps that old records pass (keep removed fields, add new ones and narrow types only \
         once the topic's old records are consumed and no longer needed), or let the sinks catch up (lag 0) first; \
         records that break the new schema go to dead letters, and after a fix `{sink_tasks}` writes them"
    ));
    w
}
