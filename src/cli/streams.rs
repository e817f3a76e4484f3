//! `updraft streams replay`: move a sink task's consumer group, like `kafka-consumer-groups
//! --reset-offsets --execute`, so its next try reads from there.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Subcommand};

use crate::cli::pool_for;
use crate::operators::sink::dead_letters;
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
    /// After a fix (the DAG's record contract or columns, or the producer), check a sink
    /// task's dead letters again and write those that now pass: a Postgres target's
    /// `<table>_dead_letter` rows are upserted and removed (the rest stay, with today's
    /// reason); a Cassandra target's `<topic>.dlq` messages are published back to the topic.
    ReplayDeadLetters {
        dag_id: String,
        /// The sink task.
        task_id: String,
    },
}

pub async fn run(settings: &Settings, cmd: StreamsCommand) -> anyhow::Result<i32> {
    match cmd {
        StreamsCommand::Replay {
            dag_id,
            task_id,
            to_beginning,
            to_offset,
            to_datetime,
            partitions,
        } => {
            replay_group(
                settings,
                (dag_id, task_id),
                (to_beginning, to_offset, to_datetime),
                partitions,
            )
            .await
        }
        StreamsCommand::ReplayDeadLetters { dag_id, task_id } => {
            replay_dead_letters(settings, &dag_id, &task_id).await
        }
    }
}

async fn replay_group(
    settings: &Settings,
    (dag_id, task_id): (String, String),
    (to_beginning, to_offset, to_datetime): (bool, Option<i64>, Option<DateTime<Utc>>),
    partitions: Vec<i32>,
) -> anyhow::Result<i32> {
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

async fn replay_dead_letters(
    settings: &Settings,
    dag_id: &str,
    task_id: &str,
) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let dag = crate::db::dags::current_spec(&pool, dag_id)
        .await?
        .with_context(|| format!("no DAG `{dag_id}`"))?;
    // Fails with the reason when the task is no sink or computes its `with:` at run time.
    let task = crate::dag::streams::sink_task(&dag, task_id).map_err(anyhow::Error::msg)?;
    let with = task.args.to_literal_json();
    // Connections stored in the database count, as they do for a try.
    let vault = settings.vault()?;
    let mut env = crate::operators::OperatorEnv {
        stored: std::sync::Arc::new(crate::db::config_store::snapshot(&pool, &vault).await?),
        ..settings.operator_env()
    };
    // As standalone does: with no sink target configured, the sink writes to the metadata
    // database (and so its dead letters are there).
    let has_target = env.has_connection(crate::operators::sink::DEFAULT_CONN_ID)
        || env.cassandra_contact_points.is_some()
        || env.sink_postgres_url.is_some();
    if !has_target {
        env.sink_postgres_url = settings.database_url_or_standalone();
    }
    let specs = crate::db::tasks::SpecCache::default();
    let contract = crate::worker::contract::contract(&pool, &specs, &dag, task, &with).await?;
    let place = dead_letters::place(with.clone(), &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    match &contract {
        Some(c) => println!(
            "Replaying the dead letters in {place}, checked against the record of {}",
            c.source
        ),
        None => println!("Replaying the dead letters in {place}"),
    }
    let done =
        dead_letters::replay_dead_letters(with, dag_id, task_id, &env, contract.as_deref(), |t| {
            eprintln!(
                "  {} checked, {} written, {} still dead",
                t.checked, t.written, t.still_dead
            );
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{} dead letter(s) checked: {} written, {} still break the checks{}",
        done.checked,
        done.written,
        done.still_dead,
        if done.still_dead > 0 {
            " (their reasons are updated; fix and run this again)"
        } else {
            ""
        }
    );
    Ok(0)
}
