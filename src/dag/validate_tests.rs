//! Validation of single documents, through `parse_source` (no disk).

use crate::core::{Schedule, TriggerRule};
use crate::dag::load::{parse_source, ParsedFile};
use crate::dag::model::Arg;

const HEAD: &str = "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json\n";
const BASH: &str = "airflow.providers.standard.operators.bash.BashOperator";

fn no_files(p: &str) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no {p}"),
    ))
}

fn parse(src: &str) -> ParsedFile {
    parse_source("dags/x.yaml", src, &no_files)
}

fn ok(src: &str) -> crate::dag::Dag {
    let p = parse(src);
    assert!(p.errors.is_empty(), "{:#?}", p.errors);
    assert_eq!(p.dags.len(), 1);
    p.dags.into_iter().next().unwrap()
}

/// Every error message, as displayed.
fn errs(src: &str) -> Vec<String> {
    let p = parse(src);
    assert!(p.dags.is_empty(), "a file with errors must not give DAGs");
    p.errors.iter().map(|e| e.to_string()).collect()
}

fn has(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no `{needle}` in {errors:#?}"
    );
}

#[test]
fn a_full_valid_dag() {
    let src = r#"
dag_id: daily_report
schedule: "0 3 * * 1-5"
start_date: 2024-01-01
end_date: 2024-12-31T10:00:00+02:00
catchup: yes
description: Report
tags: [a, b]
params: {n: 5, p: {default: x, type: string}, d: 2024-01-02}
max_active_runs: 2
dagrun_timeout: 1h
is_paused_upon_creation: false
doc_md: hi
owner_links: {a: b}
templates:
  base: {retries: 2, retry_delay: 5m, with: {env: {A: '1'}}}
tasks:
  - id: publish
    uses: BASH
    needs: [extract]
    with:
      bash_command: {$t: 'echo {{ ti.xcom_pull("extract") }}'}
  - id: extract
    extends: [base]
    uses: BASH
    trigger_rule: all_done
    execution_timeout: 90
    with:
      bash_command: {$t: "extract.sh {{ ds }}"}
      cwd: {$const: {$t: x}}
  - id: z
    uses: airflow.providers.standard.operators.empty.EmptyOperator
    with: {}
"#;
    let dag = ok(&format!("{HEAD}{}", src.replace("BASH", BASH)));
    assert_eq!(dag.dag_id.as_str(), "daily_report");
    assert_eq!(
        dag.schedule,
        Schedule::Cron {
            expr: "0 3 * * 1-5".into(),
            cron: "0 0 3 * * 2,3,4,5,6".into()
        }
    );
    assert_eq!(
        dag.start_date.unwrap().to_rfc3339(),
        "2024-01-01T00:00:00+00:00"
    );
    assert_eq!(
        dag.end_date.unwrap().to_rfc3339(),
        "2024-12-31T08:00:00+00:00"
    );
    assert!(dag.catchup);
    assert_eq!(dag.tags, vec!["a", "b"]);
    assert_eq!(
        serde_json::Value::Object(dag.params.clone()),
        serde_json::json!({"n": 5, "p": "x", "d": "2024-01-02"})
    );
    assert_eq!(dag.max_active_runs, 2);
    assert_eq!(dag.max_active_tasks, 16);
    assert_eq!(dag.dagrun_timeout.unwrap().to_string(), "1h");
    assert_eq!(dag.is_paused_upon_creation, Some(false));
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, vec!["extract", "publish", "z"]);
    let extract = &dag.tasks[0];
    assert_eq!(extract.retries, 2);
    assert_eq!(extract.retry_delay.to_string(), "5m");
    assert_eq!(extract.trigger_rule, TriggerRule::AllDone);
    assert_eq!(extract.execution_timeout.unwrap().to_string(), "1m30s");
    assert_eq!(
        extract.downstream,
        vec![crate::dag::TaskId::parse("publish").unwrap()]
    );
    assert_eq!(extract.owner, "airflow");
    let Arg::Map(with) = &extract.args else {
        panic!()
    };
    let keys: Vec<&str> = with.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["env", "bash_command", "cwd"]);
    assert_eq!(with[1].1, Arg::Template("extract.sh {{ ds }}".into()));
    assert_eq!(with[2].1, Arg::Value(serde_json::json!({"$t": "x"})));
    let publish = dag.task("publish").unwrap();
    assert_eq!(publish.retries, 0);
    assert_eq!(
        publish.retry_delay,
        crate::dag::model::Task::default_retry_delay()
    );
    assert_eq!(dag.task("z").unwrap().args, Arg::empty_map());
}

#[test]
fn defaults_and_missing_schema_warning() {
    let p = parse("dag_id: d\n");
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("2026-10-30.json"));
    let dag = &p.dags[0];
    assert_eq!(dag.schedule, Schedule::Manual);
    assert!(!dag.catchup);
    assert_eq!((dag.max_active_runs, dag.max_active_tasks), (16, 16));
    assert!(dag.tasks.is_empty());
    assert_eq!(
        ok(&format!("{HEAD}dag_id: d\nschedule: '@once'\n")).schedule,
        Schedule::Once
    );
    assert_eq!(
        ok(&format!("{HEAD}dag_id: d\nschedule: null\n")).schedule,
        Schedule::Manual
    );
    // An unquoted date is accepted as the schema version too.
    assert!(parse("$schema: 2026-10-30\ndag_id: d\n")
        .warnings
        .is_empty());
}

#[test]
fn every_error_at_once_with_positions() {
    let src = format!(
        "{HEAD}dag_id: d\nschedule: '0 3 * *'\ncatchup: maybe\nfoo: 1\ndefault_args: {{}}\non_failure_callback: x\n\
         tasks:\n  - id: a\n    uses: {BASH}\n    retries: -1\n    retry_delay: 5x\n    trigger_rule: all_sucess\n    \
         with: {{bash_command: x, nope: 1}}\n  - id: a\n    uses: airflow.providers.amazon.aws.operators.s3.S3CreateBucketOperator\n"
    );
    let p = parse(&src);
    let lines: Vec<(Option<u32>, &str)> = p
        .errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(p.errors.len(), 11, "{lines:#?}");
    let at = |line: u32, needle: &str| {
        assert!(
            p.errors
                .iter()
                .any(|e| e.line == Some(line) && e.message.contains(needle)),
            "no `{needle}` on line {line}: {lines:#?}"
        )
    };
    at(3, "minute hour day-of-month month day-of-week");
    at(4, "true or false");
    at(5, "unknown top-level key `foo`");
    at(6, "templates");
    at(7, "callbacks");
    at(11, "from 0 to 10000");
    at(12, "invalid duration `5x`");
    at(13, "all_success");
    at(14, "unknown key `nope` for the bash operator");
    at(16, "unsupported operator");
    at(15, "already used by the task on line 9");
    let e = p
        .errors
        .iter()
        .find(|e| e.message.contains("nope"))
        .unwrap();
    assert_eq!(e.task_id.as_deref(), Some("a"));
    assert_eq!(e.field.as_deref(), Some("with.nope"));
    assert_eq!(e.dag_id.as_deref(), Some("d"));
    assert_eq!(e.column, Some(29));
}

#[test]
fn unsupported_operator_lists_the_supported_ones() {
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: airflow.providers.amazon.S3Operator\n"
    ));
    has(&e, "dags/x.yaml:5:11: task `a`: `uses`: unsupported operator `airflow.providers.amazon.S3Operator`");
    has(&e, BASH);
    has(&e, "updraft.empty");
}

#[test]
fn uses_and_run() {
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    run: {{x: 1}}\n"
    ));
    has(&e, "updraft runs only `uses:`");
    let e = errs(&format!("{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: {BASH}\n    run: {{x: 1}}\n    with: {{bash_command: x}}\n"));
    has(&e, "exactly one of `uses` and `run`");
    let e = errs(&format!("{HEAD}dag_id: d\ntasks:\n  - id: a\n"));
    has(&e, "no `uses`");
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - uses: {BASH}\n    with: {{bash_command: x}}\n"
    ));
    has(&e, "dags/x.yaml:4:5: `id`: this task has no `id`");
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: updraft.fetch\n"
    ));
    // The operator exists; its `with:` is checked at load time like any other.
    has(
        &e,
        "invalid arguments for the fetch operator: missing field `fields`",
    );
}

#[test]
fn markers() {
    let src = format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: up\n    uses: {BASH}\n    with: {{bash_command: x}}\n  - id: down\n    uses: {BASH}\n    \
         with:\n      bash_command: {{$template: 'a'}}\n      env:\n        A: {{$x: up}}\n        B: {{$xcom: {{task: up, key: k}}}}\n        \
         C: {{$f: ../sql/q.sql}}\n        D: [{{$t: '{{{{ ds }}}}'}}, 2024-01-01, 1]\n"
    );
    let loader = |p: &str| {
        assert_eq!(p, "sql/q.sql");
        Ok("select 1".to_string())
    };
    let parsed = parse_source("dags/x.yaml", &src, &loader);
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    let dag = &parsed.dags[0];
    let down = dag.task("down").unwrap();
    assert_eq!(
        down.upstream,
        vec![crate::dag::TaskId::parse("up").unwrap()]
    );
    let json = serde_json::to_value(&down.args).unwrap();
    let env = &json["v"][1][1]["v"];
    assert_eq!(
        env[1][1],
        serde_json::json!({"t": "x_com", "v": {"task": "up", "key": "k"}}),
        "{json}"
    );
    assert_eq!(
        env[2][1],
        serde_json::json!({"t": "value", "v": "select 1"})
    );
    assert_eq!(
        env[3][1]["v"],
        serde_json::json!([{"t": "template", "v": "{{ ds }}"}, {"t": "value", "v": "2024-01-01"}, {"t": "value", "v": 1}])
    );
}

#[test]
fn marker_errors() {
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: {BASH}\n    with:\n      bash_command: {{$tempalte: x}}\n      \
         env: {{A: {{$x: a}}, B: {{$x: nope}}, C: {{$t: x, $const: y}}, D: {{$f: /etc/passwd}}, E: {{$f: ../../x}}, \
         F: {{$t: '{{{{ ds '}}, G: {{$f: missing.txt}}, H: {{$xcom: {{key: k}}}}}}\n"
    ));
    has(
        &e,
        "dags/x.yaml:7:22: task `a`: `with.bash_command.$tempalte`: unknown marker `$tempalte`",
    );
    has(&e, "cannot read its own XCom");
    has(&e, "`$x` names `nope`, which is not a task");
    has(&e, "`$t` must be the only key in its mapping");
    has(&e, "`$f` path `/etc/passwd` must be relative");
    has(&e, "leaves the DAGs folder");
    has(&e, "invalid template");
    has(
        &e,
        "cannot read `$f` file `missing.txt` (`dags/missing.txt`",
    );
    has(&e, "`$xcom` needs a `task`");
    assert_eq!(e.len(), 10, "{e:#?}");
}

#[test]
fn needs_errors_and_cycles() {
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: {BASH}\n    with: {{bash_command: x}}\n    needs: [a, zz]\n"
    ));
    has(
        &e,
        "dags/x.yaml:7:13: task `a`: `needs`: task `a` cannot need itself",
    );
    has(
        &e,
        "`needs` names `zz`, which is not a task in this DAG; tasks are: a",
    );
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: {BASH}\n    with: {{bash_command: {{$x: b}}}}\n  \
         - id: b\n    uses: {BASH}\n    needs: [a]\n    with: {{bash_command: x}}\n"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    has(
        &e,
        "dags/x.yaml:4:9: task `a`: `needs`: tasks depend on each other in a cycle: a → b → a",
    );
}

#[test]
fn templates_and_extends() {
    let src = format!(
        "{HEAD}dag_id: d\ntemplates:\n  base: {{retries: 1, owner: o, with: {{env: {{A: '1'}}, cwd: /a}}}}\n  \
         more: {{extends: [base], retries: 3, with: {{cwd: /b}}}}\n  other: {{pool: p, retries: 7}}\n\
         tasks:\n  - id: a\n    extends: [more, other]\n    uses: {BASH}\n    with: {{bash_command: x}}\n"
    );
    let dag = ok(&src);
    let a = &dag.tasks[0];
    assert_eq!(
        (a.retries, a.owner.as_str(), a.pool.as_deref()),
        (7, "o", Some("p"))
    );
    assert_eq!(
        a.args.to_literal_json(),
        serde_json::json!({"env": {"A": "1"}, "cwd": "/b", "bash_command": "x"})
    );
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntemplates:\n  x: {{extends: [y]}}\n  y: {{extends: [x]}}\n  s: 5\ntasks:\n  \
         - id: a\n    extends: [nope, s]\n    uses: {BASH}\n    with: {{bash_command: x}}\n"
    ));
    has(&e, "templates extend each other in a cycle: x → y → x");
    has(&e, "template `s` must be a mapping");
    has(&e, "dags/x.yaml:9:15: task `a`: `extends`: this task extends unknown template `nope`; templates are: x, y, s");
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn document_shapes() {
    has(&errs("- a\n- b\n"), "a DAG document must be a mapping");
    has(
        &errs(&format!("{HEAD}dag_id: d\ntasks: {{a: {{uses: x}}}}\n")),
        "`tasks` must be a list",
    );
    has(
        &errs(&format!(
            "{HEAD}dag_id: d\nschedule: {{uses: my.Timetable, with: {{}}}}\n"
        )),
        "unsupported timetable `my.Timetable`",
    );
    has(
        &errs("$schema: https://airflow.apache.org/schemas/dag/2025-01-01.json\ndag_id: d\n"),
        "unsupported `$schema`",
    );
    has(
        &errs(&format!("{HEAD}description: x\n")),
        "missing `dag_id`",
    );
    has(&errs(&format!("{HEAD}dag_id: 'a b'\n")), "contains ` `");
    has(
        &errs(&format!("{HEAD}dag_id: d\nyes: 1\n")),
        "YAML 1.1 reads unquoted yes/no/on/off as booleans",
    );
    let p = parse(&format!("{HEAD}dag_id: d\nfail_fast: true\ntasks:\n  - id: a\n    uses: {BASH}\n    depends_on_past: true\n    priority_weight: 3\n    with: {{bash_command: x}}\n"));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
}

#[test]
fn documents_in_one_file() {
    let p = parse(&format!("{HEAD}dag_id: a\n---\n---\n{HEAD}dag_id: b\n"));
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.dags.len(), 2);
    let e = errs(&format!("{HEAD}dag_id: a\n---\n{HEAD}dag_id: a\n"));
    has(
        &e,
        "dags/x.yaml[doc 1]:5:9: `dag_id`: dag_id `a` is already defined by document 0",
    );
    // One broken document takes the whole file down, as a failed import does in Airflow.
    let e = errs(&format!(
        "{HEAD}dag_id: a\n---\n{HEAD}dag_id: b\ncatchup: 3\n"
    ));
    has(
        &e,
        "dags/x.yaml[doc 1]:6:10: `catchup`: `catchup` must be true or false",
    );
}

#[test]
fn a_broken_upstream_is_not_reported_twice() {
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: {BASH}\n    retries: x\n  - id: b\n    uses: {BASH}\n    needs: [a]\n    with: {{bash_command: x}}\n"
    ));
    // `a` is broken (bad retries, no bash_command); `b` needing it must not add a graph error.
    assert!(e.iter().all(|m| m.contains("task `a`")), "{e:#?}");
}

#[test]
fn crlf_and_bom_are_fine() {
    let src = format!("\u{feff}{HEAD}dag_id: d\r\ntasks:\r\n  - id: a\r\n    uses: {BASH}\r\n    with: {{bash_command: x}}\r\n");
    let dag = ok(&src);
    assert_eq!(dag.tasks.len(), 1);
    assert!(parse("").dags.is_empty() && parse("").errors.is_empty());
    has(
        &errs(&format!(
            "{HEAD}dag_id: d\ntasks:\n  - id: a\n    uses: {BASH}\n    with: {{$const: {{}}}}\n"
        )),
        "`with` itself cannot be a marker",
    );
}

#[test]
fn retry_exponential_backoff_is_a_multiplier() {
    let src = |v: &str| {
        format!(
            "{HEAD}dag_id: d\ntasks:\n  - id: t\n    uses: {BASH}\n    retry_exponential_backoff: {v}\n    with: {{bash_command: x}}\n"
        )
    };
    let backoff = |v: &str| ok(&src(v)).tasks[0].retry_exponential_backoff;
    assert_eq!(backoff("true"), 2.0, "Airflow serialises true as 2.0");
    assert_eq!(backoff("false"), 0.0);
    assert_eq!(backoff("1.5"), 1.5);
    assert_eq!(backoff("3"), 3.0);
    has(&errs(&src("-1")), "dags/x.yaml:6:");
    has(&errs(&src("fast")), "multiplier");
}

#[path = "validate_range_tests.rs"]
mod ranges;
