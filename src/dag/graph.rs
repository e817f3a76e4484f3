//! The task graph. This is the only module that knows petgraph: it finds cycles, fills each
//! task's `downstream`, and orders tasks topologically. Everything it hands out is plain
//! `TaskId`s and `Task`s, so the scheduler never sees a `NodeIndex`.
//!
//! Validation has already rejected unknown and self references with positions; the checks
//! here for those are a safety net, reported as [`GraphError`]s all the same.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use super::model::{Dag, Task, TaskId};

/// Why a set of tasks does not form a DAG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphError {
    /// The same id twice.
    DuplicateTask(TaskId),
    /// `task` depends on `missing`, which does not exist.
    UnknownUpstream { task: TaskId, missing: TaskId },
    /// A path through these tasks that returns to its start (first = last).
    Cycle(Vec<TaskId>),
}

impl GraphError {
    pub fn message(&self) -> String {
        match self {
            GraphError::DuplicateTask(t) => format!("task id `{t}` is used more than once"),
            GraphError::UnknownUpstream { task, missing } => {
                format!("task `{task}` depends on `{missing}`, which does not exist")
            }
            GraphError::Cycle(path) => {
                let names: Vec<&str> = path.iter().map(TaskId::as_str).collect();
                format!(
                    "tasks depend on each other in a cycle: {}; remove one of these dependencies",
                    names.join(" → ")
                )
            }
        }
    }
}

/// Orders `tasks` upstream-first (ties by task id) and fills `downstream`. `upstream` must
/// already hold each task's direct upstreams (from `needs` and `$xcom`); it is sorted and
/// deduplicated here.
pub fn build(mut tasks: Vec<Task>) -> Result<Vec<Task>, Vec<GraphError>> {
    let mut errors = Vec::new();
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let mut index: HashMap<TaskId, NodeIndex> = HashMap::new();
    for (i, task) in tasks.iter_mut().enumerate() {
        task.upstream.sort();
        task.upstream.dedup();
        task.downstream.clear();
        let node = graph.add_node(i);
        if index.insert(task.task_id.clone(), node).is_some() {
            errors.push(GraphError::DuplicateTask(task.task_id.clone()));
        }
    }
    for task in &tasks {
        let to = index[&task.task_id];
        for up in &task.upstream {
            match index.get(up) {
                Some(&from) => {
                    graph.update_edge(from, to, ());
                }
                None => errors.push(GraphError::UnknownUpstream {
                    task: task.task_id.clone(),
                    missing: up.clone(),
                }),
            }
        }
    }
    for scc in tarjan_scc(&graph) {
        let cyclic = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if cyclic {
            errors.push(GraphError::Cycle(cycle_path(&graph, &tasks, &scc)));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Kahn's algorithm with the ready set ordered by task id, so the order is stable.
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<(TaskId, NodeIndex)>> = graph
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(|n| Reverse((tasks[graph[n]].task_id.clone(), n)))
        .collect();
    let mut order = Vec::with_capacity(tasks.len());
    while let Some(Reverse((_, n))) = ready.pop() {
        order.push(graph[n]);
        for next in graph.neighbors_directed(n, Direction::Outgoing) {
            indegree[next.index()] -= 1;
            if indegree[next.index()] == 0 {
                ready.push(Reverse((tasks[graph[next]].task_id.clone(), next)));
            }
        }
    }
    let downstream: Vec<Vec<TaskId>> = graph
        .node_indices()
        .map(|n| {
            let set: BTreeSet<TaskId> = graph
                .neighbors_directed(n, Direction::Outgoing)
                .map(|d| tasks[graph[d]].task_id.clone())
                .collect();
            set.into_iter().collect()
        })
        .collect();
    for (task, down) in tasks.iter_mut().zip(downstream) {
        task.downstream = down;
    }
    let mut slots: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Walks inside one strongly connected component from its smallest id, always to the smallest
/// next id, until a task repeats; the loop from that task on is a real cycle.
fn cycle_path(graph: &DiGraph<usize, ()>, tasks: &[Task], scc: &[NodeIndex]) -> Vec<TaskId> {
    let id = |n: NodeIndex| tasks[graph[n]].task_id.clone();
    let Some(mut at) = scc.iter().copied().min_by_key(|n| id(*n)) else {
        return Vec::new();
    };
    let mut path: Vec<NodeIndex> = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|n| *n == at) {
            let mut cycle: Vec<TaskId> = path[pos..].iter().map(|n| id(*n)).collect();
            cycle.push(id(at));
            return cycle;
        }
        path.push(at);
        let next = graph
            .neighbors_directed(at, Direction::Outgoing)
            .filter(|n| scc.contains(n))
            .min_by_key(|n| id(*n));
        match next {
            Some(n) => at = n,
            None => return path.iter().map(|n| id(*n)).collect(),
        }
    }
}

/// Tasks with no upstream, in the DAG's order.
pub fn roots(dag: &Dag) -> Vec<&TaskId> {
    dag.tasks
        .iter()
        .filter(|t| t.upstream.is_empty())
        .map(|t| &t.task_id)
        .collect()
}

/// Every task reachable downstream of `task` (not including it), sorted. For "clear this task
/// and everything after it".
pub fn descendants(dag: &Dag, task: &str) -> Vec<TaskId> {
    walk(dag, task, |t| &t.downstream)
}

/// Every task `task` transitively depends on, sorted.
pub fn ancestors(dag: &Dag, task: &str) -> Vec<TaskId> {
    walk(dag, task, |t| &t.upstream)
}

fn walk(dag: &Dag, start: &str, next: impl Fn(&Task) -> &Vec<TaskId>) -> Vec<TaskId> {
    let mut seen: BTreeSet<TaskId> = BTreeSet::new();
    let mut stack: Vec<&str> = vec![start];
    while let Some(id) = stack.pop() {
        if let Some(task) = dag.task(id) {
            for n in next(task) {
                if seen.insert(n.clone()) {
                    stack.push(n.as_str());
                }
            }
        }
    }
    seen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::OperatorName;

    fn tid(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    fn task(id: &str, up: &[&str]) -> Task {
        Task {
            upstream: up.iter().map(|u| tid(u)).collect(),
            ..Task::new(tid(id), OperatorName::Empty)
        }
    }

    fn ids(tasks: &[Task]) -> Vec<&str> {
        tasks.iter().map(|t| t.task_id.as_str()).collect()
    }

    #[test]
    fn orders_topologically_with_ties_by_id() {
        let tasks = vec![
            task("d", &["b", "c"]),
            task("c", &["a"]),
            task("b", &["a", "a"]),
            task("a", &[]),
            task("0", &[]),
        ];
        let out = build(tasks).unwrap();
        assert_eq!(ids(&out), vec!["0", "a", "b", "c", "d"]);
        assert_eq!(out[1].downstream, vec![tid("b"), tid("c")]);
        assert_eq!(out[2].upstream, vec![tid("a")]);
        assert!(out[4].downstream.is_empty());
    }

    #[test]
    fn cycles_name_their_tasks() {
        let tasks = vec![
            task("a", &["c"]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("x", &["a"]),
        ];
        let errs = build(tasks).unwrap_err();
        assert_eq!(
            errs,
            vec![GraphError::Cycle(vec![
                tid("a"),
                tid("b"),
                tid("c"),
                tid("a")
            ])]
        );
        assert!(errs[0].message().contains("a → b → c → a"));
        let errs = build(vec![task("s", &["s"])]).unwrap_err();
        assert_eq!(errs, vec![GraphError::Cycle(vec![tid("s"), tid("s")])]);
    }

    #[test]
    fn unknown_and_duplicate_are_reported() {
        let errs = build(vec![task("a", &["zz"]), task("a", &[])]).unwrap_err();
        assert!(errs.contains(&GraphError::DuplicateTask(tid("a"))));
        assert!(errs.contains(&GraphError::UnknownUpstream {
            task: tid("a"),
            missing: tid("zz")
        }));
    }

    #[test]
    fn walks_for_the_scheduler() {
        let tasks = build(vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("z", &[]),
        ])
        .unwrap();
        let dag = Dag::new(crate::dag::DagId::parse("d").unwrap(), tasks);
        assert_eq!(roots(&dag), vec![&tid("a"), &tid("z")]);
        assert_eq!(descendants(&dag, "a"), vec![tid("b"), tid("c")]);
        assert_eq!(ancestors(&dag, "c"), vec![tid("a"), tid("b")]);
        assert!(descendants(&dag, "nope").is_empty());
    }
}
