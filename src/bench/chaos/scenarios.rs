//! The scenarios: a kill loop over a fleet of schedulers and workers, a Postgres outage
//! longer than the lease, and load with default settings. Each runs real `updraft`
//! processes on a database of its own and returns what it measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::PgPool;

use super::fleet::{Fleet, FleetConfig};
use super::marks::{self, Marks};
use super::Report;
use crate::core::RunState;
use crate::db;

/// What every scenario shares.
#[derive(Clone, Debug)]
pub struct Setup {
    pub binary: PathBuf,
    pub database_url: String,
    /// A directory of the scenario's own (DAGs, marks, process logs).
    pub work: PathBuf,
    pub schedulers: usize,
    pub workers: usize,
    /// Extra environment for every process (`UPDRAFT_LEASE_TTL`, ...).
    pub env: Vec<(String, String)>,
    /// A string in every command line, to find commands that outlived the scenario.
    pub token: String,
    /// The longest a scenario waits for its runs.
    pub patience: Duration,
}

impl Setup {
    pub(super) fn fleet(&self) -> anyhow::Result<Fleet> {
        Fleet::start(
            FleetConfig {
                binary: self.binary.clone(),
                database_url: self.database_url.clone(),
                dags_folder: self.dags(),
                logs: self.work.join("logs"),
                env: self.env.clone(),
            },
            self.schedulers,
            self.workers,
        )
    }

    fn dags(&self) -> PathBuf {
        self.work.join("dags")
    }

    fn marks(&self) -> PathBuf {
        self.work.join("marks")
    }

    pub(super) fn write_dag(&self, dag_id: &str, yaml: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dags())?;
        std::fs::write(self.dags().join(format!("{dag_id}.yaml")), yaml)?;
        Ok(())
    }
}

const HEAD: &str = "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json\n";

/// A DAG of `n` independent bash tasks that note their start and end.
fn bash_dag(dag_id: &str, n: usize, command: &str, retries: u32) -> String {
    let mut y = format!("{HEAD}dag_id: {dag_id}\nschedule: null\ntasks:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - id: t{i:03}\n    uses: updraft.bash\n    retries: {retries}\n    retry_delay: 1s\n    with:\n      bash_command: '{}'\n",
            command.replace('\'', "''")
        ));
    }
    y
}

/// A DAG of `n` independent empty tasks.
fn wide_dag(dag_id: &str, n: usize) -> String {
    let mut y = format!("{HEAD}dag_id: {dag_id}\nschedule: null\ntasks:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: t{i:03}\n    uses: updraft.empty\n"));
    }
    y
}

/// A chain of `n` empty tasks `t00 → t01 → …`.
fn chain_dag(dag_id: &str, n: usize) -> String {
    let mut y = format!("{HEAD}dag_id: {dag_id}\nschedule: null\ntasks:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: t{i:02}\n    uses: updraft.empty\n"));
        if i > 0 {
            y.push_str(&format!("    needs: [t{:02}]\n", i - 1));
        }
    }
    y
}

/// Waits until the DAG processor has stored every one of `dag_ids`.
async fn wait_loaded(pool: &PgPool, dag_ids: &[String], patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let loaded = db::dags::list(pool).await?;
        if dag_ids
            .iter()
            .all(|id| loaded.iter().any(|d| &d.dag_id == id))
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the schedulers never loaded the DAGs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn trigger(pool: &PgPool, dag_id: &str, times: usize) -> anyhow::Result<()> {
    for _ in 0..times {
        db::runs::trigger(pool, dag_id, Default::default()).await?;
    }
    Ok(())
}

/// Waits for every run to end, calling `meanwhile` every `tick`.
async fn wait_finished(
    pool: &PgPool,
    patience: Duration,
    tick: Duration,
    mut meanwhile: impl FnMut(),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    while !db::reliability::all_runs_finished(pool).await? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "runs were still unfinished after {patience:?}: {:?}",
            db::reliability::run_states(pool, None).await?
        );
        tokio::time::sleep(tick).await;
        meanwhile();
    }
    Ok(())
}

/// Fills the report's run, try, command and timing figures from the database and marks.
async fn measure(
    pool: &PgPool,
    marks_path: &Path,
    expected_runs: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let states = db::reliability::run_states(pool, None).await?;
    let success = states.get(&RunState::Success).copied().unwrap_or(0) as usize;
    report.runs = expected_runs;
    report.runs_lost = expected_runs.saturating_sub(success);
    report.tries_recorded_twice = db::reliability::tries_recorded_twice(pool).await? as usize;
    let (first, last, tasks) = db::reliability::task_span(pool).await?;
    report.tasks = tasks as usize;
    if let (Some(a), Some(b)) = (first, last) {
        let secs = (b - a).num_milliseconds() as f64 / 1000.0;
        report.tasks_per_second = (secs > 0.0).then(|| tasks as f64 / secs);
    }
    let times = db::reliability::ti_times(pool).await?;
    if marks_path.exists() {
        let m = Marks::read(marks_path)?;
        report.commands_completed = m.completed();
        report.reruns_after_completion = m.rerun_after_completion().len();
        let mut latencies = Vec::new();
        for t in &times {
            let Some(end) = t.end_date else { continue };
            let done = m
                .dones
                .get(&(t.run_id.clone(), t.task_id.clone()))
                .and_then(|d| d.get(&t.try_number));
            if let Some(done) = done {
                let end = end.timestamp_micros() as f64 / 1e6;
                latencies.push((end - done).max(0.0));
            }
        }
        report.outcome_latency = Percentiles::of(latencies);
    }
    // Hand-offs in chains: t(i)'s start after t(i-1)'s end.
    let mut ends: BTreeMap<(&str, &str, &str), chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for t in &times {
        if let Some(e) = t.end_date {
            ends.insert((&t.dag_id, &t.run_id, &t.task_id), e);
        }
    }
    let mut gaps = Vec::new();
    for t in times.iter().filter(|t| t.dag_id.starts_with("chain_")) {
        let Some(i) = t
            .task_id
            .strip_prefix('t')
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if i == 0 {
            continue;
        }
        let up = format!("t{:02}", i - 1);
        if let (Some(start), Some(end)) = (
            t.start_date,
            ends.get(&(t.dag_id.as_str(), t.run_id.as_str(), up.as_str())),
        ) {
            gaps.push((start - *end).num_microseconds().unwrap_or(0) as f64 / 1e6);
        }
    }
    report.hand_off = Percentiles::of(gaps);
    Ok(())
}

/// p50 and p99 of a sample, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Option<Percentiles> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Some(Percentiles {
            n: v.len(),
            p50: crate::bench::pct(&v, 50.0),
            p99: crate::bench::pct(&v, 99.0),
        })
    }
}

/// Kill loop: a fleet runs `tasks` bash tasks while a random process is SIGKILLed and
/// restarted every 1–3 s.
/// The kill loop's workload: `tasks` bash tasks of `command_secs` each, `per_run` to a run.
#[derive(Debug, Clone, Copy)]
pub struct KillLoop {
    pub tasks: usize,
    pub per_run: usize,
    pub command_secs: f64,
    /// Kill processes (false: the same workload undisturbed, as a baseline).
    pub kills: bool,
}

pub async fn kill_loop(setup: &Setup, pool: &PgPool, load: KillLoop) -> anyhow::Result<Report> {
    let KillLoop {
        tasks,
        per_run,
        command_secs,
        kills,
    } = load;
    let runs = tasks.div_ceil(per_run);
    let command = marks::command(&setup.marks(), &setup.token, command_secs);
    setup.write_dag("chaos_kill", &bash_dag("chaos_kill", per_run, &command, 10))?;
    let mut fleet = setup.fleet()?;
    wait_loaded(pool, &["chaos_kill".into()], setup.patience).await?;
    trigger(pool, "chaos_kill", runs).await?;
    let started = Instant::now();
    // The first kill comes early, so that even a workload that finishes in seconds sees some.
    let mut next_kill =
        Instant::now() + Duration::from_millis(rand::rng().random_range(500..=1500));
    let mut failures = Vec::new();
    wait_finished(pool, setup.patience, Duration::from_millis(100), || {
        if kills && Instant::now() >= next_kill {
            let victim = rand::rng().random_range(0..fleet.len());
            if let Err(e) = fleet.kill_and_restart(victim) {
                failures.push(e.to_string());
            }
            next_kill = Instant::now() + kill_interval();
        }
    })
    .await?;
    anyhow::ensure!(
        failures.is_empty(),
        "restarting processes failed: {failures:?}"
    );
    let kills = fleet.kills;
    let pids = fleet.stop(Duration::from_secs(40));
    let mut report = Report::new("kill loop", started.elapsed());
    report.kills = kills;
    measure(pool, &setup.marks(), runs, &mut report).await?;
    settle(setup, &pids, &mut report).await;
    Ok(report)
}

fn kill_interval() -> Duration {
    Duration::from_millis(rand::rng().random_range(1000..=3000))
}

/// After the fleet has stopped: commands that outlived it, and run directories of dead
/// workers nobody cleaned up.
async fn settle(setup: &Setup, pids: &[u32], report: &mut Report) {
    // A killed command's group is killed within moments of its worker's death.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        report.orphaned_processes = marks::orphans(&setup.token);
        if report.orphaned_processes == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.leftover_temp_dirs = crate::operators::bash::process::dead_run_dirs(pids);
}

/// Outage: a fleet runs bash tasks of 2–5 s on a private cluster, which is stopped for
/// `outage` once half the tasks have started, then started again.
pub async fn outage(
    setup: &Setup,
    cluster: &crate::runtime::embedded_pg::PrivateCluster,
    pool: &PgPool,
    tasks: usize,
    outage: Duration,
) -> anyhow::Result<Report> {
    let per_run = tasks.min(16);
    let runs = tasks.div_ceil(per_run);
    let mut yaml =
        format!("{HEAD}dag_id: chaos_outage\nschedule: null\nmax_active_tasks: 64\ntasks:\n");
    for i in 0..per_run {
        let cmd = marks::command(&setup.marks(), &setup.token, 2.0 + (i % 4) as f64);
        yaml.push_str(&format!(
            "  - id: t{i:03}\n    uses: updraft.bash\n    retries: 3\n    retry_delay: 1s\n    with:\n      bash_command: '{}'\n",
            cmd.replace('\'', "''")
        ));
    }
    setup.write_dag("chaos_outage", &yaml)?;
    let fleet = setup.fleet()?;
    wait_loaded(pool, &["chaos_outage".into()], setup.patience).await?;
    trigger(pool, "chaos_outage", runs).await?;
    let started = Instant::now();
    let deadline = Instant::now() + setup.patience;
    loop {
        let m = Marks::read(&setup.marks())?;
        if m.starts.len() * 2 >= tasks {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the tasks never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop_server()?;
    let stopped = Instant::now();
    while stopped.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = Marks::read(&setup.marks())?.completed();
    cluster.start_server()?;
    wait_finished(pool, setup.patience, Duration::from_millis(200), || {}).await?;
    let pids = fleet.stop(Duration::from_secs(40));
    let mut report = Report::new("Postgres outage", started.elapsed());
    report.outage = Some(outage);
    report.finished_during_outage = Some(during);
    measure(pool, &setup.marks(), runs, &mut report).await?;
    settle(setup, &pids, &mut report).await;
    Ok(report)
}

/// Load: `runs` runs of `width` empty tasks, then `chains` DAGs of 10-task chains run at once,
/// default settings.
pub async fn load(
    setup: &Setup,
    pool: &PgPool,
    runs: usize,
    width: usize,
    chains: usize,
) -> anyhow::Result<(Report, Report)> {
    setup.write_dag("load_wide", &wide_dag("load_wide", width))?;
    let chain_ids: Vec<String> = (0..chains).map(|i| format!("chain_{i:03}")).collect();
    for id in &chain_ids {
        setup.write_dag(id, &chain_dag(id, 10))?;
    }
    let fleet = setup.fleet()?;
    let mut all = chain_ids.clone();
    all.push("load_wide".into());
    wait_loaded(pool, &all, setup.patience).await?;

    let started = Instant::now();
    trigger(pool, "load_wide", runs).await?;
    wait_finished(pool, setup.patience, Duration::from_millis(50), || {}).await?;
    let mut wide = Report::new(
        &format!("load: {runs} runs x {width} empty tasks"),
        started.elapsed(),
    );
    measure(pool, &setup.marks(), runs, &mut wide).await?;
    db::reliability::forget_runs(pool).await?;

    let started = Instant::now();
    for id in &chain_ids {
        trigger(pool, id, 1).await?;
    }
    wait_finished(pool, setup.patience, Duration::from_millis(50), || {}).await?;
    let mut chained = Report::new(
        &format!("load: {chains} concurrent 10-task chains"),
        started.elapsed(),
    );
    measure(pool, &setup.marks(), chains, &mut chained).await?;
    fleet.stop(Duration::from_secs(40));
    Ok((wide, chained))
}
