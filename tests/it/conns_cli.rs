//! `updraft variables|connections|pools|rotate-fernet-key` as users run them.

use std::process::{Command, Output};

use crate::helpers::*;
use updraft::core::fernet::FernetKeys;

fn run(db: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_updraft"));
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env("UPDRAFT_LOG", "warn")
        .env(
            "UPDRAFT_HOME",
            std::env::temp_dir().join("updraft-conns-cli-home"),
        )
        .env_remove("UPDRAFT_FERNET_KEY")
        .env_remove("AIRFLOW__CORE__FERNET_KEY");
    if let Some(k) = key {
        cmd.env("UPDRAFT_FERNET_KEY", k);
    }
    cmd.output().expect("run updraft")
}

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn variables_connections_pools_and_key_rotation_from_the_command_line() {
    let db = fresh_db().await;
    let url = db.url.as_str();
    let key = FernetKeys::generate_key();
    let k = Some(key.as_str());
    let dir = tempfile::tempdir().unwrap();

    // Variables.
    ok(run(
        url,
        k,
        &["variables", "set", "region", "eu", "--description", "where"],
    ));
    ok(run(
        url,
        k,
        &["variables", "set", "cfg", r#"{"a": [1, 2]}"#, "--json"],
    ));
    assert_eq!(
        ok(run(url, k, &["variables", "get", "region"])).trim(),
        "eu"
    );
    assert!(ok(run(url, k, &["variables", "get", "cfg", "--json"])).contains("\"a\""));
    assert_eq!(
        ok(run(url, k, &["variables", "get", "nope", "-d", "dflt"])).trim(),
        "dflt"
    );
    assert_eq!(
        run(url, k, &["variables", "get", "nope"]).status.code(),
        Some(1)
    );
    let file = dir.path().join("vars.json");
    ok(run(
        url,
        k,
        &["variables", "export", file.to_str().unwrap()],
    ));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        exported,
        serde_json::json!({"cfg": {"a": [1, 2]}, "region": {"value": "eu", "description": "where"}})
    );
    ok(run(url, k, &["variables", "delete", "region"]));
    assert_eq!(
        ok(run(url, k, &["variables", "list", "-o", "plain"])).trim(),
        "cfg"
    );
    let out = ok(run(
        url,
        k,
        &["variables", "import", file.to_str().unwrap(), "-a", "skip"],
    ));
    assert!(
        out.contains("1 of 2 variables successfully updated") && out.contains("cfg"),
        "{out}"
    );
    assert_eq!(
        ok(run(url, k, &["variables", "get", "region"])).trim(),
        "eu"
    );

    // Connections.
    ok(run(
        url,
        k,
        &[
            "connections",
            "add",
            "wh",
            "--conn-uri",
            "postgres://etl:Cli-S3cret@db:5432/dw",
        ],
    ));
    assert_eq!(
        run(
            url,
            k,
            &["connections", "add", "wh", "--conn-uri", "http://x"]
        )
        .status
        .code(),
        Some(1)
    );
    let shown = ok(run(url, k, &["connections", "get", "wh", "-o", "json"]));
    assert!(
        shown.contains("\"***\"") && !shown.contains("Cli-S3cret"),
        "{shown}"
    );
    let shown = ok(run(
        url,
        k,
        &["connections", "get", "wh", "--show-secrets", "-o", "plain"],
    ));
    assert!(shown.contains("Cli-S3cret"), "{shown}");
    let envfile = dir.path().join("conns.env");
    ok(run(
        url,
        k,
        &["connections", "export", envfile.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read_to_string(&envfile).unwrap(),
        "wh=postgres://etl:Cli-S3cret@db:5432/dw\n"
    );
    let jsonfile = dir.path().join("conns.json");
    ok(run(
        url,
        k,
        &["connections", "export", jsonfile.to_str().unwrap()],
    ));
    ok(run(url, k, &["connections", "delete", "wh"]));
    ok(run(
        url,
        k,
        &["connections", "import", jsonfile.to_str().unwrap()],
    ));
    assert!(
        ok(run(url, k, &["connections", "list", "-o", "plain"])).starts_with("wh\tpostgres\tdb")
    );
    // Without a key, a secret is refused with what to set.
    let no_key = run(
        url,
        None,
        &["connections", "add", "other", "--conn-uri", "http://u:pw@h"],
    );
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("UPDRAFT_FERNET_KEY"));
    // A real test of a Postgres connection: this very database.
    ok(run(
        url,
        k,
        &["connections", "add", "meta", "--conn-uri", url],
    ));
    assert!(ok(run(url, k, &["connections", "test", "meta"])).contains("Connection success!"));

    // Rotation: a new key first, the old one after; then the new one alone reads everything.
    let new = FernetKeys::generate_key();
    let both = format!("{new},{key}");
    let out = ok(run(url, Some(&both), &["rotate-fernet-key"]));
    assert!(out.contains("2 connection(s) and 2 variable(s)"), "{out}");
    assert_eq!(
        ok(run(url, Some(&new), &["variables", "get", "region"])).trim(),
        "eu"
    );
    assert!(
        !run(url, k, &["variables", "get", "region"])
            .status
            .success(),
        "the old key alone no longer reads it"
    );

    // Pools.
    ok(run(url, k, &["pools", "set", "etl", "3", "ETL jobs"]));
    ok(run(url, k, &["pools", "set", "any", "-1", "unlimited"]));
    let list = ok(run(url, k, &["pools", "list", "-o", "plain"]));
    assert!(list.contains("etl\t3\tETL jobs\tfalse\t0\t0\t3"), "{list}");
    assert!(
        list.contains("any\t-1\tunlimited\tfalse\t0\t0\t-1"),
        "{list}"
    );
    let pools = dir.path().join("pools.json");
    ok(run(url, k, &["pools", "export", pools.to_str().unwrap()]));
    ok(run(url, k, &["pools", "delete", "etl"]));
    assert_eq!(run(url, k, &["pools", "get", "etl"]).status.code(), Some(1));
    ok(run(url, k, &["pools", "import", pools.to_str().unwrap()]));
    assert!(ok(run(url, k, &["pools", "get", "etl", "-o", "plain"])).starts_with("etl\t3"));
    assert!(!run(url, k, &["pools", "delete", "default_pool"])
        .status
        .success());
}
