//! `updraft backfill create|list|pause|unpause|cancel`, like Airflow 3's `airflow backfill
//! create`. A scheduler must be running for the backfill's runs to start; `--wait` shows
//! progress until it completes.

use anyhow::Context;
use clap::Subcommand;
use sqlx::PgPool;

use crate::cli::{parse_conf, pool_for, POLL};
use crate::core::ReprocessBehavior;
use crate::db::backfill::{self as db, BackfillRequest, BackfillRow, Steer};
use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum BackfillCommand {
    /// Create a backfill: a run of type backfill for every schedule tick from --from-date to
    /// --to-date (inclusive).
    Create {
        #[arg(long)]
        dag_id: String,
        /// YYYY-MM-DD (midnight UTC) or RFC 3339.
        #[arg(long)]
        from_date: String,
        #[arg(long)]
        to_date: String,
        /// What to do with dates that have a run: none, failed (run failed ones again) or
        /// completed (run every finished one again).
        #[arg(long, default_value = "none")]
        reprocess_behavior: String,
        /// Runs of this backfill active at once.
        #[arg(long, default_value_t = 10)]
        max_active_runs: i32,
        /// Newest date first.
        #[arg(long)]
        run_backwards: bool,
        /// The runs' conf, a JSON object.
        #[arg(long)]
        dag_run_conf: Option<String>,
        /// Only list the dates that would run.
        #[arg(long)]
        dry_run: bool,
        /// Show progress until the backfill completes; exit non-zero if a run failed.
        #[arg(long)]
        wait: bool,
    },
    /// List backfills with their progress, newest first.
    List {
        #[arg(long)]
        dag_id: Option<String>,
    },
    /// Pause a backfill: no new runs start.
    Pause { id: i64 },
    /// Unpause a backfill.
    Unpause { id: i64 },
    /// Cancel a backfill: dates not started are dropped, queued runs fail.
    Cancel { id: i64 },
}

fn progress(b: &BackfillRow) -> String {
    let state = match (b.completed_at, b.is_paused) {
        (Some(_), _) => "completed",
        (None, true) => "paused",
        (None, false) => "running",
    };
    format!(
        "backfill {} of {}: {state}, {}/{} runs done ({} failed), {} date(s) skipped",
        b.id, b.dag_id, b.finished_runs, b.total_runs, b.failed_runs, b.skipped_dates
    )
}

pub async fn run(settings: &Settings, cmd: BackfillCommand) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let data_intervals = settings.scheduler.create_cron_data_intervals;
    match cmd {
        BackfillCommand::Create {
            dag_id,
            from_date,
            to_date,
            reprocess_behavior,
            max_active_runs,
            run_backwards,
            dag_run_conf,
            dry_run,
            wait,
        } => {
            let req = BackfillRequest {
                dag_id: dag_id.clone(),
                from_date: super::operate::parse_date("--from-date", &from_date)?,
                to_date: super::operate::parse_date("--to-date", &to_date)?,
                run_backwards,
                dag_run_conf: parse_conf(dag_run_conf.as_deref())?
                    .unwrap_or_else(|| serde_json::json!({})),
                reprocess_behavior: ReprocessBehavior::parse(&reprocess_behavior).with_context(
                    || {
                        format!(
                            "--reprocess-behavior `{reprocess_behavior}`: use {}",
                            ReprocessBehavior::names()
                        )
                    },
                )?,
                max_active_runs,
                user: std::env::var("USER").ok(),
            };
            if dry_run {
                let plan = db::plan(&pool, &req, data_intervals).await?;
                let runs = plan.iter().filter(|d| d.plan.runs()).count();
                for d in &plan {
                    let what = match d.plan {
                        crate::core::backfill::DatePlan::Create => "new run".to_string(),
                        crate::core::backfill::DatePlan::Reprocess(_) => "run again".to_string(),
                        crate::core::backfill::DatePlan::Skip(why) => format!("skipped: {why}"),
                    };
                    println!("{}  {what}", d.run.logical_date.to_rfc3339());
                }
                println!("{runs} run(s) would be created or run again (dry run).");
                return Ok(0);
            }
            let b = db::create(&pool, &req, data_intervals).await?;
            let extra = serde_json::json!({"backfill_id": b.id, "from_date": b.from_date, "to_date": b.to_date, "runs": b.total_runs});
            super::operate::record(
                &pool,
                "backfill",
                (Some(dag_id.as_str()), None, None),
                extra,
            )
            .await;
            println!("Created {}", progress(&b));
            if !wait {
                return Ok(0);
            }
            let mut last = String::new();
            loop {
                let b = db::get(&pool, b.id)
                    .await?
                    .context("the backfill was deleted")?;
                let line = progress(&b);
                if line != last {
                    println!("{line}");
                    last = line;
                }
                if b.completed_at.is_some() {
                    return Ok(i32::from(b.failed_runs > 0));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        BackfillCommand::List { dag_id } => {
            let (rows, _) = db::list(&pool, dag_id.as_deref(), 100, 0).await?;
            for b in &rows {
                println!("{}", progress(b));
            }
            if rows.is_empty() {
                println!("No backfills.");
            }
            Ok(0)
        }
        BackfillCommand::Pause { id } => steer(&pool, id, Steer::Pause).await,
        BackfillCommand::Unpause { id } => steer(&pool, id, Steer::Unpause).await,
        BackfillCommand::Cancel { id } => steer(&pool, id, Steer::Cancel).await,
    }
}

async fn steer(pool: &PgPool, id: i64, how: Steer) -> anyhow::Result<i32> {
    match db::steer(pool, id, how).await? {
        None => anyhow::bail!("no backfill {id}"),
        Some(false) => anyhow::bail!("backfill {id} has completed already"),
        Some(true) => {}
    }
    let b = db::get(pool, id)
        .await?
        .context("the backfill was deleted")?;
    let event = match how {
        Steer::Pause => "backfill_pause",
        Steer::Unpause => "backfill_unpause",
        Steer::Cancel => "backfill_cancel",
    };
    let what = (Some(b.dag_id.as_str()), None, None);
    super::operate::record(pool, event, what, serde_json::json!({"backfill_id": id})).await;
    println!("{}", progress(&b));
    Ok(0)
}
