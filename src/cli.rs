//! The command line (clap). Each command resolves its settings here and calls into the
//! library; `main` only parses, sets up tracing and runs.

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sqlx::PgPool;

use crate::app::{self, Roles};
use crate::settings::{self, EngineSettings};

#[derive(Parser, Debug)]
#[command(name = "updraft", version, about = "A workflow orchestrator for YAML DAGs in Airflow 3.4's format", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Folder of DAG files (*.yaml, *.yml).
    #[arg(
        long,
        global = true,
        env = "UPDRAFT_DAGS_FOLDER",
        default_value = "./dags"
    )]
    pub dags_folder: PathBuf,
    /// Postgres URL, e.g. postgres://user:pass@host:5432/updraft.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scheduler, worker and web server in one process, with defaults that just work.
    Standalone(StandaloneArgs),
    /// Run a scheduler (any number can share a database).
    Scheduler,
    /// Run a worker (any number can share a database).
    Worker(WorkerArgs),
    /// Run the web UI and REST API.
    Webserver(WebArgs),
    /// User accounts for the web UI and API.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Database commands.
    #[command(subcommand)]
    Db(DbCommand),
    /// DAG commands.
    #[command(subcommand)]
    Dags(DagsCommand),
    /// Task commands.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Measure hand-off latency, throughput and memory against a real Postgres.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// Where standalone keeps its state (private Postgres cluster, generated password).
    #[arg(long, env = "UPDRAFT_HOME")]
    pub home: Option<PathBuf>,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub web: WebArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// Address the web server listens on.
    #[arg(long, env = "UPDRAFT_WEB_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port of the web server.
    #[arg(long, env = "UPDRAFT_WEB_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Mark cookies Secure (when served behind HTTPS).
    #[arg(long, env = "UPDRAFT_SECURE_COOKIES")]
    pub secure_cookies: bool,
}

impl WebArgs {
    pub fn settings(&self, dags_folder: PathBuf) -> crate::web::WebSettings {
        let mut s = crate::web::WebSettings::new(
            std::net::SocketAddr::new(self.host, self.port),
            dags_folder,
        );
        s.secure_cookies = self.secure_cookies;
        s
    }

    /// Binds the listener, with a message that says what to do when the port is taken.
    pub async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        let addr = std::net::SocketAddr::new(self.host, self.port);
        tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr}: {e}; pass --port (env UPDRAFT_WEB_PORT) to use another port")
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user (or set a new password for an existing one).
    Create {
        #[arg(long)]
        username: String,
        /// The password; read from standard input when absent.
        #[arg(long, env = "UPDRAFT_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// `admin` (everything) or `viewer` (read only). Default: the user's current role,
        /// or `admin` for a new user.
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Tasks this worker runs at once.
    #[arg(long, env = "UPDRAFT_WORKER_SLOTS", default_value_t = 32)]
    pub slots: usize,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Apply pending migrations (also done automatically at start).
    Migrate,
}

#[derive(Subcommand, Debug)]
pub enum DagsCommand {
    /// List DAGs with schedule, paused state and next run.
    List,
    /// Trigger a run.
    Trigger {
        dag_id: String,
        /// Run configuration, a JSON object.
        #[arg(long)]
        conf: Option<String>,
        #[arg(long)]
        run_id: Option<String>,
        /// Show progress and exit non-zero if the run fails.
        #[arg(long)]
        wait: bool,
    },
    /// Pause a DAG: no new runs start.
    Pause { dag_id: String },
    /// Unpause a DAG.
    Unpause { dag_id: String },
    /// Run one DAG in-process against a scratch schema and print each task's log.
    Test {
        dag_id: String,
        #[arg(long)]
        conf: Option<String>,
    },
    /// Check every DAG file and print every error; exits non-zero on any.
    Validate,
    /// Print the JSON Schema of the DAG file format (for editors).
    Schema,
}

#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// Print a task's log for a try (default: the latest).
    Logs {
        dag_id: String,
        run_id: String,
        task_id: String,
        #[arg(long = "try")]
        try_number: Option<i32>,
    },
}

#[derive(Args, Debug)]
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
}

pub fn engine_settings(global: &Global, slots: usize) -> EngineSettings {
    EngineSettings {
        dags_folder: global.dags_folder.clone(),
        worker_slots: slots.max(1),
        operator_env: settings::operator_env_from(std::env::vars()),
        create_cron_data_intervals: std::env::var("UPDRAFT_CREATE_CRON_DATA_INTERVALS")
            .map(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "yes"))
            .unwrap_or(false),
        lease_ttl: env_duration("UPDRAFT_LEASE_TTL").unwrap_or(EngineSettings::default().lease_ttl),
        poll_interval: env_duration("UPDRAFT_POLL_INTERVAL")
            .unwrap_or(EngineSettings::default().poll_interval),
        shutdown_grace: env_duration("UPDRAFT_SHUTDOWN_GRACE")
            .unwrap_or(EngineSettings::default().shutdown_grace),
        ..EngineSettings::default()
    }
}

fn env_duration(name: &str) -> Option<crate::dag::Duration> {
    let value = std::env::var(name).ok()?;
    match value.parse() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!("ignoring {name}={value}: {e}");
            None
        }
    }
}

/// A migrated pool on `DATABASE_URL`, or on the database of the standalone running here.
pub(crate) async fn pool_for(global: &Global) -> anyhow::Result<PgPool> {
    let url = global.database_url.clone().or_else(crate::standalone::standalone_database_url).context(
        "no database configured: set DATABASE_URL or pass --database-url, or start `updraft standalone` (which picks one)",
    )?;
    let pool = crate::db::connect(&url, 10).await?;
    crate::db::migrate(&pool).await?;
    Ok(pool)
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = cli.global.clone();
    match cli.command {
        Command::Standalone(args) => crate::standalone::run(&g, args).await.map(|_| 0),
        Command::Scheduler => {
            let pool = pool_for(&g).await?;
            let roles = Roles {
                scheduler: true,
                worker: false,
            };
            app::run_engine(
                pool,
                engine_settings(&g, 1),
                roles,
                app::shutdown_on_signals(),
            )
            .await?;
            Ok(0)
        }
        Command::Worker(w) => {
            let pool = pool_for(&g).await?;
            let roles = Roles {
                scheduler: false,
                worker: true,
            };
            app::run_engine(
                pool,
                engine_settings(&g, w.slots),
                roles,
                app::shutdown_on_signals(),
            )
            .await?;
            Ok(0)
        }
        Command::Webserver(w) => {
            let pool = pool_for(&g).await?;
            let listener = w.bind().await?;
            crate::web::serve(
                pool,
                w.settings(g.dags_folder.clone()),
                listener,
                app::shutdown_on_signals(),
            )
            .await?;
            Ok(0)
        }
        Command::Users(UsersCommand::Create {
            username,
            password,
            role,
        }) => {
            let pool = pool_for(&g).await?;
            let password = match password {
                Some(p) => p,
                None => {
                    eprintln!("Password for {username} (then Enter):");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let current = crate::db::users::credentials(&pool, &username).await?;
            let role = role
                .or_else(|| current.as_ref().map(|(u, _)| u.role.clone()))
                .unwrap_or_else(|| "admin".into());
            let created = crate::web::create_user(&pool, &username, &password, &role).await?;
            let what = if created {
                "created"
            } else {
                "updated; its sessions and tokens were ended"
            };
            println!("User {username} ({role}) {what}");
            // standalone's password file must not keep a password that no longer works.
            let file = crate::standalone::password_file(&crate::standalone::default_home());
            if username == "admin" && file.exists() {
                let body = serde_json::to_string_pretty(&serde_json::json!({ "admin": password }))?;
                crate::standalone::write_private(&file, &body)?;
                println!("Updated {}", file.display());
            }
            Ok(0)
        }
        Command::Db(DbCommand::Migrate) => {
            pool_for(&g).await?;
            println!("database is up to date");
            Ok(0)
        }
        Command::Dags(cmd) => crate::cli_dags::run(&g, cmd).await,
        Command::Tasks(TasksCommand::Logs {
            dag_id,
            run_id,
            task_id,
            try_number,
        }) => {
            let pool = pool_for(&g).await?;
            crate::cli_dags::print_logs(&pool, &dag_id, &run_id, &task_id, try_number).await
        }
        Command::Bench(args) => crate::bench::run(&g, args).await.map(|_| 0),
    }
}

/// The database a one-off command (`dags test`, `bench`) uses: `DATABASE_URL`, else what
/// `standalone` would choose. Keep the returned choice alive while using it: a private
/// cluster stops when it is dropped.
pub(crate) async fn database_choice(g: &Global) -> anyhow::Result<crate::embedded_pg::Choice> {
    crate::embedded_pg::choose(g.database_url.clone(), &crate::standalone::default_home()).await
}

/// Parses `--conf` as a JSON object, with a message that shows what was wrong.
pub fn parse_conf(conf: Option<&str>) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(text) = conf else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!("--conf is not valid JSON ({e}); pass an object like '{{\"key\": 1}}'")
    })?;
    anyhow::ensure!(
        value.is_object(),
        "--conf must be a JSON object like '{{\"key\": 1}}'"
    );
    Ok(Some(value))
}

pub(crate) const POLL: StdDuration = StdDuration::from_millis(200);
