//! Lays out a DAG's tasks for the SVG graph: one column per topological depth (the longest
//! path from a root), tasks stacked in each column in the spec's order. Pure, so it is tested
//! here; the template only draws what this computes.

use std::collections::HashMap;

use crate::dag::Dag;

pub const NODE_W: i64 = 170;
pub const NODE_H: i64 = 34;
const COL_GAP: i64 = 70;
const ROW_GAP: i64 = 16;
const PAD: i64 = 12;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub task_id: String,
    pub x: i64,
    pub y: i64,
    /// The chosen run's state of this task, or "none".
    pub state: String,
}

impl Node {
    /// The label, shortened so it fits the box.
    pub fn label(&self) -> String {
        if self.task_id.chars().count() > 22 {
            format!("{}…", self.task_id.chars().take(21).collect::<String>())
        } else {
            self.task_id.clone()
        }
    }
    pub fn text_x(&self) -> i64 {
        self.x + 10
    }
    pub fn text_y(&self) -> i64 {
        self.y + NODE_H / 2 + 5
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub width: i64,
    pub height: i64,
    pub nodes: Vec<Node>,
    /// SVG path data of each edge (numbers only, nothing from the DAG file).
    pub edges: Vec<String>,
}

/// `tasks` must be in topological order (a validated `Dag`'s are).
pub fn layout(tasks: &[(String, Vec<String>)], states: &HashMap<String, String>) -> Graph {
    let mut depth: HashMap<&str, i64> = HashMap::new();
    let mut per_col: Vec<i64> = Vec::new();
    let mut nodes = Vec::with_capacity(tasks.len());
    let mut pos: HashMap<&str, (i64, i64)> = HashMap::new();
    for (id, upstream) in tasks {
        let d = upstream
            .iter()
            .filter_map(|u| depth.get(u.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(id, d);
        if per_col.len() <= d as usize {
            per_col.resize(d as usize + 1, 0);
        }
        let row = per_col[d as usize];
        per_col[d as usize] += 1;
        let (x, y) = (PAD + d * (NODE_W + COL_GAP), PAD + row * (NODE_H + ROW_GAP));
        pos.insert(id, (x, y));
        nodes.push(Node {
            task_id: id.clone(),
            x,
            y,
            state: states.get(id).cloned().unwrap_or_else(|| "none".into()),
        });
    }
    let mut edges = Vec::new();
    for (id, upstream) in tasks {
        let (tx, ty) = pos[id.as_str()];
        for u in upstream {
            if let Some(&(ux, uy)) = pos.get(u.as_str()) {
                let (x1, y1, x2, y2) = (ux + NODE_W, uy + NODE_H / 2, tx, ty + NODE_H / 2);
                let mid = (x1 + x2) / 2;
                edges.push(format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"));
            }
        }
    }
    let cols = per_col.len() as i64;
    let rows = per_col.iter().copied().max().unwrap_or(0);
    Graph {
        width: (2 * PAD + cols * NODE_W + (cols - 1).max(0) * COL_GAP).max(200),
        height: (2 * PAD + rows * NODE_H + (rows - 1).max(0) * ROW_GAP).max(60),
        nodes,
        edges,
    }
}

/// (task_id, upstream ids) of a DAG, in its topological order.
pub fn task_edges(dag: &Dag) -> Vec<(String, Vec<String>)> {
    dag.tasks
        .iter()
        .map(|t| {
            (
                t.task_id.to_string(),
                t.upstream.iter().map(|u| u.to_string()).collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, up: &[&str]) -> (String, Vec<String>) {
        (id.into(), up.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn columns_follow_longest_path() {
        let tasks = vec![
            t("a", &[]),
            t("b", &["a"]),
            t("c", &["a"]),
            t("d", &["b", "a"]),
        ];
        let states = HashMap::from([("b".to_string(), "success".to_string())]);
        let g = layout(&tasks, &states);
        let x: Vec<i64> = g.nodes.iter().map(|n| n.x).collect();
        assert_eq!(
            x,
            vec![
                PAD,
                PAD + NODE_W + COL_GAP,
                PAD + NODE_W + COL_GAP,
                PAD + 2 * (NODE_W + COL_GAP)
            ]
        );
        assert_eq!(g.nodes[2].y, PAD + NODE_H + ROW_GAP, "c stacks under b");
        assert_eq!(g.nodes[1].state, "success");
        assert_eq!(g.nodes[0].state, "none");
        assert_eq!(g.edges.len(), 4);
        assert_eq!(g.width, 2 * PAD + 3 * NODE_W + 2 * COL_GAP);
    }

    #[test]
    fn empty_dag_has_a_minimal_canvas() {
        let g = layout(&[], &HashMap::new());
        assert!(g.nodes.is_empty() && g.width >= 200 && g.height >= 60);
    }
}
