//! Unit tests of rendering with a small context (the Airflow corpus is in `corpus_tests`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::*;
use crate::dag::TaskId;

/// Variables, connections and XComs from maps.
#[derive(Default)]
pub struct MapData {
    pub variables: HashMap<String, String>,
    pub connections: HashMap<String, ConnectionInfo>,
    /// (run_id, task_id, key, value), newest run last.
    pub xcoms: Vec<(String, String, String, serde_json::Value)>,
}

impl TemplateData for MapData {
    fn variable(&self, key: &str) -> Result<Option<String>, LookupError> {
        Ok(self.variables.get(key).cloned())
    }
    fn connection(&self, conn_id: &str) -> Result<Option<ConnectionInfo>, LookupError> {
        Ok(self.connections.get(conn_id).cloned())
    }
    fn xcoms(&self, q: &XComQuery) -> Result<Vec<XComHit>, LookupError> {
        Ok(self
            .xcoms
            .iter()
            .rev()
            .filter(|(run, task, key, _)| {
                (q.include_prior_dates || *run == q.run_id)
                    && q.task_ids.contains(task)
                    && *key == q.key
            })
            .map(|(_, t, _, v)| (t.clone(), v.clone()))
            .collect())
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn facts() -> Facts {
    let conf: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"who": "me"})).unwrap();
    let dag_params = vec![("n".to_string(), serde_json::json!(3))];
    Facts {
        params: Facts::resolve_params(&dag_params, &conf),
        dag: DagFacts {
            dag_id: "d".into(),
            params: dag_params,
            ..Default::default()
        },
        task: TaskFacts {
            task_id: "t".into(),
            class_path: "airflow.providers.standard.operators.bash.BashOperator".into(),
            ..Default::default()
        },
        run: RunFacts {
            run_id: "manual__2024-01-01T00:00:00+00:00".into(),
            run_type: "manual".into(),
            state: "running".into(),
            logical_date: Some(at("2024-01-01T00:00:00Z")),
            data_interval_start: Some(at("2024-01-01T00:00:00Z")),
            data_interval_end: Some(at("2024-01-01T00:00:00Z")),
            conf,
            ..Default::default()
        },
        ti: TiFacts {
            try_number: 1,
            max_tries: 1,
            map_index: -1,
            hostname: "h".into(),
            start_date: None,
        },
        prev_success: None,
    }
}

fn renderer(limits: Limits) -> Renderer {
    let mut data = MapData::default();
    data.variables.insert("region".into(), "eu".into());
    data.xcoms.push((
        "manual__2024-01-01T00:00:00+00:00".into(),
        "up".into(),
        "return_value".into(),
        serde_json::json!({"rows": 42}),
    ));
    Renderer::new(&facts(), Arc::new(data), limits, at("2024-01-02T00:00:00Z"))
}

#[test]
fn resolves_templates_and_xcom_markers() {
    let arg = Arg::Map(vec![
        (
            "a".into(),
            Arg::Template("{{ ds }} {{ ds_nodash }} {{ params.n }} {{ dag_run.conf.who }}".into()),
        ),
        (
            "b".into(),
            Arg::Template(
                "{{ var.value.region }} {{ macros.ds_add(ds, 1) }} {{ ti.try_number }} {{ ti.xcom_pull('up').rows }}"
                    .into(),
            ),
        ),
        (
            "c".into(),
            Arg::XCom {
                task: TaskId::parse("up").unwrap(),
                key: "return_value".into(),
            },
        ),
        (
            "d".into(),
            Arg::XCom {
                task: TaskId::parse("gone").unwrap(),
                key: "return_value".into(),
            },
        ),
    ]);
    let mut xcoms = XComs::new();
    xcoms.insert(
        ("up".into(), "return_value".into()),
        serde_json::json!([1, 2]),
    );
    let out = renderer(Limits::default()).resolve(&arg, &xcoms).unwrap();
    assert_eq!(
        out,
        serde_json::json!({"a": "2024-01-01 20240101 3 me", "b": "eu 2024-01-02 1 42", "c": [1, 2], "d": null})
    );
}

#[test]
fn undefined_names_fail_with_the_name() {
    let err = renderer(Limits::default())
        .resolve(&Arg::Template("{{ nope }}".into()), &XComs::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("{{ nope }}"), "{err}");
    assert!(err.contains("UndefinedError: 'nope' is undefined"), "{err}");
}

#[test]
fn a_long_loop_runs_out_of_fuel_and_big_output_is_refused() {
    let r = renderer(Limits {
        fuel: 100_000,
        max_output: 1 << 20,
    });
    let err = r
        .render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
        .unwrap_err();
    assert_eq!(err.class, "TemplateTooLong", "{err}");
    let err = r.render("{{ 'x' * 100000000 }}").unwrap_err();
    assert_eq!(err.class, "OutputTooLarge", "{err}");
    let err = r
        .render("{% for i in range(1000) %}{{ 'y' * 10000 }}{% endfor %}")
        .unwrap_err();
    assert_eq!(err.class, "OutputTooLarge", "{err}");
    assert_eq!(r.render("{{ 'ok' }}").unwrap(), "ok");
}

/// A render that would run long is stopped at the deadline, off the runtime: a short task
/// beside it is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_render_stops_at_its_deadline_without_blocking_others() {
    // Enough fuel to outlast the deadline by far, yet finite: the given-up thread ends by
    // itself (and the test runtime, which waits for it on shutdown, with it).
    let slow = renderer(Limits {
        fuel: 5_000_000,
        max_output: 1 << 20,
    });
    let loop_forever = Arg::Template(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}".into(),
    );
    let started = Instant::now();
    let slow_task = tokio::spawn(slow.resolve_async(
        loop_forever,
        XComs::new(),
        Some(Duration::from_millis(300)),
    ));
    // Meanwhile a quick render and a timer on the runtime go on as usual.
    let quick = renderer(Limits::default())
        .resolve_async(Arg::Template("{{ ds }}".into()), XComs::new(), None)
        .await
        .unwrap();
    assert_eq!(quick, serde_json::json!("2024-01-01"));
    let tick = Instant::now();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(tick.elapsed() < Duration::from_millis(200));
    let err = slow_task.await.unwrap().unwrap_err();
    assert!(matches!(err, RenderError::TimedOut(_)), "{err}");
    assert!(err.to_string().contains("execution_timeout"), "{err}");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn the_context_has_exactly_the_names_validation_knows() {
    let ctx = context::build(&facts(), Arc::new(MapData::default()), Utc::now());
    let mut keys: Vec<String> = ctx.try_iter().unwrap().map(|k| k.to_string()).collect();
    keys.sort();
    let mut want: Vec<String> = crate::dag::template::CONTEXT_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.sort();
    assert_eq!(keys, want);
}
