use super::*;
use crate::core::Duration;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("updraft.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::load(Sources {
        env: env(&[("UPDRAFT_HOME", dir.path().to_str().unwrap())]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.worker.slots, 32);
    assert_eq!(s.core.home, dir.path());
    assert_eq!(s.origins["worker.slots"], Origin::Default);
    assert_eq!(s.origins["core.home"], Origin::Env("UPDRAFT_HOME"));
    assert_eq!(s.config_file, Some(dir.path().join("updraft.toml")));
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "[worker]\nslots = 4\nlease_ttl = \"20s\"\n[webserver]\nport = 9000\nhost = \"0.0.0.0\"\n",
    );
    let s = Settings::load(Sources {
        env: env(&[("UPDRAFT_WEB_PORT", "9100"), ("UPDRAFT_WORKER_SLOTS", "6")]),
        flags: Flags {
            slots: Some(8),
            ..Default::default()
        },
        config: Some(file.clone()),
    })
    .unwrap();
    assert_eq!(
        s.worker.slots, 8,
        "a flag beats the environment and the file"
    );
    assert_eq!(s.webserver.port, 9100, "the environment beats the file");
    assert_eq!(
        s.worker.lease_ttl,
        Duration::from_secs(20),
        "the file beats defaults"
    );
    assert_eq!(s.webserver.host.to_string(), "0.0.0.0");
    assert_eq!(s.origins["worker.slots"], Origin::Flag("--slots"));
    assert_eq!(s.origins["webserver.port"], Origin::Env("UPDRAFT_WEB_PORT"));
    assert_eq!(s.origins["worker.lease_ttl"], Origin::File(file));
    assert_eq!(s.origins["worker.shutdown_grace"], Origin::Default);
}

#[test]
fn the_config_file_comes_from_the_environment_or_home() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "[core]\ndags_folder = \"/srv/dags\"\n");
    let s = Settings::load(Sources {
        env: env(&[("UPDRAFT_HOME", dir.path().to_str().unwrap())]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.core.dags_folder, PathBuf::from("/srv/dags"));
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[logging]\nlevel = \"debug\"\n").unwrap();
    let s = Settings::load(Sources {
        env: env(&[(CONFIG_ENV, other.to_str().unwrap())]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.logging.level, "debug");
    let err = Settings::load(Sources {
        config: Some(dir.path().join("missing.toml")),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn unknown_keys_and_bad_values_name_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[worker]\nslots = 4\nslotz = 5\n");
    let err = Settings::load(Sources {
        config: Some(file.clone()),
        ..Default::default()
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:3:", file.display())),
        "{text}"
    );
    assert!(text.contains("`worker.slotz`"), "{text}");
    assert!(text.contains("unknown field"), "{text}");

    let file = write(dir.path(), "# ports\n\n[webserver]\nport = \"eighty\"\n");
    let text = Settings::load(Sources {
        config: Some(file.clone()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        text.starts_with(&format!("{}:4:", file.display())),
        "{text}"
    );
    assert!(text.contains("`webserver.port`"), "{text}");

    let file = write(dir.path(), "[wrker]\nslots = 1\n");
    let text = Settings::load(Sources {
        config: Some(file),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(text.contains(":1:") && text.contains("wrker"), "{text}");

    let text = Settings::load(Sources {
        env: env(&[("UPDRAFT_WORKER_SLOTS", "many")]),
        config: Some(dir.path().join("none.toml")),
        ..Default::default()
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(text.contains("none.toml"), "{text}");
    let text = Settings::load(Sources {
        env: env(&[("UPDRAFT_WORKER_SLOTS", "many")]),
        ..Default::default()
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("UPDRAFT_WORKER_SLOTS") && text.contains("many"),
        "{text}"
    );
    let text = Settings::load(Sources {
        env: env(&[("UPDRAFT_LEASE_TTL", "soon")]),
        ..Default::default()
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("UPDRAFT_LEASE_TTL") && text.contains("worker.lease_ttl"),
        "{text}"
    );
}

#[test]
fn connections_and_variables_from_the_environment() {
    let s = Settings::load(Sources {
        env: env(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
            ("AIRFLOW_CONN_SINK_PG", "postgres://u:p@h/db"),
            ("UPDRAFT_VAR_REGION", "eu"),
            ("DATASOURCE_URL", " "),
        ]),
        config: None,
        ..Default::default()
    })
    .unwrap();
    let op = s.operator_env();
    assert_eq!(op.kafka_bootstrap_servers.as_deref(), Some("k:9092"));
    assert_eq!(
        op.connection("SINK_PG").unwrap().get_uri(),
        "postgres://u:p@h/db"
    );
    assert_eq!(op.variable("region").unwrap(), "eu");
    assert_eq!(op.datasource_url, None, "an empty variable is unset");
    let s = Settings::load(Sources {
        env: env(&[("AIRFLOW__CORE__FERNET_KEY", "not-a-key")]),
        ..Default::default()
    })
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        s.contains("AIRFLOW__CORE__FERNET_KEY") && s.contains("core.fernet_key"),
        "{s}"
    );
    assert!(
        op.secrets().is_empty(),
        "a one-letter password is too short to mask, as in Airflow"
    );
}

/// Tasks start from the environment without updraft's own credentials: the database URL,
/// PGPASSWORD, and any copy of the password under another name. Every form of the
/// password is masked in what tasks write.
#[test]
fn tasks_get_the_environment_without_the_database_credentials() {
    let s = Settings::load(Sources {
        env: env(&[
            ("DATABASE_URL", "postgres://u:hunt%40er2@h/db"),
            ("PGPASSWORD", "pg-pass"),
            ("SQL_ALCHEMY_CONN", "postgresql://u:hunt%40er2@h/db"),
            ("PATH", "/usr/bin"),
            ("TEAM", "data"),
        ]),
        ..Default::default()
    })
    .unwrap();
    let vars = s.task_env.vars().unwrap();
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["PATH", "TEAM"]);
    let op = s.operator_env();
    assert_eq!(op.task_env, s.task_env);
    let masked = op
        .secrets()
        .mask("hunt%40er2 hunt@er2 pg-pass")
        .into_owned();
    assert_eq!(masked, "*** *** ***");
    assert!(crate::settings::own_variables().any(|v| v == "DATABASE_URL"));
}

#[test]
fn config_list_masks_secrets_and_says_where() {
    let s = Settings::load(Sources {
        env: env(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]),
        ..Default::default()
    })
    .unwrap();
    let rows = keys::list(&s);
    let db = rows.iter().find(|r| r.key == "database.url").unwrap();
    assert_eq!(db.value, "postgres://u:***@h/db");
    assert_eq!(db.source, "env DATABASE_URL");
    assert!(rows.iter().all(|r| !r.value.contains("hunter2")));
    assert_eq!(rows.len(), KEYS.len());
}
