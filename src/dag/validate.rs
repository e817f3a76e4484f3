//! One YAML document → one [`Dag`]: pure, apart from `$f` files read through a loader the
//! caller passes in (so tests need no disk). Every problem is collected, never just the first:
//! a user fixing a file wants the whole list in one go, each entry with line, column, task and
//! field, and a message that says what to write instead.
//!
//! Top-level keys live here; tasks and templates in [`super::task`], `with:` values and their
//! markers in [`super::args`], the graph in [`super::graph`].

use super::model::{Dag, DagId};
use super::read::{
    boolean, datetime, duration_in, int_in, is_callback, key_str, limits, opt, string, DagError,
    Report, Source,
};
use super::yaml::{Node, NodeKind};
use super::{graph, schedule, task};
use crate::core::Schedule;

/// The `$schema` version this build reads.
pub const SCHEMA_VERSION: &str = "2026-10-30";
/// The `$schema` value files should carry.
pub const SCHEMA_URL: &str = "https://airflow.apache.org/schemas/dag/2026-10-30.json";

/// What validating one document gives: the DAG when there were no errors.
#[derive(Debug, Default)]
pub struct Validated {
    pub dag: Option<Dag>,
    pub errors: Vec<DagError>,
    pub warnings: Vec<DagError>,
}

/// Validates one document.
pub fn validate_document(root: &Node, source: &Source<'_>) -> Validated {
    let mut r = Report::new(source.label.clone());
    let Some(entries) = root.as_map() else {
        r.error(
            root,
            "",
            format!(
                "a DAG document must be a mapping with `dag_id`, `tasks`, ...; this one is {}",
                root.type_name()
            ),
        );
        return Validated {
            dag: None,
            errors: r.errors,
            warnings: r.warnings,
        };
    };
    if let Some(name) = dag_factory_dag(entries) {
        r.error(
            root,
            "",
            format!(
                "this is a dag-factory file (top-level key `{name}` is a DAG name with \
                 `default_args`/`tasks` maps), not Airflow 3.4's YAML DAG format; updraft reads one \
                 DAG per document with `dag_id` and a `tasks` list. See \"Converting dag-factory \
                 files\" in the README"
            ),
        );
        return Validated {
            dag: None,
            errors: r.errors,
            warnings: r.warnings,
        };
    }
    let mut dag = Dag::new(
        DagId::parse("_").unwrap_or_else(|_| unreachable!("`_` is a valid id")),
        Vec::new(),
    );
    let mut dag_id: Option<DagId> = None;
    let mut saw_schema = false;
    let mut tasks_node = None;
    let mut templates_node = None;
    for (key, value) in entries {
        let Some(k) = key_str(&mut r, key) else {
            continue;
        };
        match k {
            "$schema" => {
                saw_schema = true;
                check_schema(&mut r, value);
            }
            "dag_id" => match value.as_str().map(DagId::parse) {
                Some(Ok(id)) => dag_id = Some(id),
                Some(Err(e)) => r.error(value, k, e),
                None => r.error(value, k, format!("`dag_id` must be a string, got {}", value.type_name())),
            },
            "schedule" => dag.schedule = parse_schedule(&mut r, value).unwrap_or(Schedule::Manual),
            "templates" => templates_node = Some(value),
            "tasks" => tasks_node = Some(value),
            "start_date" => dag.start_date = opt(value, |v| datetime(&mut r, v, k)),
            "end_date" => dag.end_date = opt(value, |v| datetime(&mut r, v, k)),
            "catchup" => dag.catchup = boolean(&mut r, value, k).unwrap_or(false),
            "description" => dag.description = opt(value, |v| string(&mut r, v, k)),
            "doc_md" => dag.doc_md = opt(value, |v| string(&mut r, v, k)),
            "tags" => dag.tags = tags(&mut r, value),
            "params" => dag.params = params(&mut r, value),
            "max_active_runs" => dag.max_active_runs = int_in(&mut r, value, k, limits::MAX_ACTIVE).unwrap_or(16),
            "max_active_tasks" => dag.max_active_tasks = int_in(&mut r, value, k, limits::MAX_ACTIVE).unwrap_or(16),
            "dagrun_timeout" => dag.dagrun_timeout = opt(value, |v| duration_in(&mut r, v, k, true)),
            "is_paused_upon_creation" => dag.is_paused_upon_creation = opt(value, |v| boolean(&mut r, v, k)),
            "default_args" => r.error(
                key,
                k,
                "`default_args` is not part of the YAML format (Airflow rejects it too); put shared task \
                 arguments in `templates:` and list them in each task's `extends:`",
            ),
            _ if is_callback(k) => r.error(
                key,
                k,
                format!("callbacks cannot be written in YAML DAGs (Airflow rejects them too); remove `{k}`"),
            ),
            _ if DAG_ARGS_IGNORED.contains(&k) => {}
            _ if DAG_ARGS_WARNED.contains(&k) => r.warning(
                Some(key),
                k,
                format!("`{k}` is an Airflow DAG argument updraft does not implement; it is ignored"),
            ),
            _ => r.error(
                key,
                k,
                format!(
                    "unknown top-level key `{k}`; DAG keys are `$schema`, `dag_id`, `schedule`, `start_date`, \
                     `end_date`, `catchup`, `description`, `tags`, `params`, `max_active_runs`, \
                     `max_active_tasks`, `dagrun_timeout`, `is_paused_upon_creation`, `doc_md`, \
                     `templates`, `tasks`"
                ),
            ),
        }
    }
    if !saw_schema {
        r.warning(
            Some(root),
            "$schema",
            format!(
                "no `$schema`; add `$schema: {SCHEMA_URL}` so Airflow 3.4 reads this file as well"
            ),
        );
    }
    if dag_id.is_none()
        && !r
            .errors
            .iter()
            .any(|e| e.field.as_deref() == Some("dag_id"))
    {
        r.error(
            root,
            "dag_id",
            "missing `dag_id`; add `dag_id: my_dag` (letters, digits, `_`, `.`, `-`)",
        );
    }
    if let Some(limit) = dag.schedule.active_runs_limit() {
        if dag.max_active_runs > limit {
            // As Airflow: the timetable's limit is checked against the DAG's setting, whose
            // default (16) is too high, so the file says `max_active_runs: 1` itself.
            let at = entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("max_active_runs"))
                .or_else(|| entries.iter().find(|(k, _)| k.as_str() == Some("schedule")))
                .map_or(root, |(_, v)| v);
            r.error(
                at,
                "max_active_runs",
                format!(
                    "`schedule: {}` allows at most {limit} active run (a new run starts when the previous one ends); \
                     set `max_active_runs: {limit}` (it is {})",
                    dag.schedule.display().unwrap_or_default(),
                    dag.max_active_runs
                ),
            );
        }
    }
    if let (Some(start), Some(end)) = (dag.start_date, dag.end_date) {
        if end < start {
            if let Some((_, node)) = entries.iter().find(|(k, _)| k.as_str() == Some("end_date")) {
                r.error(node, "end_date", "`end_date` is before `start_date`");
            }
        }
    }
    let mut drafts = task::validate_tasks(&mut r, tasks_node, templates_node, source);
    // Edges to tasks that failed validation were reported with the task itself (or are fine
    // and the task is broken); dropping them keeps the graph step to its own findings, cycles.
    let valid: std::collections::HashSet<String> =
        drafts.iter().map(|d| d.task.task_id.to_string()).collect();
    for d in &mut drafts {
        d.task.upstream.retain(|u| valid.contains(u.as_str()));
    }
    let positions: Vec<(String, Node)> = drafts
        .iter()
        .map(|d| (d.task.task_id.to_string(), d.at.clone()))
        .collect();
    match graph::build(drafts.into_iter().map(|d| d.task).collect()) {
        Ok(tasks) => dag.tasks = tasks,
        Err(errors) => {
            for e in errors {
                let first = match &e {
                    graph::GraphError::Cycle(path) => path.first(),
                    graph::GraphError::DuplicateTask(t) => Some(t),
                    graph::GraphError::UnknownUpstream { task, .. } => Some(task),
                };
                let at = first
                    .and_then(|t| positions.iter().find(|(id, _)| id == t.as_str()))
                    .map(|(_, n)| n)
                    .unwrap_or(root);
                r.task = first.map(|t| t.to_string());
                r.error(at, "needs", e.message());
            }
            r.task = None;
        }
    }
    let dag_id_text = dag_id.as_ref().map(|d| d.to_string());
    for e in r.errors.iter_mut().chain(r.warnings.iter_mut()) {
        e.dag_id = dag_id_text.clone();
    }
    let dag = match dag_id {
        Some(id) if r.errors.is_empty() => Some(Dag { dag_id: id, ..dag }),
        _ => None,
    };
    Validated {
        dag,
        errors: r.errors,
        warnings: r.warnings,
    }
}

/// dag-factory's layout: no `dag_id`, and some top-level value is a mapping holding
/// `default_args` or a `tasks` *mapping* (the YAML DAG format has a `tasks` list). Returns
/// that key, the DAG's name.
fn dag_factory_dag(entries: &[(Node, Node)]) -> Option<&str> {
    if entries.iter().any(|(k, _)| k.as_str() == Some("dag_id")) {
        return None;
    }
    entries.iter().find_map(|(k, v)| {
        let inner = v.as_map()?;
        let factory_like = inner.iter().any(|(ik, iv)| match ik.as_str() {
            Some("default_args") => true,
            Some("tasks") => iv.as_map().is_some(),
            _ => false,
        });
        factory_like.then_some(k.as_str()).flatten()
    })
}

/// Airflow DAG arguments that change nothing updraft does (display, UI, permissions).
pub(crate) const DAG_ARGS_IGNORED: &[&str] = &[
    "owner_links",
    "access_control",
    "dag_display_name",
    "default_view",
    "orientation",
    "auto_register",
    "disable_bundle_versioning",
    "jinja_environment_kwargs",
];

/// Airflow DAG arguments that would change behaviour in Airflow but updraft does not
/// implement: accepted so files stay portable, with a warning so nobody relies on them.
pub(crate) const DAG_ARGS_WARNED: &[&str] = &[
    "render_template_as_native_obj",
    "fail_fast",
    "user_defined_macros",
    "user_defined_filters",
    "template_searchpath",
    "template_undefined",
    "max_consecutive_failed_dag_runs",
    "deadline",
];

fn check_schema(r: &mut Report, value: &Node) {
    let text = match &value.kind {
        NodeKind::Str(s) | NodeKind::Date(s) => s.as_str(),
        _ => {
            r.error(
                value,
                "$schema",
                format!("`$schema` must be a string like `{SCHEMA_URL}`"),
            );
            return;
        }
    };
    if !text.contains(SCHEMA_VERSION) {
        r.error(
            value,
            "$schema",
            format!("unsupported `$schema` `{text}`: updraft reads format version {SCHEMA_VERSION}; use `{SCHEMA_URL}`"),
        );
    }
}

fn parse_schedule(r: &mut Report, value: &Node) -> Option<Schedule> {
    match &value.kind {
        NodeKind::Null => Some(Schedule::Manual),
        NodeKind::Str(s) => schedule::parse(s)
            .map_err(|e| r.error(value, "schedule", e))
            .ok(),
        NodeKind::Map(entries) if entries.iter().any(|(k, _)| k.as_str() == Some("uses")) => {
            let uses = entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("uses"))
                .and_then(|(_, v)| v.scalar_text());
            r.error(
                value,
                "schedule",
                format!(
                    "unsupported timetable `{}`: updraft supports cron strings (`0 3 * * *`), presets \
                     (`@daily`, `@once`, ...) and null",
                    uses.unwrap_or_default()
                ),
            );
            None
        }
        _ => {
            r.error(
                value,
                "schedule",
                format!(
                    "`schedule` must be a cron string like `0 3 * * *`, a preset like `@daily`, or null; got {}",
                    value.type_name()
                ),
            );
            None
        }
    }
}

fn tags(r: &mut Report, value: &Node) -> Vec<String> {
    match &value.kind {
        NodeKind::Null => Vec::new(),
        NodeKind::Seq(items) => items.iter().filter_map(|t| string(r, t, "tags")).collect(),
        _ => {
            r.error(
                value,
                "tags",
                format!(
                    "`tags` must be a list of strings, got {}",
                    value.type_name()
                ),
            );
            Vec::new()
        }
    }
}

/// `params`: name → default. Airflow's Param written as a mapping (`{default: 5, type: integer}`)
/// is reduced to its `default`.
fn params(r: &mut Report, value: &Node) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let Some(entries) = value.as_map() else {
        if !value.is_null() {
            r.error(
                value,
                "params",
                format!(
                    "`params` must be a mapping of name → default, got {}",
                    value.type_name()
                ),
            );
        }
        return out;
    };
    for (k, v) in entries {
        let Some(name) = key_str(r, k) else { continue };
        let default = v
            .as_map()
            .and_then(|m| m.iter().find(|(pk, _)| pk.as_str() == Some("default")))
            .map(|(_, d)| d)
            .unwrap_or(v);
        out.insert(name.to_string(), default.to_json());
    }
    out
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
