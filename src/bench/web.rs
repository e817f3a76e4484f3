//! The web benchmark: seeds 1,000 DAGs, 10,000 runs with 10 tasks each and a 100 MB task
//! log into a scratch schema, then times the pages and API calls people wait on most,
//! in-process over HTTP against the real router. Target: p95 under 100 ms for each.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::dag::{Arg, Dag, DagId, OperatorName, Schedule, Task, TaskId};
use crate::web::{self, AppState, WebSettings};

const SCHEMA: &str = "updraft_bench_web";
const DAGS: i64 = 1_000;
const RUNS_PER_DAG: i64 = 10;
const TASKS: usize = 10;
const LOG_LINES: i64 = 1_000_000;
const REQUESTS: usize = 50;

/// One figure of the report.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: &'static str,
    pub p50: Duration,
    pub p95: Duration,
}

fn bench_dag() -> Dag {
    let tasks = (0..TASKS)
        .map(|i| {
            let id = |n: usize| TaskId::parse(format!("task_{n:02}")).expect("valid id");
            Task {
                args: Arg::Map(vec![(
                    "bash_command".into(),
                    Arg::Value(format!("echo {i}").into()),
                )]),
                upstream: if i == 0 { vec![] } else { vec![id(i - 1)] },
                retries: 1,
                owner: "bench".into(),
                ..Task::new(id(i), OperatorName::Bash)
            }
        })
        .collect();
    let tasks = crate::dag::graph::build(tasks).expect("a chain is acyclic");
    Dag {
        description: Some("A benchmark DAG: a chain of ten bash tasks".into()),
        schedule: Schedule::Cron {
            expr: "@daily".into(),
            cron: "0 0 0 * * *".into(),
        },
        tags: vec!["bench".into()],
        is_paused_upon_creation: Some(false),
        ..Dag::new(DagId::parse("bench_template").expect("valid id"), tasks)
    }
}

/// Bulk-seeds with set-based statements (no row-by-row round trips). Returns the task
/// instance holding the 100 MB log.
async fn seed(pool: &PgPool) -> anyhow::Result<i64> {
    let spec = serde_json::to_value(bench_dag())?;
    let task_ids: Vec<String> = (0..TASKS).map(|i| format!("task_{i:02}")).collect();
    crate::db::web::bench_seed(pool, &spec, DAGS, RUNS_PER_DAG, &task_ids, LOG_LINES)
        .await
        .context("seeding")
}

async fn time(
    client: &reqwest::Client,
    url: &str,
    auth: (&str, &str),
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 3 {
        let started = Instant::now();
        let res = client.get(url).header(auth.0, auth.1).send().await?;
        let status = res.status();
        let body = res.bytes().await?;
        let took = started.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        if i >= 3 {
            out.push(took); // the first three warm caches and connections
        }
    }
    out.sort();
    Ok(out)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Seeds a scratch schema in `database_url`, measures, prints the figures, drops the schema.
pub async fn run(database_url: &str) -> anyhow::Result<()> {
    crate::db::drop_schema(database_url, SCHEMA).await?;
    let pool = crate::db::connect_in_schema(database_url, SCHEMA, 8).await?;
    let result = measure(&pool).await;
    pool.close().await;
    crate::db::drop_schema(database_url, SCHEMA).await?;
    let figures = result?;
    println!(
        "\n{:<44} {:>9} {:>9}",
        "web benchmark (50 requests each)", "p50 ms", "p95 ms"
    );
    for f in &figures {
        println!(
            "{:<44} {:>9.1} {:>9.1}",
            f.name,
            f.p50.as_secs_f64() * 1e3,
            f.p95.as_secs_f64() * 1e3
        );
    }
    let slow: Vec<_> = figures
        .iter()
        .filter(|f| f.p95 > Duration::from_millis(100))
        .map(|f| f.name)
        .collect();
    if slow.is_empty() {
        println!("every p95 is under the 100 ms target");
    } else {
        println!("over the 100 ms p95 target: {}", slow.join(", "));
    }
    Ok(())
}

async fn measure(pool: &PgPool) -> anyhow::Result<Vec<Figure>> {
    crate::db::migrate(pool).await?;
    let started = Instant::now();
    let log_ti = seed(pool).await?;
    println!(
        "seeded {DAGS} DAGs, {} runs, {} task instances and a {LOG_LINES}-line (~100 MB) log in {:.1}s",
        DAGS * RUNS_PER_DAG,
        DAGS * RUNS_PER_DAG * TASKS as i64,
        started.elapsed().as_secs_f64()
    );
    web::create_user(pool, "bench", "bench-password", "admin").await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let state = AppState::new(
        pool.clone(),
        WebSettings::new(addr, "dags".into()),
        shutdown.clone(),
    );
    let server = tokio::spawn(web::serve_router(
        web::router(state),
        listener,
        shutdown.clone(),
    ));
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    let form = client.get(format!("{base}/login")).send().await?;
    let login_cookie = form
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("login page set no CSRF cookie")?
        .to_string();
    let login_token = login_cookie
        .split_once('=')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    let login = client
        .post(format!("{base}/login"))
        .header("cookie", &login_cookie)
        .form(&[
            ("username", "bench"),
            ("password", "bench-password"),
            ("csrf_token", &login_token),
        ])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("updraft_session="))
        .and_then(|v| v.split(';').next())
        .context("login set no session cookie")?
        .to_string();
    let token: serde_json::Value = client
        .post(format!("{base}/auth/token"))
        .json(&serde_json::json!({"username": "bench", "password": "bench-password"}))
        .send()
        .await?
        .json()
        .await?;
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().context("no token")?
    );
    let (dag_id, run_id, task_id) = crate::db::web::bench_log_location(pool, log_ti).await?;
    let run_seg = crate::web::pages::seg(&run_id);

    let cases: Vec<(&'static str, String, (&str, &str))> = vec![
        (
            "DAG list page (/dags)",
            format!("{base}/dags"),
            ("cookie", &cookie),
        ),
        (
            "DAG list page, text filter",
            format!("{base}/dags?q=dag_05"),
            ("cookie", &cookie),
        ),
        (
            "DAG detail page with 25-run grid",
            format!("{base}/dags/bench_dag_0500"),
            ("cookie", &cookie),
        ),
        (
            "run list API, one DAG",
            format!("{base}/api/v2/dags/bench_dag_0500/dagRuns"),
            ("authorization", &bearer),
        ),
        (
            "run list API, all DAGs (~), newest 100",
            format!("{base}/api/v2/dags/~/dagRuns?limit=100&order_by=-id"),
            ("authorization", &bearer),
        ),
        (
            "DAG list API, 100 DAGs",
            format!("{base}/api/v2/dags?limit=100"),
            ("authorization", &bearer),
        ),
        (
            "100 MB log, first page (page)",
            format!("{base}/dags/{dag_id}/runs/{run_seg}/tasks/{task_id}/logs/1"),
            ("cookie", &cookie),
        ),
        (
            "100 MB log, first page (API)",
            format!("{base}/api/v2/dags/{dag_id}/dagRuns/{run_seg}/taskInstances/{task_id}/logs/1"),
            ("authorization", &bearer),
        ),
    ];
    let mut figures = Vec::new();
    for (name, url, auth) in &cases {
        let t = time(&client, url, *auth)
            .await
            .with_context(|| format!("timing {name}"))?;
        figures.push(Figure {
            name,
            p50: percentile(&t, 0.50),
            p95: percentile(&t, 0.95),
        });
    }
    shutdown.cancel();
    server.await??;
    Ok(figures)
}
