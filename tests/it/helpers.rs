//! Shared test support: a fresh, migrated database per test.

#![allow(dead_code)]

use std::process::{Command, Output};

use sqlx::{Connection, PgConnection, PgPool};

/// Where tests create their databases. Override with `UPDRAFT_TEST_ADMIN_URL`.
pub fn admin_url() -> String {
    std::env::var("UPDRAFT_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test, migrated. Databases are named `updraft_test_*`;
/// `.ci/run` drops leftovers before a run.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

pub async fn fresh_db() -> TestDb {
    let admin = admin_url();
    let name = format!("updraft_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to the test Postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let (base, _) = admin.rsplit_once('/').expect("admin url has a database");
    let url = format!("{base}/{name}");
    let pool = updraft::db::connect(&url, 10)
        .await
        .expect("connect to test database");
    updraft::db::migrate(&pool)
        .await
        .expect("migrate test database");
    TestDb { name, url, pool }
}

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use updraft::dag::{Arg, Dag, DagBag, DagId, Duration, LoadedDag, OperatorName, Task, TaskId};
use updraft::runtime::Roles;
use updraft::settings::EngineSettings;

/// A task for hand-built DAGs (the YAML loader has its own tests).
pub fn task(id: &str, op: OperatorName, with: serde_json::Value, upstream: &[&str]) -> Task {
    let args = match with {
        serde_json::Value::Object(m) => {
            Arg::Map(m.into_iter().map(|(k, v)| (k, Arg::Value(v))).collect())
        }
        _ => Arg::empty_map(),
    };
    Task {
        args,
        upstream: upstream
            .iter()
            .map(|u| TaskId::parse(*u).unwrap())
            .collect(),
        retry_delay: Duration::ZERO,
        ..Task::new(TaskId::parse(id).unwrap(), op)
    }
}

pub fn bash(id: &str, cmd: &str, upstream: &[&str]) -> Task {
    task(
        id,
        OperatorName::Bash,
        serde_json::json!({ "bash_command": cmd }),
        upstream,
    )
}

pub fn empty(id: &str, upstream: &[&str]) -> Task {
    task(id, OperatorName::Empty, serde_json::json!({}), upstream)
}

/// A manual DAG of `tasks`, ordered and with downstream lists filled in by the graph step.
pub fn dag(id: &str, tasks: Vec<Task>) -> Dag {
    let tasks = updraft::dag::graph::build(tasks).expect("test DAGs are valid");
    Dag {
        max_active_tasks: 64,
        is_paused_upon_creation: Some(false),
        ..Dag::new(DagId::parse(id).unwrap(), tasks)
    }
}

/// Stores DAGs as the DAG processor would.
pub async fn install(pool: &sqlx::PgPool, dags: &[Dag]) {
    let mut bag = DagBag::default();
    for d in dags {
        let loaded = LoadedDag::new(d.clone(), format!("{}.yaml", d.dag_id), "");
        bag.dags.insert(d.dag_id.clone(), loaded);
    }
    updraft::db::dags::sync_bag(pool, &bag, &mut BTreeMap::new())
        .await
        .unwrap();
}

pub fn fast_settings(dags_folder: &std::path::Path) -> EngineSettings {
    EngineSettings {
        dags_folder: dags_folder.to_path_buf(),
        process_dags_folder: false,
        worker_slots: 16,
        // Every slot may run a command: tests that need commands side by side (an outage
        // while ten run) must not depend on this machine's cores. `process_slots` tests the
        // bound itself.
        worker_process_slots: 16,
        lease_ttl: Duration::from_secs(3),
        poll_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        ..EngineSettings::default()
    }
}

/// Scheduler and/or workers running in this process until `stop()`.
pub struct Engine {
    pub shutdown: CancellationToken,
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Engine {
    pub fn start(
        pool: &sqlx::PgPool,
        settings: EngineSettings,
        schedulers: usize,
        workers: usize,
    ) -> Engine {
        let shutdown = CancellationToken::new();
        let mut handles = Vec::new();
        for i in 0..schedulers.max(workers) {
            let roles = Roles {
                scheduler: i < schedulers,
                worker: i < workers,
            };
            // A pool of its own per "process", as in production: loops of several processes
            // sharing the test's small pool would wait on each other for connections.
            let own = sqlx::postgres::PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(StdDuration::from_secs(10))
                .connect_lazy_with((*pool.connect_options()).clone());
            handles.push(tokio::spawn(updraft::runtime::run_engine(
                own,
                settings.clone(),
                roles,
                shutdown.clone(),
            )));
        }
        Engine { shutdown, handles }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for h in self.handles {
            h.await.unwrap().unwrap();
        }
    }
}

/// Waits for a run to end; panics after `limit`.
pub async fn wait_run(
    pool: &sqlx::PgPool,
    dag_id: &str,
    run_id: &str,
    limit: StdDuration,
) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let run = updraft::db::runs::get(pool, dag_id, run_id)
            .await
            .unwrap()
            .expect("run exists");
        if run.state.is_finished() {
            return run.state.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run {run_id} still {} after {limit:?}",
            run.state
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

pub async fn trigger(pool: &sqlx::PgPool, dag_id: &str, conf: serde_json::Value) -> String {
    let req = updraft::db::runs::TriggerRequest {
        conf: Some(conf),
        ..Default::default()
    };
    updraft::db::runs::trigger(pool, dag_id, req)
        .await
        .unwrap()
        .run_id
}

/// task_id → (state, try_number) for a run.
pub async fn states(
    pool: &sqlx::PgPool,
    dag_id: &str,
    run_id: &str,
) -> BTreeMap<String, (String, i32)> {
    let run = updraft::db::runs::get(pool, dag_id, run_id)
        .await
        .unwrap()
        .unwrap();
    updraft::db::runs::task_states(pool, run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.task_id, (t.state.to_string(), t.try_number)))
        .collect()
}

pub fn empty_folder() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The `updraft` binary as users run it: warnings only, no `DATABASE_URL` but one the test
/// sets, and a home of the tests' own, so a developer's running standalone stays out of the
/// way.
pub fn updraft_bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_updraft"));
    cmd.env("UPDRAFT_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env(
            "UPDRAFT_HOME",
            std::env::temp_dir().join("updraft-cli-test-home"),
        );
    cmd
}

/// A finished command's standard output, then its standard error, as one text.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
