//! `updraft chaos`: runs real schedulers and workers against Postgres and breaks things on
//! purpose, then reports what the reliability targets are about: runs lost, tries recorded
//! twice, commands re-run after completing, orphaned processes, leftover temp dirs,
//! deadlocks, outcome-recording latency, hand-off latency and throughput. RELIABILITY.md
//! holds the latest figures and the command that produced them.

pub mod failover;
mod fleet;
pub mod marks;
pub mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use crate::db;
use crate::settings::Settings;
pub use scenarios::{Percentiles, Setup};

/// Which scenarios `updraft chaos` runs, and how big.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// `kill`, `outage`, `load`, `failover` (a stream's worker SIGKILLed), or `all`.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Bash tasks in the kill loop.
    #[arg(long, default_value_t = 5000)]
    pub tasks: usize,
    /// Tasks per run in the kill loop.
    #[arg(long, default_value_t = 50)]
    pub per_run: usize,
    /// Seconds each kill-loop command takes.
    #[arg(long, default_value_t = 0.2)]
    pub command_secs: f64,
    /// Run the kill loop's workload without killing anything: the baseline.
    #[arg(long)]
    pub no_kills: bool,
    #[arg(long, default_value_t = 2)]
    pub schedulers: usize,
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Runs × empty tasks of the load scenario.
    #[arg(long, default_value_t = 50)]
    pub load_runs: usize,
    #[arg(long, default_value_t = 40)]
    pub load_width: usize,
    /// Concurrent 10-task chains of the load scenario.
    #[arg(long, default_value_t = 200)]
    pub chains: usize,
    /// Print the reports as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// What one scenario measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub seconds: f64,
    pub runs: usize,
    pub runs_lost: usize,
    pub tasks: usize,
    pub tries_recorded_twice: usize,
    pub commands_completed: usize,
    pub reruns_after_completion: usize,
    pub orphaned_processes: usize,
    pub leftover_temp_dirs: usize,
    pub deadlocks: i64,
    pub kills: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_during_outage: Option<usize>,
    pub outcome_latency: Option<Percentiles>,
    pub hand_off: Option<Percentiles>,
    pub tasks_per_second: Option<f64>,
}

impl Report {
    pub fn new(scenario: &str, took: Duration) -> Report {
        Report {
            scenario: scenario.to_string(),
            seconds: took.as_secs_f64(),
            ..Report::default()
        }
    }

    /// The report as lines of `figure  value`.
    pub fn lines(&self) -> Vec<String> {
        let ms = |p: &Option<Percentiles>| match p {
            Some(p) => format!(
                "p50 {:.1} ms, p99 {:.1} ms (n={})",
                p.p50 * 1e3,
                p.p99 * 1e3,
                p.n
            ),
            None => "-".into(),
        };
        let mut out = vec![
            format!("== {} ({:.1} s)", self.scenario, self.seconds),
            format!(
                "runs lost                    {} of {}",
                self.runs_lost, self.runs
            ),
            format!("tasks succeeded              {}", self.tasks),
            format!("tries recorded twice         {}", self.tries_recorded_twice),
        ];
        if self.commands_completed > 0 {
            out.push(format!(
                "commands re-run after done   {} of {} ({:.2}%)",
                self.reruns_after_completion,
                self.commands_completed,
                100.0 * self.reruns_after_completion as f64 / self.commands_completed as f64
            ));
            out.push(format!(
                "orphaned processes           {}",
                self.orphaned_processes
            ));
            out.push(format!(
                "leftover temp dirs           {}",
                self.leftover_temp_dirs
            ));
        }
        out.push(format!("deadlocks (pg_stat)          {}", self.deadlocks));
        if self.kills > 0 {
            out.push(format!("processes SIGKILLed          {}", self.kills));
        }
        if let (Some(o), Some(d)) = (self.outage, self.finished_during_outage) {
            out.push(format!(
                "outage                       {:.0} s, {d} commands finished during it",
                o.as_secs_f64()
            ));
        }
        if self.outcome_latency.is_some() {
            out.push(format!(
                "outcome recorded after exit  {}",
                ms(&self.outcome_latency)
            ));
        }
        if self.hand_off.is_some() {
            out.push(format!(
                "hand-off                     {}",
                ms(&self.hand_off)
            ));
        }
        if let Some(t) = self.tasks_per_second {
            out.push(format!("throughput                   {t:.0} tasks/s"));
        }
        out
    }
}

/// A database of the scenario's own on the configured server, created anew.
async fn scratch_database(settings: &Settings, name: &str) -> anyhow::Result<(String, String)> {
    let choice =
        crate::runtime::embedded_pg::choose(settings.database.url.clone(), &settings.core.home)
            .await?;
    let admin = super::admin_url(choice.url())?;
    db::admin::drop_database(&admin, name).await?;
    let url = db::admin::ensure_database(&admin, name, Duration::from_secs(10)).await?;
    Ok((admin, url))
}

/// Runs one scenario against database `name` (created anew), counting the deadlocks
/// Postgres broke in it meanwhile.
pub async fn with_database<F, Fut>(
    admin: &str,
    url: &str,
    name: &str,
    scenario: F,
) -> anyhow::Result<Vec<Report>>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Report>>>,
{
    let admin_pool = db::connect(admin, 1).await?;
    let pool = db::connect(url, 5).await?;
    db::migrate(&pool).await?;
    let before = db::reliability::deadlocks(&admin_pool, name).await?;
    let mut reports = scenario(pool.clone()).await?;
    pool.close().await;
    // Backends report statistics as they exit; give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadlocks = db::reliability::deadlocks(&admin_pool, name).await? - before;
    for r in &mut reports {
        r.deadlocks = deadlocks;
    }
    admin_pool.close().await;
    Ok(reports)
}

fn setup(args: &ChaosArgs, database_url: &str, work: PathBuf, env: Vec<(String, String)>) -> Setup {
    Setup {
        binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("updraft")),
        database_url: database_url.to_string(),
        work,
        schedulers: args.schedulers,
        workers: args.workers,
        env,
        token: format!("chaos-{}", uuid::Uuid::new_v4().simple()),
        patience: Duration::from_secs(1800),
    }
}

pub async fn run(settings: &Settings, args: ChaosArgs) -> anyhow::Result<()> {
    let all = args.scenario == "all";
    anyhow::ensure!(
        all || ["kill", "outage", "load", "failover"].contains(&args.scenario.as_str()),
        "--scenario must be kill, outage, load, failover or all"
    );
    let mut reports = Vec::new();
    if all || args.scenario == "kill" {
        println!(
            "kill loop: {} bash tasks, {} schedulers + {} workers, {} ...",
            args.tasks,
            args.schedulers,
            args.workers,
            if args.no_kills {
                "nothing killed (baseline)"
            } else {
                "a random one SIGKILLed and restarted every 1-3 s"
            }
        );
        let (admin, url) = scratch_database(settings, "updraft_chaos").await?;
        let work = WorkDir::new("updraft-chaos")?;
        let s = setup(&args, &url, work.path().to_path_buf(), Vec::new());
        let load = scenarios::KillLoop {
            tasks: args.tasks,
            per_run: args.per_run,
            command_secs: args.command_secs,
            kills: !args.no_kills,
        };
        reports.extend(
            with_database(&admin, &url, "updraft_chaos", |pool| async move {
                Ok(vec![scenarios::kill_loop(&s, &pool, load).await?])
            })
            .await?,
        );
        print(reports.last(), args.json);
    }
    if all || args.scenario == "outage" {
        let lease = settings.worker.lease_ttl.std();
        println!(
            "outage: Postgres stopped for {:.0} s (3 x the lease) mid-run ...",
            3.0 * lease.as_secs_f64()
        );
        // Under /tmp, world-readable, so that the `postgres` user (when we are root) can use it.
        let dir = WorkDir::new("updraft-chaos-pg")?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let cluster =
            crate::runtime::embedded_pg::PrivateCluster::start(&dir.path().join("pgdata")).await?;
        let admin = cluster
            .url
            .rsplit_once('/')
            .map(|(b, _)| format!("{b}/postgres"))
            .unwrap_or_default();
        let work = WorkDir::new("updraft-chaos")?;
        let s = setup(&args, &cluster.url, work.path().to_path_buf(), Vec::new());
        let url = cluster.url.clone();
        let c = &cluster;
        reports.extend(
            with_database(&admin, &url, "updraft", |pool| async move {
                Ok(vec![scenarios::outage(&s, c, &pool, 32, 3 * lease).await?])
            })
            .await?,
        );
        print(reports.last(), args.json);
    }
    if all || args.scenario == "load" {
        println!("load: {} runs x {} empty tasks, then {} concurrent 10-task chains, default settings ...", args.load_runs, args.load_width, args.chains);
        let (admin, url) = scratch_database(settings, "updraft_chaos").await?;
        let work = WorkDir::new("updraft-chaos")?;
        let s = setup(&args, &url, work.path().to_path_buf(), Vec::new());
        let (runs, width, chains) = (args.load_runs, args.load_width, args.chains);
        let both = with_database(&admin, &url, "updraft_chaos", |pool| async move {
            let (a, b) = scenarios::load(&s, &pool, runs, width, chains).await?;
            Ok(vec![a, b])
        })
        .await?;
        for r in &both {
            print(Some(r), args.json);
        }
        reports.extend(both);
    }
    if all || args.scenario == "failover" {
        let lease = settings.worker.lease_ttl.std();
        println!("stream failover: 1 scheduler + 2 workers stream 1,000 records/s; the stream's worker is SIGKILLed ...");
        let (admin, url) = scratch_database(settings, "updraft_chaos").await?;
        let work = WorkDir::new("updraft-chaos")?;
        let s = setup(&args, &url, work.path().to_path_buf(), Vec::new());
        let _ = admin;
        let pool = db::connect(&url, 5).await?;
        db::migrate(&pool).await?;
        let f = failover::failover(&s, &pool, 1_000, lease).await?;
        pool.close().await;
        for line in f.lines() {
            println!("{line}");
        }
        if args.json {
            println!("{}", serde_json::to_string(&f).unwrap_or_default());
        }
    }
    Ok(())
}

/// A scratch directory under the system temp dir, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(prefix: &str) -> std::io::Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)?;
        Ok(WorkDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print(report: Option<&Report>, json: bool) {
    let Some(r) = report else { return };
    for line in r.lines() {
        println!("{line}");
    }
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
    println!();
}
