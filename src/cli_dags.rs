//! `updraft dags ...` and `updraft tasks logs`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use sqlx::PgPool;

use crate::cli::{engine_settings, parse_conf, DagsCommand, Global, POLL};
use crate::dag::DagBag;
use crate::db::{self, runs};

pub async fn run(g: &Global, cmd: DagsCommand) -> anyhow::Result<i32> {
    match cmd {
        DagsCommand::Validate => Ok(validate(g)),
        DagsCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::dag::json_schema())?
            );
            Ok(0)
        }
        DagsCommand::Test { dag_id, conf } => test(g, &dag_id, conf.as_deref()).await,
        other => {
            let pool = crate::cli::pool_for(g).await?;
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
                    println!(
                        "Triggered {} run {} (state: {})",
                        run.dag_id, run.run_id, run.state
                    );
                    if !scheduler_alive(&pool).await? {
                        eprintln!("warning: no scheduler has reported in the last 30 s; start `updraft standalone` or `updraft scheduler` and `updraft worker` for the run to start");
                    }
                    if wait {
                        let state = wait_for_run(&pool, &dag_id, &run.run_id, true).await?;
                        return Ok(if state == "success" { 0 } else { 1 });
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
            "{:<32} {:<16} {:<7} {:<26} file",
            "dag_id", "schedule", "paused", "next run after"
        );
        for d in dags {
            let next = d
                .next_run_after
                .filter(|t| t.timestamp() < 253_402_300_799)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<32} {:<16} {:<7} {:<26} {}",
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

fn validate(g: &Global) -> i32 {
    let bag = DagBag::load(&g.dags_folder);
    for w in bag.warnings.values().flatten() {
        println!("warning: {w}");
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
        g.dags_folder.display()
    );
    i32::from(n_errors > 0)
}

async fn scheduler_alive(pool: &PgPool) -> anyhow::Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM scheduler_heartbeats WHERE heartbeat_at > now() - interval '30 seconds')",
    )
    .fetch_one(pool)
    .await?)
}

/// Prints task state changes until the run ends; returns its final state.
pub async fn wait_for_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    progress: bool,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut seen: BTreeMap<String, (String, i32)> = BTreeMap::new();
    loop {
        let run = runs::get(pool, dag_id, run_id)
            .await?
            .context("the run disappeared")?;
        for t in runs::task_states(pool, run.id).await? {
            let now = (t.state.clone(), t.try_number);
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
        if run.state == "success" || run.state == "failed" {
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

pub async fn print_logs(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: Option<i32>,
) -> anyhow::Result<i32> {
    let run = runs::get(pool, dag_id, run_id)
        .await?
        .with_context(|| format!("no run `{run_id}` of DAG `{dag_id}`"))?;
    let states = runs::task_states(pool, run.id).await?;
    let ti = states
        .iter()
        .find(|t| t.task_id == task_id)
        .with_context(|| format!("no task `{task_id}` in run `{run_id}`"))?;
    let try_number = try_number.unwrap_or(ti.try_number.max(1));
    let mut after = 0;
    loop {
        let page = db::logs::page(pool, ti.id, try_number, after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for l in &page {
            println!(
                "[{}] {:<6} {}",
                l.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                l.stream,
                l.line
            );
        }
    }
    Ok(0)
}

/// `dags test`: a scratch schema, the one DAG, scheduler and worker in-process, every log.
async fn test(g: &Global, dag_id: &str, conf: Option<&str>) -> anyhow::Result<i32> {
    let conf = parse_conf(conf)?;
    let bag = DagBag::load(&g.dags_folder);
    let Some(loaded) = bag.dags.values().find(|d| d.dag.dag_id.as_str() == dag_id) else {
        for e in bag.errors.values().flatten() {
            eprintln!("error: {e}");
        }
        anyhow::bail!(
            "DAG `{dag_id}` not found in {} (or its file has the errors above)",
            g.dags_folder.display()
        );
    };
    let choice = crate::cli::database_choice(g).await?;
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
        let engine = crate::app::InProcess::start(pool.clone(), engine_settings(g, 8));
        let state = wait_for_run(&pool, dag_id, &run.run_id, true).await?;
        engine.stop().await?;
        for task in &loaded.dag.tasks {
            println!("\n===== {} =====", task.task_id);
            print_logs(&pool, dag_id, &run.run_id, task.task_id.as_str(), None).await?;
        }
        anyhow::Ok(state)
    }
    .await;
    db::drop_schema(&url, &schema).await?;
    let state = result?;
    println!("\nRun finished: {state}");
    Ok(if state == "success" { 0 } else { 1 })
}
