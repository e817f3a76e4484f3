//! `updraft tasks clear|mark` (like `airflow tasks clear`) and `updraft runs mark|delete`:
//! operating runs from the terminal. Each change is recorded in the audit log with the OS
//! user as its owner and `cli` as its source.

use std::io::{BufRead, Write};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use sqlx::PgPool;

use crate::cli::pool_for;
use crate::core::{RunState, TaskState};
use crate::db::api::task_instances::by_ids;
use crate::db::events::{self, Event};
use crate::db::operate::{self, ClearRequest, MarkRequest, RunFilter, RunMark, Tasks};
use crate::db::runs;
use crate::settings::Settings;

/// `tasks clear`: Airflow's flags, plus `--run-id` for one run.
#[derive(Args, Debug)]
pub struct ClearArgs {
    pub dag_id: String,
    /// Only tasks whose id this regular expression matches.
    #[arg(short = 't', long = "task-regex")]
    pub task_regex: Option<String>,
    /// Runs with a logical date from (YYYY-MM-DD or RFC 3339, UTC).
    #[arg(short = 's', long = "start-date")]
    pub start_date: Option<String>,
    /// Runs with a logical date up to, inclusive.
    #[arg(short = 'e', long = "end-date")]
    pub end_date: Option<String>,
    /// Only this run.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Only failed (and upstream_failed) task instances.
    #[arg(short = 'f', long)]
    pub only_failed: bool,
    /// Only running task instances.
    #[arg(short = 'r', long)]
    pub only_running: bool,
    /// Also their downstream tasks.
    #[arg(short = 'd', long)]
    pub downstream: bool,
    /// Also their upstream tasks.
    #[arg(short = 'u', long)]
    pub upstream: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Only list what would be cleared.
    #[arg(long)]
    pub dry_run: bool,
}

/// `tasks mark`.
#[derive(Args, Debug)]
pub struct MarkArgs {
    pub dag_id: String,
    pub run_id: String,
    /// One or more task ids.
    #[arg(required = true)]
    pub task_ids: Vec<String>,
    /// success, failed or skipped.
    #[arg(long)]
    pub state: String,
    #[arg(short = 'u', long)]
    pub upstream: bool,
    #[arg(short = 'd', long)]
    pub downstream: bool,
    /// Only list what would change.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Mark a run success (every task that did not succeed becomes success), failed (running
    /// tasks fail, unfinished ones are skipped) or queued (every task runs again).
    Mark {
        dag_id: String,
        run_id: String,
        #[arg(long)]
        state: String,
        /// Set the run's note too.
        #[arg(long)]
        note: Option<String>,
    },
    /// Delete a run with its task instances, logs and XComs.
    Delete {
        dag_id: String,
        run_id: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// A date from the command line: `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub(super) fn parse_date(flag: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .with_context(|| {
            format!("{flag} `{s}`: use YYYY-MM-DD or an RFC 3339 time like 2026-01-31T06:00:00Z")
        })
}

/// Who runs the command, for the audit log.
fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "cli".into())
}

/// Records a change made from the command line in the audit log (owner: the OS user).
pub(super) async fn record(
    pool: &PgPool,
    event: &str,
    what: (Option<&str>, Option<&str>, Option<&str>),
    extra: serde_json::Value,
) {
    let owner = os_user();
    let e = Event {
        event,
        owner: Some(&owner),
        dag_id: what.0,
        run_id: what.1,
        task_id: what.2,
        source: "cli",
        remote_addr: None,
        extra,
    };
    if let Err(err) = events::record(pool, &e).await {
        eprintln!("warning: could not write the audit log: {err}");
    }
}

async fn print_tis(pool: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    let rows = by_ids(pool, ids).await?;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|t| {
            vec![
                t.dag_id.clone(),
                t.run_id.clone(),
                t.task_id.clone(),
                t.state.to_string(),
                t.try_number.to_string(),
            ]
        })
        .collect();
    super::table::print(
        super::table::Output::Table,
        &["dag_id", "run_id", "task_id", "state", "try"],
        &table,
    );
    Ok(())
}

/// Asks on the terminal; anything but y/yes is no.
fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question} [y/n] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub async fn clear(settings: &Settings, a: ClearArgs) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let tasks = match &a.task_regex {
        Some(re) => Tasks::Regex(
            regex::Regex::new(re)
                .with_context(|| format!("-t `{re}` is not a valid regular expression"))?,
        ),
        None => Tasks::All,
    };
    let mut req = ClearRequest {
        dag_id: a.dag_id.clone(),
        runs: RunFilter {
            run_id: a.run_id.clone(),
            start: a
                .start_date
                .as_deref()
                .map(|s| parse_date("-s", s))
                .transpose()?,
            end: a
                .end_date
                .as_deref()
                .map(|s| parse_date("-e", s))
                .transpose()?,
        },
        tasks,
        include_upstream: a.upstream,
        include_downstream: a.downstream,
        only_failed: a.only_failed,
        only_running: a.only_running,
        dry_run: true,
    };
    let would = operate::clear(&pool, &req).await?;
    if would.ti_ids.is_empty() {
        println!("No task instances to clear.");
        return Ok(0);
    }
    print_tis(&pool, &would.ti_ids).await?;
    if a.dry_run {
        println!(
            "{} task instance(s) would be cleared (dry run).",
            would.ti_ids.len()
        );
        return Ok(0);
    }
    if !a.yes
        && !confirm(&format!(
            "Clear these {} task instance(s)?",
            would.ti_ids.len()
        ))?
    {
        println!("Cancelled; nothing was cleared.");
        return Ok(1);
    }
    req.dry_run = false;
    let done = operate::clear(&pool, &req).await?;
    let extra = serde_json::json!({"task_regex": a.task_regex, "cleared": done.ti_ids.len(),
                                   "only_failed": a.only_failed, "downstream": a.downstream, "upstream": a.upstream});
    record(
        &pool,
        "clear",
        (Some(a.dag_id.as_str()), a.run_id.as_deref(), None),
        extra,
    )
    .await;
    println!(
        "Cleared {} task instance(s) in {} run(s); they run again.",
        done.ti_ids.len(),
        done.run_pks.len()
    );
    Ok(0)
}

pub async fn mark(settings: &Settings, a: MarkArgs) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let state = TaskState::parse(&a.state)
        .filter(|s| operate::MARKABLE.contains(s))
        .with_context(|| format!("--state `{}`: use success, failed or skipped", a.state))?;
    let run = runs::get(&pool, &a.dag_id, &a.run_id)
        .await?
        .with_context(|| format!("no run `{}` of DAG `{}`", a.run_id, a.dag_id))?;
    let req = MarkRequest {
        run_pk: run.id,
        version_id: run.version_id,
        task_ids: a.task_ids.clone(),
        state,
        include_upstream: a.upstream,
        include_downstream: a.downstream,
        dry_run: true,
    };
    let would = operate::mark_tasks(&pool, &req).await?;
    if would.ti_ids.is_empty() {
        println!("Nothing to mark: the task instances are already {state} (or do not exist).");
        return Ok(0);
    }
    print_tis(&pool, &would.ti_ids).await?;
    if a.dry_run {
        println!(
            "{} task instance(s) would be marked {state} (dry run).",
            would.ti_ids.len()
        );
        return Ok(0);
    }
    let done = operate::mark_tasks(
        &pool,
        &MarkRequest {
            dry_run: false,
            ..req
        },
    )
    .await?;
    let extra = serde_json::json!({"new_state": state, "task_ids": a.task_ids, "marked": done.ti_ids.len()});
    record(
        &pool,
        "mark",
        (Some(a.dag_id.as_str()), Some(&a.run_id), None),
        extra,
    )
    .await;
    let run_state = done
        .run_state
        .map_or("unchanged".to_string(), |s| s.to_string());
    println!(
        "Marked {} task instance(s) {state}; the run is {run_state}.",
        done.ti_ids.len()
    );
    Ok(0)
}

pub async fn runs(settings: &Settings, cmd: RunsCommand) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let (dag_id, run_id) = match &cmd {
        RunsCommand::Mark { dag_id, run_id, .. } | RunsCommand::Delete { dag_id, run_id, .. } => {
            (dag_id.clone(), run_id.clone())
        }
    };
    let run = runs::get(&pool, &dag_id, &run_id)
        .await?
        .with_context(|| format!("no run `{run_id}` of DAG `{dag_id}`"))?;
    match cmd {
        RunsCommand::Mark { state, note, .. } => {
            let to = RunState::parse(&state)
                .filter(|s| *s != RunState::Running)
                .with_context(|| format!("--state `{state}`: use success, failed or queued"))?;
            let m = RunMark {
                run_pk: run.id,
                version_id: run.version_id,
                state: to,
                dry_run: false,
            };
            let done = operate::mark_run(&pool, m).await?;
            if let Some(n) = &note {
                operate::set_run_note(&pool, run.id, Some(n)).await?;
            }
            record(
                &pool,
                "mark",
                (Some(dag_id.as_str()), Some(&run_id), None),
                serde_json::json!({"state": to, "note": note}),
            )
            .await;
            let now = runs::get(&pool, &dag_id, &run_id).await?.map(|r| r.state);
            println!(
                "Marked run {run_id} {to} ({} task instance(s) changed); it is now {}.",
                done.ti_ids.len(),
                now.map_or("gone".into(), |s| s.to_string())
            );
            Ok(0)
        }
        RunsCommand::Delete { yes, .. } => {
            if !yes
                && !confirm(&format!(
                    "Delete run {run_id} of {dag_id} with its task instances, logs and XComs?"
                ))?
            {
                println!("Cancelled; nothing was deleted.");
                return Ok(1);
            }
            operate::delete_run(&pool, run.id).await?;
            record(
                &pool,
                "delete",
                (Some(dag_id.as_str()), Some(&run_id), None),
                serde_json::Value::Null,
            )
            .await;
            println!("Deleted run {run_id} of {dag_id}.");
            Ok(0)
        }
    }
}
