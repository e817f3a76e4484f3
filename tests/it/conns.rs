//! Variables, connections and pools against a real Postgres: encryption at rest, key
//! rotation, environment over database, a connection changed between two tries, secrets
//! masked in task logs, pools as import errors and as task failures, and pool limits under
//! two concurrent workers.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use updraft::core::connection::Connection;
use updraft::core::fernet::{FernetKeys, Vault};
use updraft::dag::{Arg, OperatorName};
use updraft::db::connections::{self as conns, OnConflict};
use updraft::db::listing::StoreError;
use updraft::db::variables;
use updraft::settings::EngineSettings;

const LIMIT: Duration = Duration::from_secs(30);

fn vault(keys: &str) -> Vault {
    Vault::from_setting(Some(keys)).unwrap()
}

fn conn(id: &str, uri: &str) -> Connection {
    Connection::from_uri(id, uri).unwrap()
}

/// Settings of an engine whose worker reads stored secrets with `vault`.
fn settings_with(folder: &std::path::Path, vault: Vault) -> EngineSettings {
    EngineSettings {
        vault,
        ..fast_settings(folder)
    }
}

async fn log_lines(pool: &sqlx::PgPool, task_id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT l.line FROM task_logs l JOIN task_instances t ON t.id = l.ti_id
         WHERE t.task_id = $1 ORDER BY l.id",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_keys_rotate() {
    let db = fresh_db().await;
    let (old, new) = (FernetKeys::generate_key(), FernetKeys::generate_key());
    let v_old = vault(&old);
    let mut c = conn("pg", "postgres://app:Sup3rS3cret!@db:5432/app");
    c.extra = Some(r#"{"sslmode": "require", "api_token": "T0ken-XYZ"}"#.into());
    assert!(conns::put(&db.pool, &v_old, &c, OnConflict::Keep)
        .await
        .unwrap());
    variables::put(
        &db.pool,
        &v_old,
        "api_key",
        "K3y-value",
        None,
        variables::OnConflict::Overwrite,
    )
    .await
    .unwrap();

    // What is on disk holds none of it.
    let (pw, extra) = conns::raw(&db.pool, "pg").await.unwrap().unwrap();
    let (pw, extra) = (pw.unwrap(), extra.unwrap());
    assert!(
        pw.starts_with("gAAAAA") && !pw.contains("Sup3rS3cret"),
        "{pw}"
    );
    assert!(
        !extra.contains("T0ken-XYZ") && !extra.contains("sslmode"),
        "{extra}"
    );
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM connections) t")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let vars: String = sqlx::query_scalar("SELECT string_agg(v::text, ' ') FROM variables v")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    for secret in ["Sup3rS3cret", "T0ken-XYZ", "K3y-value"] {
        assert!(
            !dump.contains(secret) && !vars.contains(secret),
            "{secret} on disk"
        );
    }
    // Read back with the key.
    let got = conns::get(&db.pool, &v_old, "pg").await.unwrap().unwrap();
    assert_eq!(got.conn.password.as_deref(), Some("Sup3rS3cret!"));
    assert!(got.is_encrypted && got.is_extra_encrypted);

    // A wrong key is a clear error naming the value and what to set.
    let err = conns::get(&db.pool, &vault(&new), "pg").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Vault(_)), "{text}");
    assert!(
        text.contains("connection `pg`") && text.contains("UPDRAFT_FERNET_KEY"),
        "{text}"
    );
    // No key at all refuses to store a secret, and says what to set.
    let err = conns::put(
        &db.pool,
        &Vault::without_keys(),
        &conn("x", "http://u:pw@h"),
        OnConflict::Keep,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("UPDRAFT_FERNET_KEY"), "{err}");

    // Rotation: new key first, old second; everything is re-encrypted with the new one.
    let both = vault(&format!("{new},{old}"));
    let done = updraft::db::config_store::rotate(&db.pool, &both)
        .await
        .unwrap();
    assert_eq!((done.connections, done.variables), (1, 1));
    let (pw2, _) = conns::raw(&db.pool, "pg").await.unwrap().unwrap();
    assert_ne!(pw2.unwrap(), pw, "re-encrypted");
    let new_only = vault(&new);
    let got = conns::get(&db.pool, &new_only, "pg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.conn.password.as_deref(), Some("Sup3rS3cret!"));
    assert_eq!(got.conn.extra_dejson()["api_token"], "T0ken-XYZ");
    let var = variables::get(&db.pool, &new_only, "api_key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(var.value, "K3y-value");
    assert!(
        conns::get(&db.pool, &v_old, "pg").await.is_err(),
        "the old key alone no longer reads it"
    );
}

#[tokio::test]
async fn environment_wins_over_the_database_and_secrets_are_masked_in_logs() {
    let db = fresh_db().await;
    let key = FernetKeys::generate_key();
    let v = vault(&key);
    variables::put(
        &db.pool,
        &v,
        "region",
        "from-db",
        None,
        variables::OnConflict::Overwrite,
    )
    .await
    .unwrap();
    variables::put(
        &db.pool,
        &v,
        "only_db",
        "db-value",
        None,
        variables::OnConflict::Overwrite,
    )
    .await
    .unwrap();
    variables::put(
        &db.pool,
        &v,
        "service_token",
        "tok-777-secret",
        None,
        variables::OnConflict::Overwrite,
    )
    .await
    .unwrap();
    conns::put(
        &db.pool,
        &v,
        &conn("warehouse", "postgres://etl:pg-Pa55word@wh:5432/dw"),
        OnConflict::Keep,
    )
    .await
    .unwrap();
    conns::put(
        &db.pool,
        &v,
        &conn("api", "https://db-host/v1"),
        OnConflict::Keep,
    )
    .await
    .unwrap();

    let mut echo = bash("echo", "unused", &[]);
    echo.args = Arg::Map(vec![(
        "bash_command".into(),
        Arg::Template(
            "echo region={{ var.value.region }} only={{ var.value.only_db }} api={{ conn.api.host }}; \
             echo pw={{ conn.warehouse.password }}; echo token=$TOKEN; echo uri={{ conn.warehouse.get_uri() }}; echo done"
                .into(),
        ),
    ), (
        "env".into(),
        Arg::Map(vec![("TOKEN".into(), Arg::Template("{{ var.value.service_token }}".into()))]),
    )]);
    install(&db.pool, &[dag("vars_dag", vec![echo])]).await;
    let folder = empty_folder();
    let mut settings = settings_with(folder.path(), v);
    settings
        .operator_env
        .env_variables
        .insert("region".into(), "from-env".into());
    settings
        .operator_env
        .set_env_connection("API", "https://env-host/v1");
    let engine = Engine::start(&db.pool, settings, 1, 1);
    let run = trigger(&db.pool, "vars_dag", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "vars_dag", &run, LIMIT).await, "success");
    engine.stop().await;

    let lines = log_lines(&db.pool, "echo").await;
    let all = lines.join("\n");
    assert!(
        lines.contains(&"region=from-env only=db-value api=env-host".to_string()),
        "environment first, then the database: {all}"
    );
    assert!(lines.contains(&"pw=***".to_string()), "{all}");
    assert!(lines.contains(&"token=***".to_string()), "{all}");
    assert!(
        lines.contains(&"uri=postgres://etl:***@wh:5432/dw".to_string()),
        "{all}"
    );
    for secret in ["pg-Pa55word", "tok-777-secret"] {
        assert!(!all.contains(secret), "{secret} in the log: {all}");
    }
}

#[tokio::test]
async fn a_missing_variable_fails_the_try_naming_it() {
    let db = fresh_db().await;
    let mut t = bash("t", "unused", &[]);
    t.args = Arg::Map(vec![(
        "bash_command".into(),
        Arg::Template("echo {{ var.value.not_there }}".into()),
    )]);
    install(&db.pool, &[dag("missing_var", vec![t])]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run = trigger(&db.pool, "missing_var", serde_json::json!({})).await;
    assert_eq!(
        wait_run(&db.pool, "missing_var", &run, LIMIT).await,
        "failed"
    );
    engine.stop().await;
    let all = log_lines(&db.pool, "t").await.join("\n");
    // Airflow's own words for it.
    assert!(all.contains("Variable not_there not found"), "{all}");
}

/// An http task whose connection points nowhere fails its first try; the connection is fixed
/// in the database while it waits to retry, and the second try uses the new one.
#[tokio::test]
async fn a_connection_changed_between_two_tries_takes_effect() {
    let db = fresh_db().await;
    let app = axum::Router::new().route("/v1/ping", axum::routing::get(|| async { "pong" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);

    let key = FernetKeys::generate_key();
    let v = vault(&key);
    conns::put(
        &db.pool,
        &v,
        &conn("api", &format!("http://{dead_addr}/v1")),
        OnConflict::Keep,
    )
    .await
    .unwrap();
    let mut call = task(
        "call",
        OperatorName::Http,
        serde_json::json!({"http_conn_id": "api", "endpoint": "ping", "method": "GET"}),
        &[],
    );
    call.retries = 1;
    call.retry_delay = updraft::dag::Duration::from_secs(2);
    install(&db.pool, &[dag("conn_change", vec![call])]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, settings_with(folder.path(), v.clone()), 1, 1);
    let run = trigger(&db.pool, "conn_change", serde_json::json!({})).await;
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let s = states(&db.pool, "conn_change", &run).await;
        let state = s.get("call").map(|(st, _)| st.as_str()).unwrap_or("none");
        if state == "up_for_retry" {
            break;
        }
        assert!(
            state != "failed" && std::time::Instant::now() < deadline,
            "{s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conns::put(
        &db.pool,
        &v,
        &conn("api", &format!("http://{addr}/v1")),
        OnConflict::Overwrite,
    )
    .await
    .unwrap();
    assert_eq!(
        wait_run(&db.pool, "conn_change", &run, LIMIT).await,
        "success"
    );
    engine.stop().await;
    let s = states(&db.pool, "conn_change", &run).await;
    assert_eq!(s["call"], ("success".to_string(), 2));
    let xcom: serde_json::Value =
        sqlx::query_scalar("SELECT value FROM xcom WHERE task_id = 'call'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(xcom, "pong");
}

#[tokio::test]
async fn a_missing_pool_is_an_import_error_and_a_vanished_pool_fails_the_try() {
    let db = fresh_db().await;
    let folder = empty_folder();
    std::fs::write(
        folder.path().join("pooled.yaml"),
        "dag_id: pooled\ntasks:\n  - id: t\n    uses: updraft.bash\n    pool: etl\n    pool_slots: 2\n    with: {bash_command: echo hi}\n",
    )
    .unwrap();
    let mut known = Default::default();
    let (bag, _) = updraft::scheduler::processor::sync_once(
        &db.pool,
        &std::sync::Arc::new(std::sync::Mutex::new(updraft::dag::DagFolder::new(
            folder.path(),
            4 << 20,
        ))),
        &mut known,
    )
    .await
    .unwrap();
    assert!(bag.dags.is_empty());
    let msg: String =
        sqlx::query_scalar("SELECT message FROM import_errors WHERE filename = 'pooled.yaml'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(msg.contains("pool `etl` does not exist"), "{msg}");

    // With the pool, the DAG loads; task instances carry pool and pool_slots.
    let spec = updraft::db::pools::PoolSpec {
        name: "etl".into(),
        slots: 4,
        description: "ETL".into(),
        include_deferred: false,
    };
    updraft::db::pools::put(&db.pool, &spec, false)
        .await
        .unwrap();
    let (bag, _) = updraft::scheduler::processor::sync_once(
        &db.pool,
        &std::sync::Arc::new(std::sync::Mutex::new(updraft::dag::DagFolder::new(
            folder.path(),
            4 << 20,
        ))),
        &mut known,
    )
    .await
    .unwrap();
    assert_eq!(bag.dags.len(), 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM import_errors")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // The pool is deleted after validation: the try fails naming it.
    updraft::db::pools::delete(&db.pool, "etl").await.unwrap();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 1);
    let run = trigger(&db.pool, "pooled", serde_json::json!({})).await;
    assert_eq!(wait_run(&db.pool, "pooled", &run, LIMIT).await, "failed");
    engine.stop().await;
    let (pool, slots): (String, i32) =
        sqlx::query_as("SELECT pool, pool_slots FROM task_instances WHERE task_id = 't'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((pool.as_str(), slots), ("etl", 2));
    let all = log_lines(&db.pool, "t").await.join("\n");
    assert!(all.contains("pool `etl` does not exist"), "{all}");
}

/// Two workers claim at once from one pool of 2 slots: never more than 2 slots run. The
/// slot counts the API reports are checked along the way.
#[tokio::test]

async fn a_pool_never_runs_more_than_its_slots_with_two_workers() {
    let db = fresh_db().await;
    let spec = updraft::db::pools::PoolSpec {
        name: "narrow".into(),
        slots: 2,
        description: String::new(),
        include_deferred: false,
    };
    updraft::db::pools::put(&db.pool, &spec, false)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let mut t = bash(&format!("t{i}"), "sleep 0.3", &[]);
            t.pool = Some("narrow".into());
            t
        })
        .collect();
    install(&db.pool, &[dag("pooled", tasks)]).await;
    let folder = empty_folder();
    let engine = Engine::start(&db.pool, fast_settings(folder.path()), 1, 2);
    let run = trigger(&db.pool, "pooled", serde_json::json!({})).await;
    let max_seen = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let p = updraft::db::pools::get(&db.pool, "narrow")
            .await
            .unwrap()
            .unwrap();
        max_seen.fetch_max(p.running_slots, std::sync::atomic::Ordering::Relaxed);
        assert!(p.running_slots <= 2, "{p:?}");
        assert_eq!(p.open_slots(), 2 - p.running_slots);
        let run_state = updraft::db::runs::get(&db.pool, "pooled", &run)
            .await
            .unwrap()
            .unwrap();
        if run_state.state.is_finished() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.stop().await;
    assert_eq!(wait_run(&db.pool, "pooled", &run, LIMIT).await, "success");
    // And from the task instances' own timestamps: no instant had more than 2 running.
    let overlap: i64 = sqlx::query_scalar(
        "SELECT max(c) FROM (SELECT (SELECT count(*) FROM task_instances b
             WHERE b.start_date <= a.start_date AND b.end_date > a.start_date) AS c
           FROM task_instances a) x",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(overlap <= 2, "{overlap} tasks ran at once in a pool of 2");
    assert!(max_seen.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn pool_slot_counts_weigh_pool_slots() {
    let db = fresh_db().await;
    let mut a = bash("a", "true", &[]);
    a.pool_slots = 3;
    install(&db.pool, &[dag("weights", vec![a, bash("b", "true", &[])])]).await;
    // Start the run without workers: both tasks are queued in default_pool.
    trigger(&db.pool, "weights", serde_json::json!({})).await;
    let specs = updraft::db::tasks::SpecCache::default();
    updraft::db::scheduling::start_queued_runs(&db.pool, &specs)
        .await
        .unwrap();
    let p = updraft::db::pools::get(&db.pool, "default_pool")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.slots, p.queued_slots, p.running_slots), (128, 4, 0));
    assert_eq!(p.open_slots(), 128);
    let err = updraft::db::pools::delete(&db.pool, "default_pool")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("can't be deleted"));
}
