//! `updraft dags ...`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use sqlx::PgPool;

use crate::cli::{parse_conf, pool_for, DagsCommand, POLL};
use crate::core::{RunState, TaskState};
use crate::dag::{DagBag, DagFolder};
use crate::db::{self, runs};
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: DagsCommand) -> anyhow::Result<i32> {
    match cmd {
        DagsCommand::Validate => Ok(validate(settings).await),
        DagsCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::dag::json_schema())?
            );
            Ok(0)
        }
        DagsCommand::Test { dag_id, conf } => test(settings, &dag_id, conf.as_deref()).await,
        other => {
            let pool = pool_for(settings).await?;
            match other {
                DagsCommand::List => list(&pool).await,
                DagsCommand::Trigger {
                    dag_id,
                    conf,
                    run_id,
                    wait,
                } => {
                    let conf = parse_conf(conf.as_deref())?;
                    let req = runs::TriggerRequest {
                        conf,
                        run_id,
                        ..Default::default()
                    };
                    let run = runs::trigger(&pool, &dag_id, req).await?;
                    let what = (Some(dag_id.as_str()), Some(run.run_id.as_str()), None);
                    super::operate::record(&pool, "trigger", what, serde_json::Value::Null).await;
                    println!(
                        "Triggered {} run {} (state: {})",
                        run.dag_id, run.run_id, run.state
                    );
                    if !db::scheduling::scheduler_alive(&pool).await? {
                        eprintln!("warning: no scheduler has reported in the last 30 s; start `updraft standalone` or `updraft scheduler` and `updraft worker` for the run to start");
                    }
                    if wait {
                        let state = wait_for_run(&pool, &dag_id, &run.run_id, true).await?;
                        return Ok(if state == RunState::Success { 0 } else { 1 });
                    }
                    Ok(0)
                }
                DagsCommand::Pause { dag_id } => set_paused(&pool, &dag_id, true).await,
                DagsCommand::Unpause { dag_id } => set_paused(&pool, &dag_id, false).await,
                DagsCommand::Validate | DagsCommand::Schema | DagsCommand::Test { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

async fn set_paused(pool: &PgPool, dag_id: &str, paused: bool) -> anyhow::Result<i32> {
    if db::dags::set_paused(pool, dag_id, paused).await? {
        let event = if paused { "pause" } else { "unpause" };
        super::operate::record(
            pool,
            event,
            (Some(dag_id), None, None),
            serde_json::Value::Null,
        )
        .await;
        println!(
            "{} DAG {dag_id}",
            if paused { "Paused" } else { "Unpaused" }
        );
        Ok(0)
    } else {
        eprintln!(
            "DAG `{dag_id}` not found; `updraft dags list` shows the DAGs the scheduler has loaded"
        );
        Ok(1)
    }
}

async fn list(pool: &PgPool) -> anyhow::Result<i32> {
    let dags = db::dags::list(pool).await?;
    if dags.is_empty() {
        println!("No DAGs yet. Put DAG files in the DAGs folder and start a scheduler (`updraft standalone`).");
    } else {
        println!(
            "{:<32} {:<16} {:<7} {:<29} file",
            "dag_id", "schedule", "paused", "next run after"
        );
        for d in dags {
            let next = match d.next_run_after {
                _ if d.schedule_ended => db::dags::ended_text(d.end_date).to_string(),
                Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                None => "-".into(),
            };
            println!(
                "{:<32} {:<16} {:<7} {:<29} {}",
                d.dag_id,
                d.schedule.unwrap_or_else(|| "None".into()),
                d.is_paused,
                next,
                d.fileloc
            );
        }
    }
    let errors = db::dags::import_errors(pool).await?;
    if !errors.is_empty() {
        println!("\n{} file(s) with import errors:", errors.len());
        for (_, message) in errors {
            println!("{message}");
        }
    }
    Ok(0)
}

async fn validate(settings: &Settings) -> i32 {
    let folder = &settings.core.dags_folder;
    let bag = DagFolder::new(folder, settings.core.dag_file_max_bytes).load();
    for w in bag.warnings.values().flatten() {
        println!("warning: {w}");
    }
    match super::schema_check::schema_warnings(settings, &bag).await {
        Ok(warnings) => warnings.iter().for_each(|w| println!("warning: {w}")),
        Err(why) => println!("note: record schemas not compared with the deployed DAGs: {why}"),
    }
    let n_errors: usize = bag.errors.values().map(Vec::len).sum();
    for e in bag.errors.values().flatten() {
        println!("error: {e}");
    }
    println!(
        "{} DAG(s) valid; {} error(s) in {} file(s) under {}",
        bag.dags.len(),
        n_errors,
        bag.errors.len(),
        folder.display()
    );
    i32::from(n_errors > 0)
}

/// Prints task state changes until the run ends; returns its final state.
pub async fn wait_for_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    progress: bool,
) -> anyhow::Result<RunState> {
    let started = Instant::now();
    let mut seen: BTreeMap<String, (TaskState, i32)> = BTreeMap::new();
    loop {
        let run = runs::get(pool, dag_id, run_id)
            .await?
            .context("the run disappeared")?;
        for t in runs::task_states(pool, run.id).await? {
            let now = (t.state, t.try_number);
            if seen.get(&t.task_id) != Some(&now) {
                if progress {
                    let tries = match t.try_number {
                        0 => String::new(),
                        n => format!("try {n}/{}", t.max_tries + 1),
                    };
                    println!(
                        "[{:>7.2}s] {:<28} {:<16} {tries}",
                        started.elapsed().as_secs_f64(),
                        t.task_id,
                        t.state
                    );
                }
                seen.insert(t.task_id.clone(), now);
            }
        }
        if run.state.is_finished() {
            if progress {
                println!(
                    "Run {run_id} finished: {} in {:.2}s",
                    run.state,
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(run.state);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `dags test`: a scratch schema, the one DAG, scheduler and worker in-process, every log.
async fn test(settings: &Settings, dag_id: &str, conf: Option<&str>) -> anyhow::Result<i32> {
    let conf = parse_conf(conf)?;
    let folder = &settings.core.dags_folder;
    let bag = DagFolder::new(folder, settings.core.dag_file_max_bytes).load();
    let Some(loaded) = bag.dags.values().find(|d| d.dag.dag_id.as_str() == dag_id) else {
        for e in bag.errors.values().flatten() {
            eprintln!("error: {e}");
        }
        anyhow::bail!(
            "DAG `{dag_id}` not found in {} (or its file has the errors above)",
            folder.display()
        );
    };
    let choice =
        crate::runtime::embedded_pg::choose(settings.database.url.clone(), &settings.core.home)
            .await?;
    let url = choice.url().to_string();
    let schema = format!("updraft_dags_test_{}", std::process::id());
    let pool = db::connect_in_schema(&url, &schema, 5).await?;
    let result = async {
        db::migrate(&pool).await?;
        let mut only = DagBag::default();
        only.dags.insert(loaded.dag.dag_id.clone(), loaded.clone());
        db::dags::sync_bag(&pool, &only, &mut BTreeMap::new()).await?;
        let req = runs::TriggerRequest {
            conf,
            ..Default::default()
        };
        let run = runs::trigger(&pool, dag_id, req).await?;
        let mut engine_settings = settings.engine();
        engine_settings.worker_slots = 8;
        let engine = crate::runtime::InProcess::start(pool.clone(), engine_settings);
        let state = wait_for_run(&pool, dag_id, &run.run_id, true).await?;
        engine.stop().await?;
        for task in &loaded.dag.tasks {
            println!("\n===== {} =====", task.task_id);
            crate::cli::tasks::print_logs(&pool, dag_id, &run.run_id, task.task_id.as_str(), None)
                .await?;
        }
        anyhow::Ok(state)
    }
    .await;
    db::drop_schema(&url, &schema).await?;
    let state = result?;
    println!("\nRun finished: {state}");
    Ok(if state == RunState::Success { 0 } else { 1 })
}
