//! The command line (clap). `main` parses it, [`Cli::settings`] loads the one settings value
//! (defaults < `updraft.toml` < environment < these flags), and [`run`] hands each command
//! to the layers below. Each command group has its own file.

mod backfill;
mod config;
mod connections;
mod dags;
mod operate;
mod pools;
mod schema_check;
mod streams;
mod table;
mod tasks;
mod users;
mod variables;

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sqlx::PgPool;

use crate::runtime::{self, Roles};
use crate::settings::{Flags, Settings, SettingsError, Sources};

#[derive(Parser, Debug)]
#[command(name = "updraft", version, about = "A workflow orchestrator for YAML DAGs in Airflow 3.4's format", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes. Each also has an environment variable and a key in
/// `updraft.toml` (`updraft config list` shows them all).
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Folder of DAG files (*.yaml, *.yml) [env UPDRAFT_DAGS_FOLDER; default ./dags].
    #[arg(long, global = true)]
    pub dags_folder: Option<PathBuf>,
    /// Postgres URL, e.g. postgres://user:pass@host:5432/updraft [env DATABASE_URL].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// The config file [env UPDRAFT_CONFIG; default $UPDRAFT_HOME/updraft.toml].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
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
    /// Backfills: create (with --dry-run, --wait), list, pause, unpause, cancel.
    #[command(subcommand)]
    Backfill(backfill::BackfillCommand),
    /// Run commands: mark, delete.
    #[command(subcommand)]
    Runs(operate::RunsCommand),
    /// Settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Variables: get, set, delete, list, import, export.
    #[command(subcommand)]
    Variables(variables::VariablesCommand),
    /// Connections: add, get, delete, list, import, export, test.
    #[command(subcommand)]
    Connections(connections::ConnectionsCommand),
    /// Pools: set, get, delete, list, import, export.
    #[command(subcommand)]
    Pools(pools::PoolsCommand),
    /// Streams: replay a sink's consumer group.
    #[command(subcommand)]
    Streams(streams::StreamsCommand),
    /// Re-encrypt every stored secret with the first key of UPDRAFT_FERNET_KEY.
    RotateFernetKey,
    /// Measure hand-off latency, throughput and memory against a real Postgres.
    Bench(crate::bench::BenchArgs),
    /// Break things on purpose (SIGKILL processes, stop Postgres, load) and report what held.
    Chaos(crate::bench::chaos::ChaosArgs),
}

#[derive(Args, Debug)]
pub struct StandaloneArgs {
    /// Where standalone keeps its state [env UPDRAFT_HOME].
    #[arg(long)]
    pub home: Option<PathBuf>,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub web: WebArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// Address the web server listens on [env UPDRAFT_WEB_HOST; default 127.0.0.1].
    #[arg(long)]
    pub host: Option<std::net::IpAddr>,
    /// Port of the web server [env UPDRAFT_WEB_PORT; default 8080].
    #[arg(long)]
    pub port: Option<u16>,
    /// Mark cookies Secure, when served behind HTTPS [env UPDRAFT_SECURE_COOKIES].
    #[arg(long)]
    pub secure_cookies: bool,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Tasks this worker runs at once [env UPDRAFT_WORKER_SLOTS; default 32].
    #[arg(long)]
    pub slots: Option<usize>,
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
    /// Clear task instances so they run again (as `airflow tasks clear`).
    Clear(operate::ClearArgs),
    /// Mark task instances success, failed or skipped; their downstream tasks react.
    Mark(operate::MarkArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Every effective setting, where it came from, secrets masked.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a new Fernet key (for UPDRAFT_FERNET_KEY).
    GenerateFernetKey,
}

impl Cli {
    /// The flags this command line gives, as the last settings layer.
    pub fn flags(&self) -> Flags {
        let mut flags = Flags {
            dags_folder: self.global.dags_folder.clone(),
            database_url: self.global.database_url.clone(),
            ..Flags::default()
        };
        let web = |flags: &mut Flags, w: &WebArgs| {
            flags.host = w.host;
            flags.port = w.port;
            flags.secure_cookies = w.secure_cookies.then_some(true);
        };
        match &self.command {
            Command::Standalone(a) => {
                flags.home = a.home.clone();
                flags.slots = a.worker.slots;
                web(&mut flags, &a.web);
            }
            Command::Worker(w) => flags.slots = w.slots,
            Command::Webserver(w) => web(&mut flags, w),
            _ => {}
        }
        flags
    }

    /// This process's settings: defaults, the config file, the environment, these flags.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        Settings::load(Sources::from_process(
            self.flags(),
            self.global.config.clone(),
        ))
    }
}

/// A migrated pool on the configured database, or on the database of the standalone
/// running on this machine.
pub(crate) async fn pool_for(settings: &Settings) -> anyhow::Result<PgPool> {
    let url = settings.database_url_or_standalone().context(
        "no database configured: set DATABASE_URL or pass --database-url, or start `updraft standalone` (which picks one)",
    )?;
    let pool = crate::db::connect(&url, 10).await?;
    crate::db::migrate(&pool).await?;
    Ok(pool)
}

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<i32> {
    let roles = |scheduler, worker| Roles { scheduler, worker };
    match cli.command {
        Command::Standalone(_) => runtime::standalone::run(&settings).await.map(|_| 0),
        Command::Scheduler => {
            let shutdown = runtime::shutdown_on_signals();
            let pool = pool_for(&settings).await?;
            runtime::run_engine(pool, settings.engine(), roles(true, false), shutdown).await?;
            Ok(0)
        }
        Command::Worker(_) => {
            let shutdown = runtime::shutdown_on_signals();
            let pool = pool_for(&settings).await?;
            runtime::run_engine(pool, settings.engine(), roles(false, true), shutdown).await?;
            Ok(0)
        }
        Command::Webserver(_) => {
            let pool = pool_for(&settings).await?;
            let web = crate::web::WebSettings::from_settings(&settings);
            let listener = crate::web::bind(web.bind).await?;
            crate::web::serve(pool, web, listener, runtime::shutdown_on_signals()).await?;
            Ok(0)
        }
        Command::Users(cmd) => users::run(&settings, cmd).await,
        Command::Db(DbCommand::Migrate) => {
            pool_for(&settings).await?;
            println!("database is up to date");
            Ok(0)
        }
        Command::Dags(cmd) => dags::run(&settings, cmd).await,
        Command::Tasks(cmd) => tasks::run(&settings, cmd).await,
        Command::Runs(cmd) => operate::runs(&settings, cmd).await,
        Command::Backfill(cmd) => backfill::run(&settings, cmd).await,
        Command::Config(cmd) => config::run(&settings, cmd),
        Command::Bench(args) => crate::bench::run(&settings, args).await.map(|_| 0),
        Command::Chaos(args) => crate::bench::chaos::run(&settings, args).await.map(|_| 0),
        Command::Variables(cmd) => variables::run(&settings, cmd).await,
        Command::Connections(cmd) => connections::run(&settings, cmd).await,
        Command::Pools(cmd) => pools::run(&settings, cmd).await,
        Command::Streams(cmd) => streams::run(&settings, cmd).await,
        Command::RotateFernetKey => {
            let pool = pool_for(&settings).await?;
            let done = crate::db::config_store::rotate(&pool, &settings.vault()?).await?;
            println!(
                "Re-encrypted {} connection(s) and {} variable(s) with the first Fernet key; older keys can now be removed from UPDRAFT_FERNET_KEY",
                done.connections, done.variables
            );
            Ok(0)
        }
    }
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

/// How often progress displays poll the database.
pub(crate) const POLL: StdDuration = StdDuration::from_millis(200);
