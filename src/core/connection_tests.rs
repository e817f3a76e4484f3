use super::*;

/// URIs parsed and printed by Airflow 3.3.2 itself
/// (`scripts/airflow-fixtures/connections.py`).
#[test]
fn matches_airflow_on_its_own_fixtures() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/airflow/connections.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let uri = case["uri"].as_str().unwrap();
        let want = &case["parsed"];
        let got = Connection::from_uri("c", uri).unwrap();
        let field = |k: &str| want[k].as_str().map(str::to_string);
        assert_eq!(got.conn_type, want["conn_type"].as_str().unwrap(), "{uri}");
        assert_eq!(got.host, field("host"), "{uri}");
        assert_eq!(got.schema, field("schema"), "{uri}");
        assert_eq!(got.login, field("login"), "{uri}");
        assert_eq!(got.password, field("password"), "{uri}");
        assert_eq!(got.port, want["port"].as_i64().map(|p| p as i32), "{uri}");
        assert_eq!(
            Value::Object(got.extra_dejson()),
            want["extra_dejson"],
            "{uri}"
        );
        assert_eq!(got.get_uri(), case["get_uri"].as_str().unwrap(), "{uri}");
    }
}

#[test]
fn multi_host_and_json_forms() {
    let k = Connection::from_uri("k", "kafka://k1:9092,k2:9092").unwrap();
    assert_eq!(k.host.as_deref(), Some("k1:9092,k2:9092"));
    assert_eq!(k.host_port().as_deref(), Some("k1:9092,k2:9092"));
    assert_eq!(k.port, None);
    let j = Connection::from_env_value(
        "pg",
        r#"{"conn_type": "postgresql", "host": "db", "port": "5432", "password": "pw", "extra": {"sslmode": "require", "api_token": "t0k3n"}}"#,
    )
    .unwrap();
    assert_eq!(j.conn_type, "postgres");
    assert_eq!(j.port, Some(5432));
    assert_eq!(j.extra_dejson()["sslmode"], "require");
    assert_eq!(j.secrets(), vec!["pw".to_string(), "t0k3n".to_string()]);
    assert!(Connection::from_json("x", r#"{"conn_type": "http", "colour": "red"}"#).is_err());
    assert!(Connection::from_uri("x", "nohost").is_err());
    assert!(Connection::from_uri("x", "http://h:notaport").is_err());
}

#[test]
fn sensitive_names_follow_airflow() {
    for n in [
        "password",
        "API_KEY",
        "my-secret-thing",
        "github token",
        "Authorization",
    ] {
        assert!(is_sensitive_name(n), "{n}");
    }
    for n in ["region", "kafka_address", "host"] {
        assert!(!is_sensitive_name(n), "{n}");
    }
    let v = serde_json::json!({"a": 1, "nested": {"password": "p", "x": ["y"]}});
    assert_eq!(
        redact(&v),
        serde_json::json!({"a": 1, "nested": {"password": "***", "x": ["y"]}})
    );
    assert!(Connection::check_id("my.conn-1_x").is_ok());
    assert!(Connection::check_id("no spaces").is_err());
}
