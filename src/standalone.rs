//! `updraft standalone`: everything in one process with defaults that just work. It says
//! which defaults it chose, and writes the database URL it uses to `<home>/database_url` so
//! other `updraft` commands in another terminal find the same database.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

use crate::cli::{engine_settings, Global, StandaloneArgs};
use crate::embedded_pg::{self, Choice};
use crate::operators::context::mask_uri;

/// `$UPDRAFT_HOME`, else `/var/lib/updraft` for root (a private cluster runs as the
/// `postgres` user, who cannot enter /root) and `~/.updraft` for everyone else.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("UPDRAFT_HOME") {
        return PathBuf::from(home);
    }
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/updraft");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".updraft"))
        .unwrap_or_else(|| PathBuf::from(".updraft"))
}

pub fn url_file(home: &Path) -> PathBuf {
    home.join("database_url")
}

/// The database a running standalone uses, if there is one.
pub fn standalone_database_url() -> Option<String> {
    std::fs::read_to_string(url_file(&default_home()))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Where standalone keeps the generated admin password.
pub fn password_file(home: &Path) -> PathBuf {
    home.join("passwords.json.generated")
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

pub async fn run(g: &Global, args: StandaloneArgs) -> anyhow::Result<()> {
    let home = args.home.clone().unwrap_or_else(default_home);
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let choice = embedded_pg::choose(g.database_url.clone(), &home).await?;
    match &choice {
        Choice::Configured(url) => info!(database = %mask_uri(url), "using DATABASE_URL"),
        Choice::LocalServer(url) => {
            info!(database = %url, "no DATABASE_URL: using the local Postgres on 127.0.0.1:5432")
        }
        Choice::Private(c) => warn!(
            data_dir = %c.data_dir.display(),
            "no DATABASE_URL and no local Postgres: started a private Postgres cluster (fine for a laptop, not for production)"
        ),
    }
    let url = choice.url().to_string();
    let pool = crate::db::connect(&url, 20).await?;
    crate::db::migrate(&pool).await?;
    write_private(&url_file(&home), &url)?;

    let mut settings = engine_settings(g, args.worker.slots);
    // The pipeline's defaults: an embedded Kafka and this database as the sink, when unset.
    let embedded_kafka = crate::kafka::standalone_defaults(&mut settings.operator_env, &url)?;
    if !settings.dags_folder.is_dir() {
        warn!(
            folder = %settings.dags_folder.display(),
            "the DAGs folder does not exist; create it or pass --dags-folder (env UPDRAFT_DAGS_FOLDER)"
        );
    }
    let listener = args.web.bind().await?;
    let web_settings = args.web.settings(settings.dags_folder.clone());
    let password_file = password_file(&home);
    let new_password = crate::web::ensure_admin(&pool, &password_file).await?;
    let shutdown = crate::app::shutdown_on_signals();
    let web = tokio::spawn(crate::web::serve(
        pool.clone(),
        web_settings,
        listener,
        shutdown.clone(),
    ));
    let shown_host = if args.web.host.is_unspecified() {
        "localhost".to_string()
    } else {
        args.web.host.to_string()
    };
    let login = match new_password {
        Some(pw) => format!("admin / {pw}   (also saved in {})", password_file.display()),
        None => format!(
            "admin, password in {} (or `updraft users create`)",
            password_file.display()
        ),
    };
    println!("\n  updraft standalone is running\n  Web UI:  http://{shown_host}:{}\n  Login:   {login}\n  DAGs:    {}\n", args.web.port, settings.dags_folder.display());
    info!(dags_folder = %settings.dags_folder.display(), slots = settings.worker_slots, "standalone: scheduler, worker and web server running");
    let roles = crate::app::Roles {
        scheduler: true,
        worker: true,
    };
    let result = crate::app::run_engine(pool.clone(), settings, roles, shutdown).await;
    match web.await {
        Ok(Err(e)) => warn!(error = %format!("{e:#}"), "web server stopped with an error"),
        Err(e) => warn!(error = %e, "web server task failed"),
        Ok(Ok(())) => {}
    }
    pool.close().await;
    let _ = std::fs::remove_file(url_file(&home));
    drop(embedded_kafka);
    drop(choice); // stops a private cluster
    result
}
