//! The fixture files under `tests/dags/`: one broken file per error kind, each with the one
//! error it must produce, and a few valid DAGs; then the whole folder through `DagBag::load`.

use std::path::{Path, PathBuf};

use super::load::{parse_source, DagBag};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dags")
}

/// `(file, expected message substring, line)`.
const BROKEN: &[(&str, &str, u32)] = &[
    ("syntax_error.yaml", "YAML syntax error", 5),
    (
        "duplicate_key.yaml",
        "duplicate key `dag_id` (first defined on line 2)",
        3,
    ),
    ("not_a_mapping.yaml", "a DAG document must be a mapping", 1),
    ("missing_dag_id.yaml", "missing `dag_id`", 1),
    ("bad_cron.yaml", "invalid cron expression `0 25 * * *`", 3),
    ("cycle.yaml", "cycle: a → b → c → a", 4),
    (
        "unknown_needs.yaml",
        "`needs` names `transform`, which is not a task in this DAG",
        6,
    ),
    ("self_needs.yaml", "task `load` cannot need itself", 6),
    (
        "duplicate_task_id.yaml",
        "task id `load` is already used by the task on line 4",
        6,
    ),
    (
        "unknown_operator.yaml",
        "unsupported operator `airflow.providers.amazon.aws.operators.s3.S3CreateBucketOperator`",
        5,
    ),
    (
        "unknown_with_key.yaml",
        "unknown key `bash_cmd` for the bash operator",
        7,
    ),
    ("invalid_duration.yaml", "invalid duration `5mins`", 6),
    (
        "bad_trigger_rule.yaml",
        "unknown trigger_rule `all_sucess`; use one of: all_success",
        6,
    ),
    ("unknown_marker.yaml", "unknown marker `$tmpl`", 7),
    (
        "default_args.yaml",
        "`default_args` is not part of the YAML format",
        3,
    ),
    (
        "unknown_template.yaml",
        "extends unknown template `base`; templates are: retrying",
        7,
    ),
    (
        "template_cycle.yaml",
        "templates extend each other in a cycle: a → b → a",
        5,
    ),
    ("tasks_mapping.yaml", "`tasks` must be a list", 4),
    ("bad_schema_version.yaml", "unsupported `$schema`", 1),
    ("run_task.yaml", "updraft runs only `uses:` operators", 5),
    ("second_document.yaml", "`catchup` must be true or false", 6),
];

#[test]
fn each_broken_file_gives_its_error() {
    let dir = fixtures().join("broken");
    let no_files = |p: &str| -> std::io::Result<String> {
        Err(std::io::Error::other(format!("unexpected read of {p}")))
    };
    for (file, needle, line) in BROKEN {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        let rel = format!("broken/{file}");
        let parsed = parse_source(&rel, &source, &no_files);
        assert!(parsed.dags.is_empty(), "{file} gave a DAG");
        assert_eq!(parsed.errors.len(), 1, "{file}: {:#?}", parsed.errors);
        let e = &parsed.errors[0];
        assert!(
            e.message.contains(needle),
            "{file}: expected `{needle}`, got `{e}`"
        );
        assert_eq!(e.line, Some(*line), "{file}: {e}");
        assert!(e.to_string().starts_with(&format!("broken/{file}")), "{e}");
    }
    let listed: Vec<&str> = BROKEN.iter().map(|(f, _, _)| *f).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            listed.contains(&name.as_str()),
            "{name} has no expectation in BROKEN"
        );
    }
}

#[test]
fn positions_and_context_of_broken_files() {
    let read = |f: &str| std::fs::read_to_string(fixtures().join("broken").join(f)).unwrap();
    let no_files = |_: &str| -> std::io::Result<String> { Err(std::io::Error::other("no")) };
    let e = &parse_source("x.yaml", &read("unknown_with_key.yaml"), &no_files).errors[0];
    assert_eq!(
        (
            e.dag_id.as_deref(),
            e.task_id.as_deref(),
            e.field.as_deref()
        ),
        (
            Some("unknown_with_key"),
            Some("hello"),
            Some("with.bash_cmd")
        )
    );
    assert_eq!(e.column, Some(7));
    let e = &parse_source("x.yaml", &read("second_document.yaml"), &no_files).errors[0];
    assert_eq!(e.file, "x.yaml[doc 1]");
}

#[test]
fn the_valid_dags_load() {
    let bag = DagBag::load(&fixtures().join("valid"));
    assert!(bag.errors.is_empty(), "{:#?}", bag.errors);
    assert!(bag.warnings.is_empty(), "{:#?}", bag.warnings);
    let ids: Vec<&str> = bag.dags.keys().map(|d| d.as_str()).collect();
    assert_eq!(
        ids,
        vec!["daily_report", "multi_a", "multi_b", "nested_etl"]
    );
    let etl = &bag
        .dags
        .iter()
        .find(|(k, _)| k.as_str() == "nested_etl")
        .unwrap()
        .1;
    assert_eq!(etl.fileloc, "nested/etl.yaml");
    assert_eq!(etl.hash.len(), 64);
    assert!(etl.source.contains("dag_id: nested_etl"));
    let order: Vec<&str> = etl.dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(order, vec!["extract", "transform", "load", "done"]);
    let load = etl.dag.task("load").unwrap();
    assert_eq!(load.retries, 1);
    let with = load.args.to_literal_json();
    // `$f` content, the template's `env` merged one level deep with the task's.
    assert_eq!(with["bash_command"], "echo \"loading rows\"\n");
    assert_eq!(with["append_env"], true);
    assert_eq!(load.args.keys(), vec!["append_env", "env", "bash_command"]);
    assert_eq!(etl.dag.params["limit"], 100);
    // The same content hashes the same; a changed spec does not.
    let again = DagBag::load(&fixtures().join("valid"));
    let first = bag
        .dags
        .values()
        .map(|d| d.hash.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        first,
        again
            .dags
            .values()
            .map(|d| d.hash.clone())
            .collect::<Vec<_>>()
    );
    assert_ne!(first[0], first[1]);
}

#[test]
fn broken_files_do_not_take_valid_ones_down() {
    let bag = DagBag::load(&fixtures());
    let ids: Vec<&str> = bag.dags.keys().map(|d| d.as_str()).collect();
    assert_eq!(
        ids,
        vec!["daily_report", "multi_a", "multi_b", "nested_etl"]
    );
    let mut broken: Vec<String> = BROKEN
        .iter()
        .map(|(f, _, _)| format!("broken/{f}"))
        .collect();
    broken.sort();
    assert_eq!(bag.errors.keys().cloned().collect::<Vec<_>>(), broken);
    // The first document of `second_document.yaml` is fine but its file failed: no DAG.
    assert!(!ids.contains(&"second_document_ok"));
    // Missing `$schema` is a warning, and only `not_a_mapping.yaml` / ... lack it here.
    assert!(
        bag.warnings.keys().all(|k| k.starts_with("broken/")),
        "{:?}",
        bag.warnings
    );
}

#[test]
fn a_dag_id_in_two_files_is_an_error_on_the_later_file() {
    let dir = tempfile::tempdir().unwrap();
    let dag = "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json\ndag_id: same\n";
    std::fs::write(dir.path().join("a.yaml"), dag).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.yaml"), dag).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a DAG").unwrap();
    std::fs::write(dir.path().join("bad.yml"), [0xff, 0xfe, 0x00]).unwrap();
    let bag = DagBag::load(dir.path());
    assert_eq!(bag.dags.len(), 1);
    assert_eq!(bag.dags.values().next().unwrap().fileloc, "a.yaml");
    let e = &bag.errors["sub/b.yaml"][0];
    assert!(
        e.message
            .contains("dag_id `same` is already defined in `a.yaml`"),
        "{e}"
    );
    assert!(
        bag.errors["bad.yml"][0]
            .message
            .contains("cannot read the file"),
        "{:?}",
        bag.errors
    );
    assert_eq!(bag.errors.len(), 2);
}

#[test]
fn a_missing_folder_is_an_error_not_a_panic() {
    let bag = DagBag::load(Path::new("/nonexistent/updraft/dags"));
    assert!(bag.dags.is_empty());
    assert!(bag
        .errors
        .values()
        .flatten()
        .any(|e| e.message.contains("cannot read the DAGs folder")));
}

#[tokio::test]
async fn watch_signals_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let _watcher = super::load::watch(dir.path(), tx).unwrap();
    std::fs::write(dir.path().join("new.yaml"), "dag_id: x\n").unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
    assert_eq!(got.ok().flatten(), Some(()));
}
