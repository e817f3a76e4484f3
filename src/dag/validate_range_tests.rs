//! Numeric ranges, and the format's forms that used to be rejected.

use super::*;

/// Every numeric DAG and task field has a range, checked here with file:line:col, instead of
/// failing later in Postgres or never running. Each case: `(line, what is written, message)`.
#[test]
fn numbers_out_of_range_are_errors_with_positions() {
    let cases = [
        (
            "max_active_runs: 3000000000",
            "`max_active_runs` must be a whole number from 1 to 100000; got `3000000000`",
        ),
        (
            "max_active_runs: 0",
            "`max_active_runs` must be a whole number from 1 to 100000; got `0`",
        ),
        (
            "max_active_tasks: 3000000000",
            "`max_active_tasks` must be a whole number from 1 to 100000",
        ),
        (
            "max_active_tasks: 0",
            "`max_active_tasks` must be a whole number from 1 to 100000; got `0`",
        ),
        (
            "max_active_tasks: -1",
            "`max_active_tasks` must be a whole number from 1 to 100000; got `-1`",
        ),
        (
            "dagrun_timeout: 99999999999999999999",
            "at most 36500d (100 years)",
        ),
        (
            "dagrun_timeout: 0",
            "`dagrun_timeout` must be longer than zero",
        ),
        ("dagrun_timeout: 36501d", "at most 36500d (100 years)"),
        (
            "start_date: '10000-01-01T00:00:00Z'",
            "`start_date` must be a date like",
        ),
        (
            "start_date: '0000-01-01T00:00:00Z'",
            "`start_date` must be a date between the years 1 and 9999",
        ),
        ("end_date: '+99999-01-01'", "`end_date` must be a date"),
    ];
    for (line, message) in cases {
        let src = format!("{HEAD}dag_id: d\n{line}\ntasks:\n  - id: t\n    uses: {BASH}\n    with: {{bash_command: x}}\n");
        let e = errs(&src);
        assert_eq!(e.len(), 1, "{line}: {e:#?}");
        assert!(e[0].starts_with("dags/x.yaml:3:"), "{line}: {}", e[0]);
        has(&e, message);
    }
    let task_cases = [
        (
            "retries: 3000000000",
            "`retries` must be a whole number from 0 to 10000; got `3000000000`",
        ),
        (
            "retries: -1",
            "`retries` must be a whole number from 0 to 10000",
        ),
        ("retry_delay: 1e20", "at most 36500d (100 years)"),
        (
            "max_retry_delay: 99999999999999999999",
            "at most 36500d (100 years)",
        ),
        (
            "execution_timeout: 99999999999999999999",
            "at most 36500d (100 years)",
        ),
        (
            "execution_timeout: 0s",
            "`execution_timeout` must be longer than zero",
        ),
        ("retry_exponential_backoff: 1e300", "between 0 and 1000000"),
    ];
    for (line, message) in task_cases {
        let src = format!("{HEAD}dag_id: d\ntasks:\n  - id: t\n    uses: {BASH}\n    {line}\n    with: {{bash_command: x}}\n");
        let e = errs(&src);
        assert_eq!(e.len(), 1, "{line}: {e:#?}");
        assert!(e[0].starts_with("dags/x.yaml:6:"), "{line}: {}", e[0]);
        assert!(e[0].contains("task `t`"), "{}", e[0]);
        has(&e, message);
    }
    // The ends of each range are fine.
    let d = ok(&format!("{HEAD}dag_id: d\nmax_active_runs: 100000\nmax_active_tasks: 1\ndagrun_timeout: 36500d\nstart_date: 0001-01-01\nend_date: 9999-12-31\ntasks:\n  - id: t\n    uses: {BASH}\n    retries: 10000\n    retry_delay: 0\n    execution_timeout: 1ms\n    with: {{bash_command: x}}\n"));
    assert_eq!((d.max_active_runs, d.max_active_tasks), (100_000, 1));
    assert_eq!(d.tasks[0].retries, 10_000);
}

/// Operator numbers that would exhaust a worker (a `Vec` of 4 billion records, a timeout too
/// large for a `Duration`) are refused when the file loads.
#[test]
fn operator_numbers_out_of_range_are_errors() {
    let cases = [
        (
            "updraft.fetch",
            "{fields: {id: id}, results: 4000000000}",
            "with.results",
            "at most 1000000",
        ),
        (
            "updraft.fetch",
            "{fields: {id: id}, concurrency: 1000000}",
            "with.concurrency",
            "between 1 and 64",
        ),
        (
            "updraft.fetch",
            "{fields: {id: id}, timeout: 99999999999999999999}",
            "with",
            "at most 36500d",
        ),
        (
            "updraft.sink",
            "{batch_size: 1000000000}",
            "with.batch_size",
            "at most 100000",
        ),
        (
            "updraft.http",
            "{endpoint: x, extra_options: {timeout: 1e300}}",
            "with.extra_options.timeout",
            "at most 86400",
        ),
    ];
    for (uses, with, field, message) in cases {
        let src =
            format!("{HEAD}dag_id: d\ntasks:\n  - id: t\n    uses: {uses}\n    with: {with}\n");
        let p = parse(&src);
        assert!(
            p.errors
                .iter()
                .any(|e| e.field.as_deref() == Some(field) && e.message.contains(message)),
            "{uses} {with}: {:#?}",
            p.errors
        );
    }
}

/// The format's differences the compatibility issue listed, each as Airflow reads them.
#[test]
fn airflow_forms_that_used_to_be_rejected() {
    let d = ok(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: up\n    uses: {BASH}\n    with: {{bash_command: x}}\n  \
         - id: t\n    uses: {BASH}\n    execution_timeout: \"00:05:00\"\n    \
         with:\n      bash_command: {{$t: x}}\n      output_encoding: latin-1\n      \
         env: {{A: {{$x: {{task: up, key: null}}}}}}\n"
    ));
    let t = d.task("t").unwrap();
    assert_eq!(
        t.execution_timeout,
        Some(crate::core::Duration::from_secs(300))
    );
    let Arg::Map(with) = &t.args else { panic!() };
    let env = &with.iter().find(|(k, _)| k == "env").unwrap().1;
    let Arg::Map(env) = env else {
        panic!("{env:?}")
    };
    assert!(
        matches!(&env[0].1, Arg::XCom { task, key } if task.as_str() == "up" && key == "return_value"),
        "{env:?}"
    );
}

#[test]
fn a_dag_factory_file_says_what_it_is() {
    let e = errs(
        "default:\n  default_args:\n    owner: me\nexample_dag:\n  default_args:\n    start_date: 2024-01-01\n  \
         schedule_interval: '0 3 * * *'\n  tasks:\n    task_1:\n      operator: airflow.operators.bash.BashOperator\n      \
         bash_command: echo 1\n",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    has(&e, "dag-factory file");
    has(&e, "Converting dag-factory files");
    has(&e, "dags/x.yaml:1:1");
}

#[test]
fn a_template_reading_a_name_the_context_lacks_is_an_error() {
    let e = errs(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: t\n    uses: {BASH}\n    with:\n      bash_command: {{$t: 'echo {{{{ ds }}}} {{{{ execution_date }}}}'}}\n"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    has(&e, "dags/x.yaml:7:");
    has(&e, "`execution_date` (template line 1, column 18)");
    has(&e, "not in Airflow's template context");
    // Names the template sets itself or guards are fine.
    ok(&format!(
        "{HEAD}dag_id: d\ntasks:\n  - id: t\n    uses: {BASH}\n    with:\n      bash_command: {{$t: '{{% set x = 1 %}}{{{{ x }}}}{{{{ maybe | default(1) }}}}'}}\n"
    ));
}
