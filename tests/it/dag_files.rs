//! The DAG files updraft ships: every task's `with:` passes its operator's parse-time check,
//! and `user_automation` has the shape the issue asks for. (The full YAML parser is tested
//! elsewhere; here YAML is read with yaml-rust2 and markers turned into `Arg`s by hand.)

use updraft::dag::{check_with, Arg, OperatorName, TaskId};
use yaml_rust2::{Yaml, YamlLoader};

fn to_arg(y: &Yaml) -> Arg {
    match y {
        Yaml::Hash(h) => {
            if h.len() == 1 {
                if let Some((Yaml::String(k), Yaml::String(task))) = h.iter().next() {
                    if k == "$x" || k == "$xcom" {
                        return Arg::XCom {
                            task: TaskId::parse(task.clone()).unwrap(),
                            key: "return_value".into(),
                        };
                    }
                    if k == "$t" {
                        return Arg::Template(task.clone());
                    }
                }
            }
            Arg::Map(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), to_arg(v)))
                    .collect(),
            )
        }
        Yaml::Array(a) => Arg::List(a.iter().map(to_arg).collect()),
        Yaml::String(s) => Arg::Value(s.clone().into()),
        Yaml::Integer(i) => Arg::Value((*i).into()),
        Yaml::Real(r) => Arg::Value(serde_json::json!(r.parse::<f64>().unwrap())),
        Yaml::Boolean(b) => Arg::Value((*b).into()),
        _ => Arg::Value(serde_json::Value::Null),
    }
}

fn load(path: &str) -> Yaml {
    YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
}

#[test]
fn every_shipped_dag_task_passes_its_operator_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir("dags").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc = load(path.to_str().unwrap());
        assert!(
            doc["$schema"]
                .as_str()
                .is_some_and(|s| s.contains("2026-10-30")),
            "{} lacks $schema",
            path.display()
        );
        for task in doc["tasks"].as_vec().unwrap() {
            let uses = task["uses"].as_str().unwrap();
            let op =
                OperatorName::from_uses(uses).unwrap_or_else(|| panic!("unknown operator {uses}"));
            let with = if task["with"].is_badvalue() {
                Arg::empty_map()
            } else {
                to_arg(&task["with"])
            };
            let errors = check_with(op, &with);
            assert!(
                errors.is_empty(),
                "{} task {:?}: {errors:?}",
                path.display(),
                task["id"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked}");
}

#[test]
fn every_shipped_dag_loads_with_the_real_parser() {
    let bag = updraft::dag::DagBag::load(std::path::Path::new("dags"));
    assert!(bag.errors.is_empty(), "{:#?}", bag.errors);
    assert!(bag.warnings.is_empty(), "{:#?}", bag.warnings);
    for id in [
        "user_automation",
        "example_fetch",
        "example_publish",
        "example_sink",
        "example_http",
        "user_stream",
    ] {
        assert!(bag.dags.keys().any(|d| d.as_str() == id), "{id} missing");
    }
    let ua = &bag
        .dags
        .values()
        .find(|d| d.dag.dag_id.as_str() == "user_automation")
        .unwrap()
        .dag;
    assert_eq!(ua.owners(), "airscholar");
    assert!(!ua.catchup);
    assert_eq!(
        ua.start_date.map(|d| d.to_rfc3339()),
        Some("2023-09-03T10:00:00+00:00".into())
    );
    let order: Vec<&str> = ua.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(order, ["fetch_users", "publish_users", "sink_users"]);
    assert!(ua.tasks.iter().all(|t| t.retries == 2));
    let us = &bag
        .dags
        .values()
        .find(|d| d.dag.dag_id.as_str() == "user_stream")
        .unwrap()
        .dag;
    assert_eq!(us.schedule, updraft::core::Schedule::Continuous);
    assert_eq!(us.max_active_runs, 1);
}

#[test]
fn user_automation_has_the_reference_shape() {
    let doc = load("dags/user_automation.yaml");
    assert_eq!(doc["dag_id"].as_str(), Some("user_automation"));
    assert_eq!(doc["schedule"].as_str(), Some("@daily"));
    assert_eq!(doc["start_date"].as_str(), Some("2023-09-03T10:00:00Z"));
    assert_eq!(doc["catchup"].as_bool(), Some(false));
    assert_eq!(
        doc["templates"]["default"]["owner"].as_str(),
        Some("airscholar")
    );
    let tasks = doc["tasks"].as_vec().unwrap();
    let ids: Vec<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["fetch_users", "publish_users", "sink_users"]);
    let uses: Vec<&str> = tasks.iter().map(|t| t["uses"].as_str().unwrap()).collect();
    assert_eq!(uses, ["updraft.fetch", "updraft.publish", "updraft.sink"]);
    for t in tasks {
        assert_eq!(t["extends"][0].as_str(), Some("default"));
    }
    let fields: Vec<&str> = tasks[0]["with"]["fields"]
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "first_name",
            "last_name",
            "gender",
            "address",
            "post_code",
            "email",
            "username",
            "dob",
            "registered_date",
            "phone",
            "picture"
        ]
    );
}

#[test]
fn parse_time_checks_catch_bad_pipeline_arguments() {
    let bad = YamlLoader::load_from_str("fields: {id: \"$nope\"}\npage_size: 9000\n")
        .unwrap()
        .remove(0);
    let errors = check_with(OperatorName::Fetch, &to_arg(&bad));
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["with.fields.id", "with.page_size"]);
    let bad = YamlLoader::load_from_str("table: \"x; drop\"\nbogus: 1\n")
        .unwrap()
        .remove(0);
    let errors = check_with(OperatorName::Sink, &to_arg(&bad));
    assert!(errors[0].1.contains("unknown key `bogus`"), "{errors:?}");
    let bad = YamlLoader::load_from_str("response_check: \"lambda r: True\"\n")
        .unwrap()
        .remove(0);
    let errors = check_with(OperatorName::Http, &to_arg(&bad));
    assert!(errors[0].1.contains("Python callable"), "{errors:?}");
}
