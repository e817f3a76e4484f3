//! The template corpus rendered by Airflow 3.3.2 itself (`tests/fixtures/airflow/
//! template_corpus.json`, made by `scripts/airflow-fixtures/render_templates.py`), rendered
//! again here with the same context and compared case by case.
//!
//! A case must give Airflow's text; an error case must fail with Airflow's exception class
//! and message. The few cases updraft deliberately renders differently are listed in
//! [`DIFFERENT`] with the reason (and in the README's "Where updraft differs from Airflow").

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::*;

/// Cases updraft renders differently on purpose, with why. A listed case must still differ
/// (so the list cannot go stale) unless marked `Same class`, where only the error text
/// differs.
const DIFFERENT: &[(&str, &str)] = &[
    (
        "{{ dag.default_args }}",
        "YAML DAGs have no default_args (Airflow 3.4's YAML format rejects them), so it is {}",
    ),
    (
        "{{ ti.xcom_pull(task_ids='fan_out', map_indexes=1) }}",
        "updraft has no mapped tasks: every XCom has map index -1",
    ),
    (
        "{{ ti.xcom_pull(task_ids='fan_out', map_indexes=[2, 0]) }}",
        "updraft has no mapped tasks: every XCom has map index -1",
    ),
    (
        "{% set l = [] %}{% do l.append(1) %}{% do l.append(2) %}{{ l }}",
        "lists are values in updraft's templates; mutating methods fail (use `+` or namespace())",
    ),
    (
        "{% set d = {} %}{% do d.update({'a': 1}) %}{{ d }}",
        "dicts are values in updraft's templates; mutating methods fail (use filters or namespace())",
    ),
];

/// Error cases where updraft fails with Airflow's exception class but another message:
/// minijinja's parser words syntax errors its own way.
const SAME_CLASS_OTHER_TEXT: &[&str] = &["TemplateSyntaxError"];

fn fixture() -> Json {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/airflow/template_corpus.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn at(v: &Json) -> Option<DateTime<Utc>> {
    v.as_str()
        .map(|s| DateTime::parse_from_rfc3339(s).unwrap().to_utc())
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn pairs(v: &Json) -> Vec<(String, Json)> {
    match v {
        Json::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Json::Array(a) => a
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The fixture's variables, connections and XComs, looked up as Airflow's env-var secrets
/// backend and its XCom API do.
struct FixtureData {
    variables: HashMap<String, String>,
    connections: HashMap<String, String>,
    /// (run_id, task_id, map_index, key, value).
    xcoms: Vec<(String, String, i64, String, Json)>,
    /// run_id → coalesce(logical_date, run_after).
    run_dates: HashMap<String, DateTime<Utc>>,
    dag_id: String,
}

impl TemplateData for FixtureData {
    fn variable(&self, key: &str) -> Result<Option<String>, LookupError> {
        Ok(self.variables.get(&key.to_uppercase()).cloned())
    }
    fn connection(&self, conn_id: &str) -> Result<Option<ConnectionInfo>, LookupError> {
        Ok(self
            .connections
            .get(&conn_id.to_uppercase())
            .map(|v| ConnectionInfo::from_env(conn_id, v).unwrap()))
    }
    fn xcoms(&self, q: &XComQuery) -> Result<Vec<XComHit>, LookupError> {
        if q.dag_id != self.dag_id {
            return Ok(Vec::new());
        }
        let me = self.run_dates[&q.run_id];
        let mut hits: Vec<&(String, String, i64, String, Json)> = self
            .xcoms
            .iter()
            .filter(|(run, task, _, key, _)| {
                q.task_ids.contains(task)
                    && *key == q.key
                    && if q.include_prior_dates {
                        self.run_dates[run] <= me
                    } else {
                        *run == q.run_id
                    }
            })
            .collect();
        hits.sort_by_key(|(run, _, map_index, _, _)| {
            (std::cmp::Reverse(self.run_dates[run]), *map_index)
        });
        Ok(hits
            .into_iter()
            .map(|(_, t, _, _, v)| (t.clone(), v.clone()))
            .collect())
    }
}

fn facts_of(f: &Json, name: &str) -> Facts {
    let c = &f["context"];
    let d = &c["dag"];
    let t = &c["tasks"]["render"];
    let ti = &c["task_instances"][name];
    let run = &ti["dag_run"];
    let prev = &ti["prev_success"];
    let has_prev = prev.as_object().unwrap().values().any(|v| !v.is_null());
    Facts {
        dag: DagFacts {
            dag_id: d["dag_id"].as_str().unwrap().into(),
            description: d["description"].as_str().map(Into::into),
            owner: d["owner"].as_str().unwrap().into(),
            tags: strings(&d["tags"]),
            catchup: d["catchup"].as_bool().unwrap(),
            max_active_runs: d["max_active_runs"].as_i64().unwrap(),
            max_active_tasks: d["max_active_tasks"].as_i64().unwrap(),
            dagrun_timeout: d["dagrun_timeout"].as_f64(),
            start_date: at(&d["start_date"]),
            end_date: None,
            doc_md: d["doc_md"].as_str().map(Into::into),
            schedule: d["schedule"].as_str().map(Into::into),
            task_ids: strings(&d["task_ids"]),
            params: pairs(&d["params"]),
        },
        task: TaskFacts {
            task_id: "render".into(),
            class_path: "fixtures.TemplatedOp".into(),
            owner: t["owner"].as_str().unwrap().into(),
            retries: t["retries"].as_i64().unwrap(),
            retry_delay: t["retry_delay_seconds"].as_f64().unwrap(),
            retry_exponential_backoff: t["retry_exponential_backoff"].as_f64().unwrap(),
            max_retry_delay: t["max_retry_delay"].as_f64(),
            execution_timeout: t["execution_timeout"].as_f64(),
            queue: t["queue"].as_str().unwrap().into(),
            pool: t["pool"].as_str().unwrap().into(),
            priority_weight: t["priority_weight"].as_i64().unwrap(),
            trigger_rule: t["trigger_rule"].as_str().unwrap().into(),
            depends_on_past: t["depends_on_past"].as_bool().unwrap(),
            doc_md: t["doc_md"].as_str().map(Into::into),
            // In Airflow's insertion order (the fixture's objects are key-sorted).
            params: pairs(&f["params_resolved"][name])
                .into_iter()
                .filter(|(k, _)| t["params"].get(k).is_some())
                .map(|(k, _)| (k.clone(), t["params"][&k].clone()))
                .collect(),
            upstream: strings(&t["upstream_task_ids"]),
            downstream: strings(&t["downstream_task_ids"]),
        },
        run: RunFacts {
            run_id: run["run_id"].as_str().unwrap().into(),
            run_type: run["run_type"].as_str().unwrap().into(),
            state: run["state"].as_str().unwrap().into(),
            logical_date: at(&run["logical_date"]),
            data_interval_start: at(&run["data_interval_start"]),
            data_interval_end: at(&run["data_interval_end"]),
            run_after: at(&run["run_after"]),
            start_date: at(&run["start_date"]),
            end_date: at(&run["end_date"]),
            queued_at: None,
            conf: run["conf"].as_object().unwrap().clone(),
            clear_number: 0,
        },
        ti: TiFacts {
            try_number: ti["try_number"].as_i64().unwrap(),
            max_tries: ti["max_tries"].as_i64().unwrap(),
            map_index: ti["map_index"].as_i64().unwrap(),
            hostname: ti["hostname"].as_str().unwrap().into(),
            start_date: at(&ti["ti_start_date"]),
        },
        params: pairs(&f["params_resolved"][name]),
        prev_success: has_prev.then(|| PrevSuccess {
            data_interval_start: at(&prev["prev_data_interval_start_success"]),
            data_interval_end: at(&prev["prev_data_interval_end_success"]),
            start_date: at(&prev["prev_start_date_success"]),
            end_date: at(&prev["prev_end_date_success"]),
        }),
    }
}

fn data_of(f: &Json) -> FixtureData {
    let c = &f["context"];
    let env = |k: &str, prefix: &str| -> HashMap<String, String> {
        c[k].as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.trim_start_matches(prefix).to_string(),
                    v.as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    FixtureData {
        variables: env("variables_env", "AIRFLOW_VAR_"),
        connections: env("connections_env", "AIRFLOW_CONN_"),
        xcoms: c["xcoms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["run_id"].as_str().unwrap().into(),
                    x["task_id"].as_str().unwrap().into(),
                    x["map_index"].as_i64().unwrap(),
                    x["key"].as_str().unwrap().into(),
                    x["value"].clone(),
                )
            })
            .collect(),
        run_dates: c["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let d = at(&r["logical_date"]).or(at(&r["run_after"])).unwrap();
                (r["run_id"].as_str().unwrap().to_string(), d)
            })
            .collect(),
        dag_id: c["dag"]["dag_id"].as_str().unwrap().into(),
    }
}

#[test]
fn renders_as_airflow_does() {
    let f = fixture();
    let data: Arc<dyn TemplateData> = Arc::new(data_of(&f));
    let now = DateTime::parse_from_rfc3339("2024-03-05T06:10:02Z")
        .unwrap()
        .to_utc();
    let renderers: HashMap<&str, Renderer> = ["main", "first_run", "null_logical_date"]
        .into_iter()
        .map(|n| {
            (
                n,
                Renderer::new(&facts_of(&f, n), data.clone(), Limits::default(), now),
            )
        })
        .collect();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 500, "{}", cases.len());
    let mut wrong = Vec::new();
    let mut listed_but_same = Vec::new();
    for case in cases {
        let expr = case["expr"].as_str().unwrap();
        let ctx = case["context"].as_str().unwrap();
        let got = renderers[ctx].render(expr);
        let problem = match (case.get("expected").and_then(Json::as_str), &got) {
            (Some(want), Ok(out)) if out == want => None,
            (Some(want), Ok(out)) => Some(format!("want {want:?}\n      got  {out:?}")),
            (Some(want), Err(e)) => Some(format!("want {want:?}\n      got  error {e}")),
            (None, Ok(out)) => Some(format!(
                "want error {}: {}\n      got  {out:?}",
                case["error"], case["message"]
            )),
            (None, Err(e)) => {
                let class = case["error"].as_str().unwrap();
                let message = case["message"].as_str().unwrap();
                let text_differs =
                    !e.message.contains(message) && !SAME_CLASS_OTHER_TEXT.contains(&class);
                if e.class != class || text_differs {
                    Some(format!(
                        "want error {class}: {message}\n      got  error {e}"
                    ))
                } else {
                    None
                }
            }
        };
        let listed = DIFFERENT.iter().any(|(e, _)| *e == expr);
        match (problem, listed) {
            (Some(p), false) => wrong.push(format!("[{ctx}] {expr}\n      {p}")),
            (None, true) => listed_but_same.push(expr.to_string()),
            _ => {}
        }
    }
    assert!(
        listed_but_same.is_empty(),
        "listed as different but rendered as Airflow does (remove from DIFFERENT): {listed_but_same:#?}"
    );
    assert!(
        wrong.is_empty(),
        "{} of {} cases render differently from Airflow:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}
