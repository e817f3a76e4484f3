//! standalone's database choice, including the private cluster it starts from the Postgres
//! binaries on this machine when nothing else answers.

use std::time::Duration;

use updraft::runtime::embedded_pg::{self, Choice, PrivateCluster};

#[tokio::test]
async fn a_configured_url_wins_and_a_local_server_is_used_next() {
    let home = tempfile::tempdir().unwrap();
    let c = embedded_pg::choose(Some("postgres://x@h/db".into()), home.path())
        .await
        .unwrap();
    assert!(matches!(c, Choice::Configured(ref u) if u == "postgres://x@h/db"));
    // This machine has Postgres on 127.0.0.1:5432: standalone uses it, database `updraft`.
    let c = embedded_pg::choose(None, home.path()).await.unwrap();
    assert!(
        matches!(c, Choice::LocalServer(ref u) if u.ends_with("/updraft")),
        "{}",
        c.url()
    );
}

#[tokio::test]
async fn private_cluster_starts_serves_and_stops() {
    // Under /tmp so that the unprivileged `postgres` user (when we are root) can reach it.
    let dir = tempfile::Builder::new()
        .prefix("updraft-pg-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = dir.path().join("pgdata");
    let cluster = PrivateCluster::start(&data)
        .await
        .expect("start a private cluster");
    let pool = updraft::db::connect(&cluster.url, 2).await.unwrap();
    updraft::db::migrate(&pool).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dags")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    pool.close().await;
    let url = cluster.url.clone();
    drop(cluster);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        updraft::db::connect(&url, 1).await.is_err(),
        "the cluster stops when dropped"
    );
    assert!(
        data.join("PG_VERSION").exists(),
        "the data directory stays for the next start"
    );
}
