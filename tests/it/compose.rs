//! docker-compose.yml checked without Docker (none is installed here): it parses, has the
//! services the production set-up needs, runs Kafka in KRaft mode with no ZooKeeper, and wires
//! updraft with exactly the environment variables and commands the code reads.

use std::collections::BTreeMap;

use clap::Parser;
use yaml_rust2::{Yaml, YamlLoader};

/// Applies YAML merge keys (`<<: *anchor`), which yaml-rust2 leaves as plain keys; the
/// mapping's own keys win over merged ones, as Compose does.
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = h.get(&Yaml::String("<<".into())) {
                let bases = match base {
                    Yaml::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                for b in bases {
                    if let Yaml::Hash(bh) = merged(&b) {
                        out.extend(bh);
                    }
                }
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

fn compose() -> Yaml {
    let text =
        std::fs::read_to_string("docker-compose.yml").expect("docker-compose.yml at the repo root");
    merged(
        &YamlLoader::load_from_str(&text)
            .expect("valid YAML")
            .remove(0),
    )
}

fn env_of(service: &Yaml) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match &service["environment"] {
        Yaml::Hash(h) => {
            for (k, v) in h {
                let value = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => String::new(),
                };
                out.insert(k.as_str().unwrap().to_string(), value);
            }
        }
        Yaml::Array(a) => {
            for item in a {
                let (k, v) = item.as_str().unwrap().split_once('=').unwrap();
                out.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    out
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every Rust source of the crate, concatenated: what "the code reads" is checked against.
fn sources() -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut s = String::new();
    walk(std::path::Path::new("src"), &mut s);
    s
}

#[test]
fn services_and_kraft_kafka_without_zookeeper() {
    let c = compose();
    let services = c["services"].as_hash().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for want in [
        "postgres",
        "kafka",
        "cassandra",
        "scheduler",
        "worker",
        "webserver",
    ] {
        assert!(
            names.contains(&want),
            "service {want} missing from {names:?}"
        );
    }
    let text = std::fs::read_to_string("docker-compose.yml")
        .unwrap()
        .to_lowercase();
    assert!(!text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| l.contains("zookeeper")));

    let kafka = &c["services"]["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka"));
    let env = env_of(kafka);
    assert_eq!(env["KAFKA_PROCESS_ROLES"], "broker,controller");
    assert!(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        .starts_with(&format!("{}@kafka:", env["KAFKA_NODE_ID"])));
    assert!(env["KAFKA_LISTENERS"].contains("CONTROLLER://"));
    assert_eq!(env["KAFKA_CONTROLLER_LISTENER_NAMES"], "CONTROLLER");
    assert_eq!(
        env["CLUSTER_ID"].len(),
        22,
        "a KRaft cluster id is a base64 UUID"
    );
    assert!(env["KAFKA_ADVERTISED_LISTENERS"].contains("PLAINTEXT://kafka:9092"));

    // Ports the outside world uses.
    let ports = |s: &str| strings(&c["services"][s]["ports"]);
    assert!(ports("postgres").contains(&"5432:5432".to_string()));
    assert!(ports("cassandra").contains(&"9042:9042".to_string()));
    assert!(ports("webserver").contains(&"8080:8080".to_string()));
    let web = env_of(&c["services"]["webserver"]);
    assert_eq!(
        web["UPDRAFT_WEB_HOST"], "0.0.0.0",
        "in a container the web server must not bind loopback only"
    );
    assert_eq!(web["UPDRAFT_WEB_PORT"], "8080");
    for s in ["postgres", "kafka", "cassandra", "webserver"] {
        assert!(
            !c["services"][s]["healthcheck"]["test"].is_badvalue(),
            "{s} has no healthcheck"
        );
    }
}

#[test]
fn updraft_services_are_wired_consistently_with_the_code() {
    let c = compose();
    let code = sources();
    let pg = env_of(&c["services"]["postgres"]);
    let kafka_env = env_of(&c["services"]["kafka"]);
    for name in ["migrate", "scheduler", "worker", "webserver"] {
        let s = &c["services"][name];
        assert_eq!(
            s["build"].as_str(),
            Some("."),
            "{name} builds from the Dockerfile"
        );
        let env = env_of(s);
        // Every variable set is one the code reads.
        for key in env.keys() {
            let read = if let Some(conn) = key.strip_prefix("AIRFLOW_CONN_") {
                code.contains("AIRFLOW_CONN_") && !conn.is_empty()
            } else {
                code.contains(&format!("\"{key}\""))
            };
            assert!(read, "{name} sets {key}, which no code reads");
        }
        // The database URL matches the postgres service's credentials.
        let want_db = format!(
            "postgres://{}:{}@postgres:5432/{}",
            pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]
        );
        assert_eq!(env["DATABASE_URL"], want_db, "{name}");
        // Brokers point at the Kafka listener advertised inside the network.
        assert!(kafka_env["KAFKA_ADVERTISED_LISTENERS"]
            .contains(&format!("PLAINTEXT://{}", env["KAFKA_BOOTSTRAP_SERVERS"])));
        assert_eq!(env["CASSANDRA_CONTACT_POINTS"], "cassandra:9042");
        // The sink connection parses as the sink operator reads it.
        let target =
            updraft::operators::sink::Target::from_uri(&env["AIRFLOW_CONN_SINK_DEFAULT"]).unwrap();
        assert!(matches!(
            target,
            updraft::operators::sink::Target::Cassandra { .. }
        ));
        // The services it needs are healthy first.
        if name != "migrate" {
            for dep in ["postgres", "kafka", "cassandra", "migrate"] {
                assert!(
                    !s["depends_on"][dep].is_badvalue(),
                    "{name} does not depend on {dep}"
                );
            }
        }
    }
    assert_eq!(
        c["services"]["migrate"]["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[test]
fn updraft_commands_parse_with_the_real_cli() {
    let c = compose();
    for name in ["migrate", "scheduler", "worker", "webserver"] {
        let mut argv = vec!["updraft".to_string()];
        argv.extend(strings(&c["services"][name]["command"]));
        if let Err(e) = updraft::cli::Cli::try_parse_from(&argv) {
            panic!("{name}: `{}` does not parse: {e}", argv.join(" "));
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_and_runs_updraft() {
    let d = std::fs::read_to_string("Dockerfile").unwrap();
    assert_eq!(d.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(d.contains("cargo build --release --locked --bin updraft"));
    assert!(d.contains("COPY --from=build /src/target/release/updraft"));
    assert!(d.contains("ENTRYPOINT [\"updraft\"]"));
    assert!(d.contains("UPDRAFT_DAGS_FOLDER"));
}
