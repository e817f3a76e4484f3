//! `with:` values → [`Arg`] trees. Everything is literal unless wrapped in a marker: a mapping
//! whose single key is `$t`/`$template`, `$x`/`$xcom`, `$const` or `$f`. Any other key that
//! starts with `$` is an error rather than literal data, because a typo like `$tempalte` would
//! otherwise silently send the marker itself to the operator.
//!
//! Templates are checked here for syntax (minijinja's parser, as at run time) and for names
//! Airflow's context does not have (see [`super::template`]); `$f` files are read now,
//! through the loader, so a run never depends on a file that changed after the DAG loaded.

use std::collections::HashSet;
use std::path::{Component, Path};

use super::model::{Arg, TaskId};
use super::read::{key_str, Loader, Report};
use super::yaml::{Node, NodeKind};

const MARKERS: [&str; 6] = ["$t", "$template", "$x", "$xcom", "$const", "$f"];
const MARKER_LIST: &str = "`$t`/`$template`, `$x`/`$xcom`, `$const`, `$f`";

/// What marker conversion needs to know about the task and the DAG around it.
pub(crate) struct ArgScope<'a> {
    /// The task being validated (an `$xcom` of itself is an error).
    pub this: Option<&'a TaskId>,
    /// Every task id in the document.
    pub ids: &'a HashSet<String>,
    /// The DAG file's path relative to the DAGs folder; `$f` paths are relative to its folder.
    pub rel_path: &'a str,
    pub loader: Loader<'a>,
}

/// A task's `with:` (null means no arguments). Always returns an [`Arg::Map`].
pub(crate) fn convert_with(r: &mut Report, value: &Node, scope: &ArgScope<'_>) -> Arg {
    match &value.kind {
        NodeKind::Null => Arg::empty_map(),
        NodeKind::Map(entries) => map_entries(r, entries, "with", scope),
        _ => {
            r.error(
                value,
                "with",
                format!(
                    "`with` must be a mapping of the operator's arguments, got {}",
                    value.type_name()
                ),
            );
            Arg::empty_map()
        }
    }
}

fn convert(r: &mut Report, node: &Node, path: &str, scope: &ArgScope<'_>) -> Arg {
    match &node.kind {
        NodeKind::Seq(items) => Arg::List(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(r, item, &format!("{path}[{i}]"), scope))
                .collect(),
        ),
        NodeKind::Map(entries) => match entries.as_slice() {
            [(k, v)] if k.as_str().is_some_and(|s| MARKERS.contains(&s)) => {
                marker(r, k.as_str().unwrap_or_default(), k, v, path, scope)
            }
            _ => map_entries(r, entries, path, scope),
        },
        _ => Arg::Value(node.to_json()),
    }
}

/// Stands in for a value that had an error. It counts as a marker, so the operator's check
/// does not pile a confusing type error on top of ours; the task fails either way.
fn placeholder() -> Arg {
    Arg::Template(String::new())
}

fn map_entries(r: &mut Report, entries: &[(Node, Node)], path: &str, scope: &ArgScope<'_>) -> Arg {
    let mut out = Vec::with_capacity(entries.len());
    let mut bad = false;
    for (k, v) in entries {
        let Some(name) = key_str(r, k) else { continue };
        let field = format!("{path}.{name}");
        if name.starts_with('$') {
            let message = if MARKERS.contains(&name) && path == "with" && entries.len() == 1 {
                format!("`with` itself cannot be a marker; put `{name}` under an argument name")
            } else if MARKERS.contains(&name) {
                format!("`{name}` must be the only key in its mapping (a marker wraps one value)")
            } else {
                format!(
                    "unknown marker `{name}`; markers are {MARKER_LIST}; to pass a key starting with `$` \
                     literally, wrap the mapping in `$const`"
                )
            };
            r.error(k, &field, message);
            bad = true;
            continue;
        }
        out.push((name.to_string(), convert(r, v, &field, scope)));
    }
    if bad && path != "with" {
        return placeholder();
    }
    Arg::Map(out)
}

fn marker(
    r: &mut Report,
    name: &str,
    key: &Node,
    value: &Node,
    path: &str,
    scope: &ArgScope<'_>,
) -> Arg {
    let placeholder = placeholder();
    match name {
        "$t" | "$template" => {
            let Some(text) = value.as_str() else {
                r.error(
                    value,
                    path,
                    format!(
                        "`{name}` needs a template string, got {}",
                        value.type_name()
                    ),
                );
                return placeholder;
            };
            match super::template::unknown_names(text) {
                Err(e) => {
                    r.error(
                        value,
                        path,
                        format!(
                            "invalid template: {}{}",
                            e.detail().unwrap_or("syntax error"),
                            e.line()
                                .map(|l| format!(" (template line {l})"))
                                .unwrap_or_default()
                        ),
                    );
                    return placeholder;
                }
                Ok(unknown) => {
                    for u in unknown {
                        r.error(
                            value,
                            path,
                            format!(
                                "template uses `{}` (template line {}, column {}), which is not in \
                                 Airflow's template context; every run would fail with \
                                 \"'{}' is undefined\". Context names: {}",
                                u.name,
                                u.line,
                                u.column,
                                u.name,
                                super::template::CONTEXT_NAMES.join(", ")
                            ),
                        );
                    }
                }
            }
            Arg::Template(text.to_string())
        }
        "$x" | "$xcom" => xcom(r, name, value, path, scope).unwrap_or(placeholder),
        "$const" => Arg::Value(value.to_json()),
        "$f" => {
            let Some(rel) = value.as_str() else {
                r.error(
                    value,
                    path,
                    format!("`$f` needs a file path, got {}", value.type_name()),
                );
                return placeholder;
            };
            match resolve_path(scope.rel_path, rel) {
                Err(e) => {
                    r.error(value, path, e);
                    placeholder
                }
                Ok(full) => {
                    match (scope.loader)(&full) {
                        Ok(text) => Arg::Value(serde_json::Value::String(text)),
                        Err(e) => {
                            r.error(value, path, format!("cannot read `$f` file `{rel}` (`{full}` in the DAGs folder): {e}"));
                            placeholder
                        }
                    }
                }
            }
        }
        _ => {
            r.error(
                key,
                path,
                format!("unknown marker `{name}`; markers are {MARKER_LIST}"),
            );
            placeholder
        }
    }
}

/// `$xcom: task` or `$xcom: {task: id, key: k}`.
fn xcom(r: &mut Report, name: &str, value: &Node, path: &str, scope: &ArgScope<'_>) -> Option<Arg> {
    let form =
        format!("write `{name}: upstream_task` or `{name}: {{task: upstream_task, key: my_key}}`");
    let (task_node, key) = match &value.kind {
        NodeKind::Str(_) => (value, "return_value".to_string()),
        NodeKind::Map(entries) => {
            let mut task = None;
            let mut key = "return_value".to_string();
            for (k, v) in entries {
                match k.as_str() {
                    Some("task") => task = Some(v),
                    Some("key") => match v.as_str() {
                        Some(s) => key = s.to_string(),
                        // Airflow's `key=None`: the default key, as `xcom_pull` reads it.
                        None if v.is_null() => {}
                        None => {
                            r.error(v, path, format!("the XCom `key` must be a string; {form}"))
                        }
                    },
                    _ => r.error(
                        k,
                        path,
                        format!("`{name}` takes only `task` and `key`; {form}"),
                    ),
                }
            }
            match task {
                Some(t) => (t, key),
                None => {
                    r.error(value, path, format!("`{name}` needs a `task`; {form}"));
                    return None;
                }
            }
        }
        _ => {
            r.error(
                value,
                path,
                format!(
                    "`{name}` needs a task id, got {}; {form}",
                    value.type_name()
                ),
            );
            return None;
        }
    };
    let Some(id) = task_node.as_str() else {
        r.error(
            task_node,
            path,
            format!(
                "the XCom task must be a task id, got {}; {form}",
                task_node.type_name()
            ),
        );
        return None;
    };
    if scope.this.is_some_and(|t| t.as_str() == id) {
        r.error(
            task_node,
            path,
            format!("task `{id}` cannot read its own XCom; name an upstream task"),
        );
        return None;
    }
    if !scope.ids.contains(id) {
        r.error(
            task_node,
            path,
            format!("`{name}` names `{id}`, which is not a task in this DAG"),
        );
        return None;
    }
    let task = TaskId::parse(id)
        .map_err(|e| r.error(task_node, path, e))
        .ok()?;
    Some(Arg::XCom { task, key })
}

/// `rel` relative to the folder of `dag_file`, both inside the DAGs folder; the result uses `/`.
/// Absolute paths and paths leaving the DAGs folder are refused: DAG loading runs in the
/// scheduler, which must not read arbitrary files on behalf of a DAG.
pub(crate) fn resolve_path(dag_file: &str, rel: &str) -> Result<String, String> {
    let rel_path = Path::new(rel);
    if rel_path.is_absolute() || rel.is_empty() {
        return Err(format!(
            "`$f` path `{rel}` must be relative to the DAG file's folder"
        ));
    }
    let base = Path::new(dag_file).parent().unwrap_or(Path::new(""));
    let mut parts: Vec<String> = Vec::new();
    for c in base.join(rel_path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "`$f` path `{rel}` leaves the DAGs folder; keep the file inside it"
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`$f` path `{rel}` must be relative to the DAG file's folder"
                ));
            }
        }
    }
    Ok(parts.join("/"))
}
