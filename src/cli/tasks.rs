//! `updraft tasks ...`.

use anyhow::Context;
use sqlx::PgPool;

use crate::cli::{pool_for, TasksCommand};
use crate::db::{self, runs};
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: TasksCommand) -> anyhow::Result<i32> {
    match cmd {
        TasksCommand::Logs {
            dag_id,
            run_id,
            task_id,
            try_number,
        } => {
            let pool = pool_for(settings).await?;
            print_logs(&pool, &dag_id, &run_id, &task_id, try_number).await
        }
        TasksCommand::Clear(a) => super::operate::clear(settings, a).await,
        TasksCommand::Mark(a) => super::operate::mark(settings, a).await,
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
    let tries = ti.try_number.max(1);
    let try_number = try_number.unwrap_or(tries);
    anyhow::ensure!(
        (1..=tries).contains(&try_number),
        "task `{task_id}` of run `{run_id}` has no try {try_number}: its tries are 1 to {tries}"
    );
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
