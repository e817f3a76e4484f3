//! `updraft bench`: hand-off latency and throughput of the engine against a real Postgres,
//! and standalone's idle memory. It uses a scratch database `updraft_bench` on the same
//! server (dropped and created anew), runs scheduler and worker in this process, and reads
//! every timing from the database clock.

pub mod chaos;
pub mod pipeline;
pub mod stream;
pub mod web;

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::core::RunState;
use crate::dag::{Dag, DagBag, DagId, LoadedDag, OperatorName, Task, TaskId};
use crate::db;
use crate::settings::Settings;

/// What `updraft bench` measures.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Tasks in the chain benchmark.
    #[arg(long, default_value_t = 40)]
    pub chain: usize,
    /// Width of the fan-out benchmark.
    #[arg(long, default_value_t = 1000)]
    pub fanout: usize,
    /// Skip measuring standalone's idle memory.
    #[arg(long)]
    pub no_memory: bool,
    /// Skip the web benchmark (1,000 DAGs, 10,000 runs, a 100 MB log).
    #[arg(long)]
    pub no_web: bool,
    /// Skip the pipeline benchmark (50,000 users: fetch, publish, sink).
    #[arg(long)]
    pub no_pipeline: bool,
    /// Skip the stream benchmark (a continuous sink at 1,000 and 20,000 records/s offered).
    #[arg(long)]
    pub no_stream: bool,
    /// How long the stream benchmark offers records at each rate, in seconds.
    #[arg(long, default_value_t = 10)]
    pub stream_seconds: u64,
    /// The rates (records/s) the stream benchmark offers, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 20_000])]
    pub stream_rates: Vec<u64>,
    /// After the rates, double the rate from 40,000/s (10 s each) until the sink falls behind.
    #[arg(long)]
    pub stream_ramp: bool,
}

pub async fn run(settings: &Settings, args: BenchArgs) -> anyhow::Result<()> {
    let choice =
        crate::runtime::embedded_pg::choose(settings.database.url.clone(), &settings.core.home)
            .await?;
    let admin = admin_url(choice.url())?;
    let url = recreate_database(&admin, "updraft_bench").await?;
    let pool = db::connect(&url, 20).await?;
    db::migrate(&pool).await?;
    println!(
        "updraft bench: Postgres {}, {} cores",
        db::admin::server_version(&pool).await?,
        num_cpus()
    );

    let mut engine_settings = settings.engine();
    engine_settings.worker_slots = 32;
    let engine = crate::runtime::InProcess::start(pool.clone(), engine_settings);

    // Chain of N empty tasks.
    let chain = chain_dag(args.chain);
    install(&pool, &chain).await?;
    let _warm_up = run_once(&pool, &chain).await?;
    let mut totals = Vec::new();
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let r = run_once(&pool, &chain).await?;
        totals.push(r.total_ms);
        gaps.extend(r.gaps_ms);
    }
    totals.sort_by(f64::total_cmp);
    gaps.sort_by(f64::total_cmp);
    println!(
        "\nchain of {} empty tasks (5 runs after a warm-up)",
        args.chain
    );
    println!(
        "  trigger to success   median {:>8.1} ms   best {:>8.1} ms",
        pct(&totals, 50.0),
        totals[0]
    );
    println!(
        "  hand-off gap         p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms   (n={})",
        pct(&gaps, 50.0),
        pct(&gaps, 95.0),
        pct(&gaps, 99.0),
        gaps.last().copied().unwrap_or_default(),
        gaps.len()
    );

    // 1 -> N -> 1 fan-out.
    let fan = fanout_dag(args.fanout);
    install(&pool, &fan).await?;
    let r = run_once(&pool, &fan).await?;
    let n = fan.tasks.len() as f64;
    println!("\nfan-out 1 -> {} -> 1 of empty tasks", args.fanout);
    println!(
        "  trigger to success   {:>8.1} ms   {:>8.0} tasks/s",
        r.total_ms,
        n / (r.total_ms / 1000.0)
    );

    engine.stop().await?;

    if !args.no_memory {
        let rss = standalone_rss(&url, &pool).await?;
        println!("\nstandalone memory (scheduler, worker, web server and embedded broker)");
        println!(
            "  idle (empty DAGs folder, after 5 s)       VmRSS {:>6.1} MB   VmHWM {:>6.1} MB",
            rss.idle.0, rss.idle.1
        );
        println!(
            "  after 20 user_automation runs (5 s on)   VmRSS {:>6.1} MB; a minute later {:>6.1} MB",
            rss.after_runs, rss.after_idle_minute
        );
    }
    if !args.no_pipeline {
        println!();
        pipeline::run(&url).await?;
    }
    if !args.no_stream {
        stream::run(
            &url,
            args.stream_seconds,
            &args.stream_rates,
            args.stream_ramp,
        )
        .await?;
    }
    pool.close().await;
    db::admin::drop_database(&admin, "updraft_bench").await?;

    if !args.no_web {
        println!("\nweb UI and API at scale");
        web::run(&admin).await?;
    }
    drop(choice); // stops a private cluster, if one was started
    Ok(())
}

/// The same server's `postgres` database, where the scratch database is created.
pub(crate) fn admin_url(url: &str) -> anyhow::Result<String> {
    let (base, _) = url
        .rsplit_once('/')
        .context("DATABASE_URL has no database part")?;
    Ok(format!("{base}/postgres"))
}

async fn recreate_database(admin: &str, name: &str) -> anyhow::Result<String> {
    db::admin::drop_database(admin, name).await?;
    db::admin::ensure_database(admin, name, StdDuration::from_secs(10)).await
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn empty_task(id: &str, upstream: Vec<TaskId>) -> Task {
    Task {
        upstream,
        owner: "bench".into(),
        ..Task::new(TaskId::parse(id).expect("valid id"), OperatorName::Empty)
    }
}

fn finish_dag(id: &str, tasks: Vec<Task>) -> Dag {
    let tasks = crate::dag::graph::build(tasks).expect("bench DAGs are acyclic");
    Dag {
        description: Some("updraft bench".into()),
        tags: vec!["bench".into()],
        max_active_tasks: 10_000,
        is_paused_upon_creation: Some(false),
        ..Dag::new(DagId::parse(id).expect("valid id"), tasks)
    }
}

fn chain_dag(n: usize) -> Dag {
    let tasks = (0..n)
        .map(|i| {
            let up = if i == 0 {
                vec![]
            } else {
                vec![TaskId::parse(format!("t{:03}", i - 1)).expect("id")]
            };
            empty_task(&format!("t{i:03}"), up)
        })
        .collect();
    finish_dag("bench_chain", tasks)
}

fn fanout_dag(n: usize) -> Dag {
    let mut tasks = vec![empty_task("start", vec![])];
    let start = TaskId::parse("start").expect("id");
    let mids: Vec<TaskId> = (0..n)
        .map(|i| TaskId::parse(format!("m{i:04}")).expect("id"))
        .collect();
    for m in &mids {
        tasks.push(empty_task(m.as_str(), vec![start.clone()]));
    }
    tasks.push(empty_task("end", mids));
    finish_dag("bench_fanout", tasks)
}

async fn install(pool: &PgPool, dag: &Dag) -> anyhow::Result<()> {
    let mut bag = DagBag::default();
    bag.dags.insert(
        dag.dag_id.clone(),
        LoadedDag::new(dag.clone(), "<bench>", ""),
    );
    db::dags::sync_bag(pool, &bag, &mut BTreeMap::new()).await?;
    Ok(())
}

struct RunTimes {
    total_ms: f64,
    gaps_ms: Vec<f64>,
}

async fn run_once(pool: &PgPool, dag: &Dag) -> anyhow::Result<RunTimes> {
    let run = db::runs::trigger(pool, dag.dag_id.as_str(), Default::default()).await?;
    let started = Instant::now();
    let done = loop {
        let r = db::runs::get(pool, dag.dag_id.as_str(), &run.run_id)
            .await?
            .context("run vanished")?;
        if r.state.is_finished() {
            break r;
        }
        anyhow::ensure!(
            started.elapsed() < StdDuration::from_secs(300),
            "the run did not finish in 5 minutes"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    };
    anyhow::ensure!(done.state == RunState::Success, "bench run failed");
    let end = done.end_date.context("finished run has an end date")?;
    let total_ms = ms(end - done.queued_at);
    let tis = db::runs::task_states(pool, done.id).await?;
    type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let by_id: BTreeMap<&str, Span> = tis
        .iter()
        .map(|t| (t.task_id.as_str(), (t.start_date, t.end_date)))
        .collect();
    let mut gaps_ms = Vec::new();
    for t in &dag.tasks {
        let Some((Some(start), _)) = by_id.get(t.task_id.as_str()) else {
            continue;
        };
        let upstream_end = t
            .upstream
            .iter()
            .filter_map(|u| by_id.get(u.as_str()).and_then(|(_, e)| *e))
            .max();
        if let Some(up_end) = upstream_end {
            gaps_ms.push(ms(*start - up_end));
        }
    }
    Ok(RunTimes { total_ms, gaps_ms })
}

fn ms(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Standalone's resident memory: idle, and after `user_automation` ran 20 times.
pub struct StandaloneRss {
    /// VmRSS and VmHWM 5 s after start with an empty DAGs folder (VmHWM includes the
    /// start-up peak, mostly the argon2 hash of the generated admin password).
    pub idle: (f64, f64),
    /// VmRSS 5 s after 20 runs of `user_automation` (50 users each, from a local stand-in
    /// for randomuser.me, through the embedded broker into the sink) have finished.
    pub after_runs: f64,
    /// VmRSS a minute later, once the worker has closed the producers it keeps for reuse.
    pub after_idle_minute: f64,
}

/// Starts `updraft standalone` on the bench database with an empty DAGs folder and a free
/// port and reads its memory idle; then adds `user_automation`, runs it 20 times, and reads
/// it again; then stops it.
async fn standalone_rss(url: &str, pool: &sqlx::PgPool) -> anyhow::Result<StandaloneRss> {
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/randomuser_sample.json"))?;
    let stub = crate::operators::fetch::stub::RandomUserStub::start(&sample).await?;
    let dags = std::env::temp_dir().join(format!("updraft-bench-dags-{}", std::process::id()));
    std::fs::create_dir_all(&dags)?;
    let home = std::env::temp_dir().join(format!("updraft-bench-home-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("standalone")
        .env("UPDRAFT_WEB_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .env("DATABASE_URL", url)
        .env("DATASOURCE_URL", stub.url())
        .env("UPDRAFT_DAGS_FOLDER", &dags)
        .env("UPDRAFT_HOME", &home)
        .env("UPDRAFT_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(StdDuration::from_secs(5)).await;
    let pid = child.id().context("standalone exited early")?;
    let field = |name: &str| stream::status_mb(&pid.to_string(), name);
    let idle = (field("VmRSS:"), field("VmHWM:"));

    std::fs::write(
        dags.join("user_automation.yaml"),
        include_str!("../../dags/user_automation.yaml"),
    )?;
    let deadline = std::time::Instant::now() + StdDuration::from_secs(60);
    while db::dags::current_version_id(pool, "user_automation")
        .await?
        .is_none()
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "standalone never loaded user_automation"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    for _ in 0..20 {
        db::runs::trigger(pool, "user_automation", Default::default()).await?;
    }
    let deadline = std::time::Instant::now() + StdDuration::from_secs(300);
    while !db::reliability::all_runs_finished(pool).await? {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "20 runs of user_automation did not finish within 5 minutes"
        );
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    let failed = db::reliability::run_states(pool, Some("user_automation"))
        .await?
        .into_iter()
        .filter(|(state, _)| *state != crate::core::RunState::Success)
        .map(|(_, n)| n)
        .sum::<i64>();
    anyhow::ensure!(
        failed == 0,
        "{failed} runs of user_automation did not succeed"
    );
    tokio::time::sleep(StdDuration::from_secs(5)).await;
    let after_runs = field("VmRSS:");
    tokio::time::sleep(StdDuration::from_secs(65)).await;
    let after_idle_minute = field("VmRSS:");

    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = tokio::time::timeout(StdDuration::from_secs(10), child.wait()).await;
    let _ = std::fs::remove_dir_all(&dags);
    let _ = std::fs::remove_dir_all(&home);
    Ok(StandaloneRss {
        idle,
        after_runs,
        after_idle_minute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), 50.0);
        assert_eq!(pct(&v, 99.0), 99.0);
        assert_eq!(pct(&[3.0], 95.0), 3.0);
    }

    #[test]
    fn shapes() {
        let c = chain_dag(40);
        assert_eq!(c.tasks.len(), 40);
        assert_eq!(c.tasks[0].downstream.len(), 1);
        let f = fanout_dag(10);
        assert_eq!(f.tasks.len(), 12);
        assert_eq!(f.task("start").unwrap().downstream.len(), 10);
    }
}
