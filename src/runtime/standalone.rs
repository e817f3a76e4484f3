//! `updraft standalone`: everything in one process with defaults that just work. It says
//! which defaults it chose, and writes the database URL it uses to `<home>/database_url` so
//! other `updraft` commands in another terminal find the same database.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

use crate::core::log::mask_uri;
use crate::operators::kafka::EmbeddedKafka;
use crate::operators::OperatorEnv;
use crate::runtime::embedded_pg::{self, Choice};
use crate::settings::Settings;

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

pub async fn run(config: &Settings) -> anyhow::Result<()> {
    let home = config.core.home.clone();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let choice = embedded_pg::choose(config.database.url.clone(), &home).await?;
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
    write_private(&config.database_url_file(), &url)?;
    ensure_fernet_key(config)?;

    let mut settings = config.engine();
    // The pipeline's defaults: an embedded Kafka and this database as the sink, when unset.
    let embedded_kafka = pipeline_defaults(&mut settings.operator_env, &url)?;
    if !settings.dags_folder.is_dir() {
        warn!(
            folder = %settings.dags_folder.display(),
            "the DAGs folder does not exist; create it or pass --dags-folder (env UPDRAFT_DAGS_FOLDER)"
        );
    }
    let mut web_settings = crate::web::WebSettings::from_settings(config);
    // The embedded broker, if any: the stream endpoints reach it too.
    web_settings.operator_env = std::sync::Arc::new(settings.operator_env.clone());
    let listener = crate::web::bind(web_settings.bind).await?;
    let password_file = password_file(&home);
    let new_password = crate::web::ensure_admin(&pool, &password_file).await?;
    let shutdown = crate::runtime::app::shutdown_on_signals();
    let web = tokio::spawn(crate::web::serve(
        pool.clone(),
        web_settings,
        listener,
        shutdown.clone(),
    ));
    let host = config.webserver.host;
    let shown_host = if host.is_unspecified() {
        "localhost".to_string()
    } else {
        host.to_string()
    };
    let login = match new_password {
        Some(pw) => format!("admin / {pw}   (also saved in {})", password_file.display()),
        None => format!(
            "admin, password in {} (or `updraft users create`)",
            password_file.display()
        ),
    };
    println!("\n  updraft standalone is running\n  Web UI:  http://{shown_host}:{}\n  Login:   {login}\n  DAGs:    {}\n", config.webserver.port, settings.dags_folder.display());
    info!(dags_folder = %settings.dags_folder.display(), slots = settings.worker_slots, "standalone: scheduler, worker and web server running");
    let roles = crate::runtime::app::Roles {
        scheduler: true,
        worker: true,
    };
    let result = crate::runtime::app::run_engine(pool.clone(), settings, roles, shutdown).await;
    match web.await {
        Ok(Err(e)) => warn!(error = %format!("{e:#}"), "web server stopped with an error"),
        Err(e) => warn!(error = %e, "web server task failed"),
        Ok(Ok(())) => {}
    }
    pool.close().await;
    let _ = std::fs::remove_file(config.database_url_file());
    drop(embedded_kafka);
    drop(choice); // stops a private cluster
    result
}

/// Without a configured Fernet key, standalone generates one into `$UPDRAFT_HOME/fernet_key`
/// (mode 0600) once and says so; later starts, and other commands on this machine, read it.
/// Other roles never generate a key: without one they refuse to store secrets.
pub fn ensure_fernet_key(config: &Settings) -> anyhow::Result<()> {
    if config.fernet_key_or_standalone().is_some() {
        return Ok(());
    }
    let file = config.fernet_key_file();
    write_private(&file, &crate::core::fernet::FernetKeys::generate_key())
        .with_context(|| format!("cannot write {}", file.display()))?;
    warn!(
        file = %file.display(),
        "no Fernet key configured (UPDRAFT_FERNET_KEY): generated one to encrypt connection passwords and variables; \
         set UPDRAFT_FERNET_KEY to its content for other machines sharing this database, and keep a copy: without it they cannot be read"
    );
    Ok(())
}

/// What `updraft standalone` does for the pipeline when nothing is configured: without
/// `KAFKA_BOOTSTRAP_SERVERS`, start an [`EmbeddedKafka`] and point the operators at it; without
/// any sink target, sink into standalone's own database. Each default is logged loudly, as
/// neither is for production. Keep the returned broker alive as long as the engine runs.
pub fn pipeline_defaults(
    env: &mut OperatorEnv,
    database_url: &str,
) -> anyhow::Result<Option<EmbeddedKafka>> {
    let mut kafka = None;
    if env.kafka_bootstrap_servers.is_none() {
        let embedded = EmbeddedKafka::start(3)?;
        tracing::warn!(
            bootstrap_servers = %embedded.bootstrap_servers(),
            "no KAFKA_BOOTSTRAP_SERVERS: started an embedded in-memory Kafka-protocol broker (librdkafka's mock \
             cluster); messages are lost when this process exits. NOT FOR PRODUCTION"
        );
        env.kafka_bootstrap_servers = Some(embedded.bootstrap_servers());
        kafka = Some(embedded);
    }
    let has_target = env.has_connection(crate::operators::sink::DEFAULT_CONN_ID)
        || env.cassandra_contact_points.is_some()
        || env.sink_postgres_url.is_some();
    if !has_target {
        tracing::warn!(
            database = %mask_uri(database_url),
            "no sink target (AIRFLOW_CONN_SINK_DEFAULT, CASSANDRA_CONTACT_POINTS, SINK_POSTGRES_URL): the sink \
             writes to standalone's own Postgres, schema spark_streams. NOT FOR PRODUCTION"
        );
        env.sink_postgres_url = Some(database_url.to_string());
    }
    Ok(kafka)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_private_fernet_key_once() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.core.home = home.path().to_path_buf();
        assert!(!settings.vault().unwrap().has_keys());
        ensure_fernet_key(&settings).unwrap();
        let file = settings.fernet_key_file();
        let key = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            settings.vault().unwrap().has_keys(),
            "commands beside standalone read it"
        );
        ensure_fernet_key(&settings).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            key,
            "kept, not replaced"
        );
        // A configured key wins and nothing is generated.
        let other = tempfile::tempdir().unwrap();
        settings.core.home = other.path().to_path_buf();
        settings.core.fernet_key = Some(key);
        ensure_fernet_key(&settings).unwrap();
        assert!(!settings.fernet_key_file().exists());
    }

    #[test]
    fn standalone_defaults_fill_only_what_is_missing() {
        let mut env = OperatorEnv::default();
        let kafka = pipeline_defaults(&mut env, "postgres://u:pw@h/db").unwrap();
        assert_eq!(
            env.kafka_bootstrap_servers,
            kafka.as_ref().map(|k| k.bootstrap_servers())
        );
        assert_eq!(
            env.sink_postgres_url.as_deref(),
            Some("postgres://u:pw@h/db")
        );
        let mut env = OperatorEnv {
            kafka_bootstrap_servers: Some("k:9092".into()),
            cassandra_contact_points: Some("c:9042".into()),
            ..Default::default()
        };
        assert!(pipeline_defaults(&mut env, "postgres://h/db")
            .unwrap()
            .is_none());
        assert_eq!(env.kafka_bootstrap_servers.as_deref(), Some("k:9092"));
        assert_eq!(env.sink_postgres_url, None);
    }
}
