//! One DAG: its graph coloured by a chosen run, a runs × tasks grid, source, versions and
//! import error. Five queries whatever the DAG's size.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::dags::DagItem;
use super::{fmt_time, render, seg, Chrome};
use crate::dag::Dag;
use crate::db::runs::RunRow;
use crate::db::web::{self as q, VersionRow};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::graph::{self, Graph};
use crate::web::AppState;

/// Runs shown in the grid.
pub const GRID_RUNS: i64 = 25;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DetailQuery {
    run: Option<String>,
}

pub struct GridRow {
    pub task_id: String,
    /// (state, link to the task's log in that run), oldest run first.
    pub cells: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "dags/detail.html")]
pub struct DagDetailPage {
    pub chrome: Chrome,
    pub item: DagItem,
    pub dag: Option<Dag>,
    pub graph: Graph,
    pub chosen: Option<RunRow>,
    /// Oldest first, so time runs left to right as in Airflow's grid.
    pub runs: Vec<RunRow>,
    pub grid: Vec<GridRow>,
    pub source: String,
    pub versions: Vec<VersionRow>,
    pub current_version: i64,
    pub import_error: Option<String>,
    /// The publish and sink tasks with their topics, linked to the topic monitor.
    pub topics: Vec<TaskTopic>,
}

/// A publish or sink task's topic, on the DAG page.
pub struct TaskTopic {
    pub task_id: String,
    /// `publishes to` or `consumes from`.
    pub verb: &'static str,
    pub topic: String,
    pub href: String,
}

/// The DAG's publish and sink tasks with their topics (tasks with a literal `with:`).
pub fn task_topics(dag: &Dag, env: &crate::operators::OperatorEnv) -> Vec<TaskTopic> {
    crate::dag::streams::topic_uses(dag, env)
        .into_iter()
        .map(|u| TaskTopic {
            verb: match u.role {
                crate::dag::streams::Role::Publishes => "publishes to",
                crate::dag::streams::Role::Consumes => "consumes from",
            },
            // The brokers make the link exact even when another DAG's topic shares the name.
            href: super::streams::topic_href(&u.topic, Some(&u.servers)),
            task_id: u.task_id,
            topic: u.topic,
        })
        .collect()
}

impl DagDetailPage {
    pub fn dag_href(&self) -> String {
        format!("/dags/{}", seg(&self.item.row.dag_id))
    }
    pub fn run_href(&self, run: &RunRow) -> String {
        format!("/dags/{}/runs/{}", seg(&run.dag_id), seg(&run.run_id))
    }
    pub fn choose_href(&self, run: &RunRow) -> String {
        format!("{}?run={}", self.dag_href(), seg(&run.run_id))
    }
    pub fn is_chosen(&self, run: &RunRow) -> bool {
        self.chosen.as_ref().is_some_and(|c| c.id == run.id)
    }
    pub fn time(&self, run: &RunRow) -> String {
        fmt_time(Some(run.logical_date))
    }
    /// Keep refreshing while any shown run may still change.
    pub fn live(&self) -> bool {
        self.runs.iter().any(|r| r.state.is_unfinished())
    }
    pub fn doc(&self) -> Option<&str> {
        self.dag.as_ref().and_then(|d| d.doc_md.as_deref())
    }
    pub fn params_json(&self) -> Option<String> {
        let d = self.dag.as_ref()?;
        (!d.params.is_empty()).then(|| serde_json::to_string_pretty(&d.params).unwrap_or_default())
    }
}

pub async fn show(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(dq): Query<DetailQuery>,
) -> Result<Response, WebError> {
    let Some(detail) = q::dag_detail(&st.pool, &dag_id).await? else {
        return Err(WebError::NotFound(format!(
            "DAG `{dag_id}` not found. Check the id, or the import errors page if its file failed to load."
        )));
    };
    let dag: Option<Dag> = match crate::dag::spec::from_stored(detail.spec) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(dag_id, error = %e, "stored spec does not match this build's DAG model");
            None
        }
    };
    let (mut runs, _) = q::list_runs(
        &st.pool,
        Some(&dag_id),
        q::RunOrder::NewestFirst,
        GRID_RUNS,
        0,
    )
    .await?;
    runs.reverse();
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let cells = q::grid_states(&st.pool, &pks).await?;
    let by_key: HashMap<(i64, &str), &str> = cells
        .iter()
        .map(|(pk, t, s)| ((*pk, t.as_str()), s.as_str()))
        .collect();
    let chosen = match &dq.run {
        Some(run_id) => runs.iter().find(|r| &r.run_id == run_id).cloned(),
        None => runs.last().cloned(),
    };
    let edges = dag.as_ref().map(graph::task_edges).unwrap_or_default();
    let chosen_states: HashMap<String, String> = chosen
        .as_ref()
        .map(|c| {
            cells
                .iter()
                .filter(|(pk, _, _)| *pk == c.id)
                .map(|(_, t, s)| (t.clone(), s.clone()))
                .collect()
        })
        .unwrap_or_default();
    let grid = edges
        .iter()
        .map(|(task_id, _)| GridRow {
            task_id: task_id.clone(),
            cells: runs
                .iter()
                .map(|r| {
                    let state = by_key
                        .get(&(r.id, task_id.as_str()))
                        .copied()
                        .unwrap_or("none")
                        .to_string();
                    let href = format!(
                        "/dags/{}/runs/{}/tasks/{}/logs/1",
                        seg(&r.dag_id),
                        seg(&r.run_id),
                        seg(task_id)
                    );
                    (state, href)
                })
                .collect(),
        })
        .collect();
    let versions = q::versions(&st.pool, &dag_id, 20).await?;
    let topics = dag
        .as_ref()
        .map(|d| task_topics(d, &st.settings.operator_env))
        .unwrap_or_default();
    render(&DagDetailPage {
        topics,
        chrome: user.chrome(),
        graph: graph::layout(&edges, &chosen_states),
        dag,
        chosen,
        runs,
        grid,
        source: detail.source,
        versions,
        current_version: detail.version_id,
        import_error: detail.import_error,
        item: DagItem { row: detail.dag },
    })
}
