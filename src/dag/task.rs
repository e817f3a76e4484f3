//! Tasks: `templates` + `extends` merged first (exactly as Airflow 3.4 does: left to right, a
//! template's own `extends` first, shallow except `with`/`run` one level deep), then each
//! merged task validated key by key. Values keep the position they were written at, so an
//! error in a template's value points into the template.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::args::{self, ArgScope};
use super::model::{Task, TaskId};
use super::read::{
    backoff_multiplier, duration_in, int_in, is_callback, key_str, limits, opt, string, Report,
    Source,
};
use super::yaml::{Node, NodeKind};
use crate::core::TriggerRule;
use crate::operators::OperatorName;

/// A task that validated, with the position of its `id` (for graph errors).
pub(crate) struct Draft {
    pub task: Task,
    pub at: Node,
}

/// A task or template body after merging: `(key, value)` with string keys.
type Fields = Vec<(String, Node, Node)>;

/// BaseOperator arguments updraft accepts for portability but does not act on, and which
/// change nothing in what runs (display, notification, executor placement).
pub(crate) const TASK_ARGS_IGNORED: &[&str] = &[
    "task_display_name",
    "email",
    "email_on_failure",
    "email_on_retry",
    "priority_weight",
    "weight_rule",
    "executor",
    "executor_config",
    "do_xcom_push",
    "multiple_outputs",
    "doc",
    "doc_rst",
    "doc_json",
    "doc_yaml",
    "run_as_user",
    "resources",
    "map_index_template",
    "allow_nested_operators",
];

/// BaseOperator arguments that would change behaviour in Airflow and updraft does not
/// implement: accepted, with a warning.
pub(crate) const TASK_ARGS_WARNED: &[&str] = &[
    "depends_on_past",
    "ignore_first_depends_on_past",
    "wait_for_downstream",
    "max_active_tis_per_dag",
    "max_active_tis_per_dagrun",
    "start_date",
    "end_date",
    "sla",
    "params",
];

const TASK_KEYS: &str = "`id`, `uses`, `with`, `needs`, `extends`, `retries`, `retry_delay`, \
`retry_exponential_backoff`, `max_retry_delay`, `execution_timeout`, `trigger_rule`, `owner`, \
`doc_md`, `pool`, `pool_slots`, `queue`";

/// Validates `tasks:` (with `templates:`), reporting into `r`; returns the tasks that passed.
pub(crate) fn validate_tasks(
    r: &mut Report,
    tasks: Option<&Node>,
    templates: Option<&Node>,
    source: &Source<'_>,
) -> Vec<Draft> {
    let mut tpl = Templates::new(r, templates);
    let items: &[Node] = match tasks {
        None => &[],
        Some(Node {
            kind: NodeKind::Null,
            ..
        }) => &[],
        Some(Node {
            kind: NodeKind::Seq(items),
            ..
        }) => items,
        Some(node) => {
            r.error(
                node,
                "tasks",
                format!(
                    "`tasks` must be a list (`- id: extract`, one entry per task), got {}; Airflow 3.4 \
                     has no mapping form",
                    node.type_name()
                ),
            );
            &[]
        }
    };
    // Merge every task first: references (`needs`, `$xcom`) may point forward.
    let mut merged: Vec<(&Node, Fields)> = Vec::new();
    for item in items {
        match item.as_map() {
            Some(entries) => {
                r.task = entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some("id"))
                    .and_then(|(_, v)| v.as_str())
                    .map(String::from);
                let fields = tpl.merge_task(r, item);
                merged.push((item, fields));
            }
            None => r.error(
                item,
                "tasks",
                format!(
                    "each task must be a mapping with `id` and `uses`, got {}",
                    item.type_name()
                ),
            ),
        }
    }
    let mut first_line: HashMap<String, u32> = HashMap::new();
    let mut ids: HashSet<String> = HashSet::new();
    for (_, fields) in &merged {
        if let Some((_, _, v)) = fields.iter().find(|(k, _, _)| k == "id") {
            if let Some(s) = v.as_str() {
                ids.insert(s.to_string());
            }
        }
    }
    let mut out = Vec::new();
    for (item, fields) in &merged {
        r.task = None;
        let id = match fields.iter().find(|(k, _, _)| k == "id") {
            None => {
                r.error(item, "id", "this task has no `id`; add `id: my_task`");
                None
            }
            Some((_, _, v)) => match v.as_str().map(TaskId::parse) {
                Some(Ok(id)) => {
                    r.task = Some(id.to_string());
                    if let Some(line) = first_line.get(id.as_str()) {
                        r.error(
                            v,
                            "id",
                            format!("task id `{id}` is already used by the task on line {line}; ids must be unique"),
                        );
                        None
                    } else {
                        first_line.insert(id.to_string(), v.line);
                        Some((id, v.clone()))
                    }
                }
                Some(Err(e)) => {
                    r.error(v, "id", e);
                    None
                }
                None => {
                    r.error(
                        v,
                        "id",
                        format!("`id` must be a string, got {}", v.type_name()),
                    );
                    None
                }
            },
        };
        let task = validate_task(r, item, fields, id.as_ref().map(|(i, _)| i), &ids, source);
        if let (Some(task), Some((_, at))) = (task, id) {
            out.push(Draft { task, at });
        }
    }
    r.task = None;
    out
}

/// Validates one merged task. Returns it only when this task had no errors.
fn validate_task(
    r: &mut Report,
    item: &Node,
    fields: &Fields,
    id: Option<&TaskId>,
    ids: &HashSet<String>,
    source: &Source<'_>,
) -> Option<Task> {
    let before = r.errors.len();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _, _)| k == name)
            .map(|(_, k, v)| (k, v))
    };
    let operator = match (get("uses"), get("run")) {
        (Some(_), Some((rk, _))) => {
            r.error(
                rk,
                "run",
                "a task has exactly one of `uses` and `run`; remove `run`",
            );
            None
        }
        (None, Some((rk, _))) => {
            r.error(
                rk,
                "run",
                "`run:` (a task handler outside Python) is not supported: updraft runs only `uses:` operators",
            );
            None
        }
        (None, None) => {
            r.error(
                item,
                "uses",
                format!(
                    "this task has no `uses`; add e.g. `uses: {}`",
                    OperatorName::USES[6].0
                ),
            );
            None
        }
        (Some((_, v)), None) => match v.as_str() {
            Some(uses) => match OperatorName::from_uses(uses) {
                Some(op) => Some((op, uses.to_string(), v)),
                None => {
                    let names: Vec<&str> = OperatorName::USES.iter().map(|(n, _)| *n).collect();
                    r.error(
                        v,
                        "uses",
                        format!("unsupported operator `{uses}`; updraft implements these `uses:` names: {}", names.join(", ")),
                    );
                    None
                }
            },
            None => {
                r.error(
                    v,
                    "uses",
                    format!(
                        "`uses` must be an operator class path string, got {}",
                        v.type_name()
                    ),
                );
                None
            }
        },
    };
    let placeholder = || TaskId::parse("_").unwrap_or_else(|_| unreachable!());
    let mut task = Task {
        uses: String::new(),
        ..Task::new(id.cloned().unwrap_or_else(placeholder), OperatorName::Empty)
    };
    let scope = ArgScope {
        this: id,
        ids,
        rel_path: source.rel_path,
        loader: source.loader,
    };
    let mut with_node = None;
    for (k, key, value) in fields {
        let k = k.as_str();
        match k {
            "id" | "uses" | "run" | "extends" => {}
            "with" => {
                with_node = Some((key, value));
                task.args = args::convert_with(r, value, &scope);
            }
            "needs" => task.upstream.extend(needs(r, value, id, ids)),
            "retries" => task.retries = int_in(r, value, k, limits::RETRIES).unwrap_or(0),
            "retry_delay" => task.retry_delay = duration_in(r, value, k, false).unwrap_or(task.retry_delay),
            "retry_exponential_backoff" => task.retry_exponential_backoff = backoff_multiplier(r, value, k).unwrap_or(0.0),
            "max_retry_delay" => task.max_retry_delay = opt(value, |v| duration_in(r, v, k, false)),
            "execution_timeout" => task.execution_timeout = opt(value, |v| duration_in(r, v, k, true)),
            "trigger_rule" => match value.as_str().map(TriggerRule::parse) {
                Some(Ok(rule)) => task.trigger_rule = rule,
                Some(Err(e)) => r.error(value, k, e),
                None => r.error(value, k, format!("`trigger_rule` must be a string, got {}", value.type_name())),
            },
            "owner" => task.owner = string(r, value, k).unwrap_or(task.owner),
            "doc_md" => task.doc_md = opt(value, |v| string(r, v, k)),
            "pool" => task.pool = opt(value, |v| string(r, v, k)).filter(|p| !p.is_empty()),
            "pool_slots" => {
                if let Some(n) = int_in(r, value, k, limits::POOL_SLOTS) {
                    task.pool_slots = n;
                }
            }
            "queue" => task.queue = opt(value, |v| string(r, v, k)),
            "inlets" | "outlets" => r.error(key, k, format!("`{k}` (assets/lineage) is not supported in YAML DAGs; remove it")),
            "task_id" => r.error(key, k, "the task's id is written `id:`, not `task_id:`"),
            _ if is_callback(k) => r.error(
                key,
                k,
                format!("callbacks cannot be written in YAML DAGs (Airflow rejects them too); remove `{k}`"),
            ),
            _ if TASK_ARGS_IGNORED.contains(&k) => {}
            _ if TASK_ARGS_WARNED.contains(&k) => r.warning(
                Some(key),
                k,
                format!("`{k}` is an Airflow task argument updraft does not implement; it is ignored"),
            ),
            _ => r.error(key, k, format!("unknown task key `{k}`; task keys are {TASK_KEYS}")),
        }
    }
    if let Some((op, uses, uses_node)) = operator {
        task.operator = op;
        task.uses = uses;
        for (field, message) in super::model::check_with(op, &task.args) {
            let at = field
                .strip_prefix("with.")
                .and_then(|name| {
                    with_node?
                        .1
                        .as_map()?
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(name))
                })
                .map(|(k, _)| k)
                .or_else(|| {
                    (field == "with")
                        .then(|| with_node.map(|(k, _)| k))
                        .flatten()
                })
                .unwrap_or(uses_node);
            r.error(at, &field, message);
        }
    }
    let mut xcom = Vec::new();
    task.args.xcom_tasks(&mut xcom);
    task.upstream.extend(xcom);
    (r.errors.len() == before && id.is_some()).then_some(task)
}

fn needs(
    r: &mut Report,
    value: &Node,
    this: Option<&TaskId>,
    ids: &HashSet<String>,
) -> Vec<TaskId> {
    let items = match &value.kind {
        NodeKind::Null => return Vec::new(),
        NodeKind::Seq(items) => items,
        _ => {
            r.error(
                value,
                "needs",
                format!(
                    "`needs` must be a list of task ids like `[extract]`, got {}",
                    value.type_name()
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Some(name) = item.as_str() else {
            r.error(
                item,
                "needs",
                format!("`needs` entries must be task ids, got {}", item.type_name()),
            );
            continue;
        };
        if this.is_some_and(|t| t.as_str() == name) {
            r.error(
                item,
                "needs",
                format!("task `{name}` cannot need itself; remove it from `needs`"),
            );
        } else if !ids.contains(name) {
            let mut known: Vec<&str> = ids.iter().map(String::as_str).collect();
            known.sort_unstable();
            r.error(
                item,
                "needs",
                format!(
                    "`needs` names `{name}`, which is not a task in this DAG; tasks are: {}",
                    known.join(", ")
                ),
            );
        } else if let Ok(t) = TaskId::parse(name) {
            out.push(t);
        }
    }
    out
}

/// `templates:` with each template's own `extends` resolved once (and cycles caught once).
struct Templates<'n> {
    defs: BTreeMap<String, &'n Node>,
    order: Vec<String>,
    resolved: HashMap<String, Option<Fields>>,
}

impl<'n> Templates<'n> {
    fn new(r: &mut Report, node: Option<&'n Node>) -> Self {
        let mut t = Templates {
            defs: BTreeMap::new(),
            order: Vec::new(),
            resolved: HashMap::new(),
        };
        let Some(node) = node.filter(|n| !n.is_null()) else {
            return t;
        };
        let Some(entries) = node.as_map() else {
            r.error(
                node,
                "templates",
                format!(
                    "`templates` must be a mapping of name → task keys, got {}",
                    node.type_name()
                ),
            );
            return t;
        };
        for (k, v) in entries {
            let Some(name) = key_str(r, k) else { continue };
            if v.as_map().is_none() {
                r.error(
                    v,
                    "templates",
                    format!(
                        "template `{name}` must be a mapping of task keys, got {}",
                        v.type_name()
                    ),
                );
                t.resolved.insert(name.to_string(), None);
            }
            t.defs.insert(name.to_string(), v);
            t.order.push(name.to_string());
        }
        // Resolve all now so errors in unused templates are reported too.
        for name in t.order.clone() {
            t.resolve(r, &name, &mut Vec::new());
        }
        t
    }

    fn resolve(&mut self, r: &mut Report, name: &str, stack: &mut Vec<String>) -> Option<Fields> {
        if let Some(done) = self.resolved.get(name) {
            return done.clone();
        }
        let node = *self.defs.get(name)?;
        stack.push(name.to_string());
        let fields = self.expand(r, node, stack, &format!("template `{name}`"));
        stack.pop();
        self.resolved.insert(name.to_string(), Some(fields.clone()));
        Some(fields)
    }

    /// A body's `extends` merged left to right, then its own keys on top.
    fn expand(
        &mut self,
        r: &mut Report,
        body: &Node,
        stack: &mut Vec<String>,
        what: &str,
    ) -> Fields {
        let mut out: Fields = Vec::new();
        let entries = body.as_map().unwrap_or(&[]);
        if let Some((_, ext)) = entries.iter().find(|(k, _)| k.as_str() == Some("extends")) {
            for item in extends_list(r, ext) {
                let Some(parent) = item.as_str() else {
                    continue;
                };
                if let Some(pos) = stack.iter().position(|s| s == parent) {
                    let mut cycle = stack[pos..].to_vec();
                    cycle.push(parent.to_string());
                    r.error(
                        item,
                        "extends",
                        format!(
                            "templates extend each other in a cycle: {}",
                            cycle.join(" → ")
                        ),
                    );
                    continue;
                }
                if !self.defs.contains_key(parent) {
                    let known: Vec<&str> = self.order.iter().map(String::as_str).collect();
                    let hint = if known.is_empty() {
                        "this file defines no templates".to_string()
                    } else {
                        format!("templates are: {}", known.join(", "))
                    };
                    r.error(
                        item,
                        "extends",
                        format!("{what} extends unknown template `{parent}`; {hint}"),
                    );
                    continue;
                }
                if let Some(fields) = self.resolve(r, parent, stack) {
                    merge(&mut out, fields);
                }
            }
        }
        let own: Fields = entries
            .iter()
            .filter(|(k, _)| k.as_str() != Some("extends"))
            .filter_map(|(k, v)| key_str(r, k).map(|s| (s.to_string(), k.clone(), v.clone())))
            .collect();
        merge(&mut out, own);
        out
    }

    fn merge_task(&mut self, r: &mut Report, task: &Node) -> Fields {
        self.expand(r, task, &mut Vec::new(), "this task")
    }
}

fn extends_list<'a>(r: &mut Report, node: &'a Node) -> &'a [Node] {
    match &node.kind {
        NodeKind::Seq(items) => {
            for i in items.iter().filter(|i| i.as_str().is_none()) {
                r.error(
                    i,
                    "extends",
                    format!(
                        "`extends` entries must be template names, got {}",
                        i.type_name()
                    ),
                );
            }
            items
        }
        NodeKind::Null => &[],
        _ => {
            r.error(
                node,
                "extends",
                format!(
                    "`extends` must be a list of template names like `[base]`, got {}",
                    node.type_name()
                ),
            );
            &[]
        }
    }
}

/// Later wins per key; `with` and `run` mappings merge one level deep.
fn merge(base: &mut Fields, add: Fields) {
    for (k, key, value) in add {
        match base.iter_mut().find(|(bk, _, _)| *bk == k) {
            Some(slot) => {
                let deep = matches!(k.as_str(), "with" | "run");
                match (&mut slot.2.kind, value.kind) {
                    (NodeKind::Map(old), NodeKind::Map(new)) if deep => {
                        for (nk, nv) in new {
                            match old.iter_mut().find(|(ok, _)| ok.kind == nk.kind) {
                                Some(entry) => *entry = (nk, nv),
                                None => old.push((nk, nv)),
                            }
                        }
                    }
                    (_, kind) => {
                        slot.1 = key;
                        slot.2 = Node {
                            kind,
                            line: value.line,
                            column: value.column,
                        };
                    }
                }
            }
            None => base.push((k, key, value)),
        }
    }
}
