//! `updraft streams replay`: move a sink task's consumer group, like `kafka-consumer-groups
//! --reset-offsets --execute`, so its next try reads from there.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Subcommand};

use crate::cli::pool_for;
use crate::operators::sink::replay::{replay, ReplayTo};
use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum StreamsCommand {
    /// Move a sink task's consumer group to the beginning, an offset or a time. Rows are
    /// upserts by `id`, so a replay rewrites them without duplicates. The group must have no
    /// active member: pause a continuous DAG first (`updraft dags pause`).
    #[command(group(ArgGroup::new("to").required(true).args(["to_beginning", "to_offset", "to_datetime"])))]
    Replay {
        dag_id: String,
        /// The sink task.
        task_id: String,
        /// The oldest offset each partition still holds.
        #[arg(long)]
        to_beginning: bool,
        /// This offset in each partition (kept within what it holds).
        #[arg(long)]
        to_offset: Option<i64>,
        /// The first offset at or after this time (RFC 3339) in each partition.
        #[arg(long)]
        to_datetime: Option<DateTime<Utc>>,
        /// Only this partition; repeat for more. Default: all.
        #[arg(long = "partition")]
        partitions: Vec<i32>,
    },
}

pub async fn run(settings: &Settings, cmd: StreamsCommand) -> anyhow::Result<i32> {
    let StreamsCommand::Replay {
        dag_id,
        task_id,
        to_beginning,
        to_offset,
        to_datetime,
        partitions,
    } = cmd;
    let to = match (to_beginning, to_offset, to_datetime) {
        (true, _, _) => ReplayTo::Beginning,
        (_, Some(o), _) if o >= 0 => ReplayTo::Offset(o),
        (_, _, Some(t)) => ReplayTo::Timestamp(t),
        _ => anyhow::bail!("--to-offset must be 0 or more"),
    };
    let pool = pool_for(settings).await?;
    let dag = crate::db::dags::current_spec(&pool, &dag_id)
        .await?
        .with_context(|| format!("no DAG `{dag_id}`"))?;
    let target = crate::dag::streams::sink_group(&dag, &task_id, &settings.operator_env())
        .map_err(anyhow::Error::msg)?;
    let partitions = (!partitions.is_empty()).then_some(partitions);
    let resets = replay(&target, to, partitions, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("group {} on topic {}:", target.group, target.topic);
    for r in resets {
        let previous = r.previous.map_or("none".to_string(), |p| p.to_string());
        println!("  partition {}: {previous} -> {}", r.partition, r.offset);
    }
    Ok(0)
}
