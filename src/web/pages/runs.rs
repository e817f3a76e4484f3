//! One run: each task's state, tries, times and a Gantt-style timeline. The page refreshes
//! its live part while the run is unfinished (web/static/app.js).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::{fmt_duration, fmt_time, render, seg, Chrome};
use crate::core::RunState;
use crate::db::runs::{self, RunRow, TaskStateRow};
use crate::db::web as q;
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

pub struct TaskItem {
    pub ti: TaskStateRow,
    pub log_href: String,
    /// Timeline bar position and width, in percent of the run's span.
    pub left: String,
    pub width: String,
}

impl TaskItem {
    pub fn start(&self) -> String {
        fmt_time(self.ti.start_date)
    }
    pub fn end(&self) -> String {
        fmt_time(self.ti.end_date)
    }
    pub fn duration(&self) -> String {
        fmt_duration(
            self.ti.start_date,
            self.ti.end_date.or(self.ti.start_date.map(|_| Utc::now())),
        )
    }
    /// Attempts so far out of the attempts allowed (`max_tries` counts retries, as Airflow's).
    pub fn tries(&self) -> String {
        format!("{} of {}", self.ti.try_number, self.ti.max_tries + 1)
    }
    pub fn has_bar(&self) -> bool {
        self.ti.start_date.is_some()
    }
}

#[derive(Template)]
#[template(path = "runs/detail.html")]
pub struct RunPage {
    pub chrome: Chrome,
    pub run: RunRow,
    pub tasks: Vec<TaskItem>,
    /// Whether the user may change things (not a viewer): the action buttons show.
    pub can_edit: bool,
}

impl RunPage {
    /// Where the run's action forms post.
    pub fn action_href(&self) -> String {
        format!(
            "/dags/{}/runs/{}/action",
            seg(&self.run.dag_id),
            seg(&self.run.run_id)
        )
    }
    pub fn note_href(&self) -> String {
        format!(
            "/dags/{}/runs/{}/note",
            seg(&self.run.dag_id),
            seg(&self.run.run_id)
        )
    }
    /// Where a task's action forms post.
    pub fn task_action_href(&self, task_id: &str) -> String {
        format!(
            "/dags/{}/runs/{}/tasks/{}/action",
            seg(&self.run.dag_id),
            seg(&self.run.run_id),
            seg(task_id)
        )
    }
    pub fn note_text(&self) -> String {
        self.run.note.clone().unwrap_or_default()
    }
    pub fn dag_href(&self) -> String {
        format!("/dags/{}", seg(&self.run.dag_id))
    }
    pub fn live(&self) -> bool {
        self.run.state.is_unfinished()
    }
    pub fn is_queued(&self) -> bool {
        self.run.state == RunState::Queued
    }
    pub fn conf(&self) -> String {
        serde_json::to_string_pretty(&self.run.conf).unwrap_or_default()
    }
    pub fn logical_date(&self) -> String {
        fmt_time(Some(self.run.logical_date))
    }
    pub fn start(&self) -> String {
        fmt_time(self.run.start_date)
    }
    pub fn end(&self) -> String {
        fmt_time(self.run.end_date)
    }
    pub fn duration(&self) -> String {
        fmt_duration(self.run.start_date, self.run.end_date)
    }
}

/// Places each started task on a shared time axis from the first start to the last end (or
/// now, while something runs).
pub fn timeline(tis: &[TaskStateRow], now: DateTime<Utc>) -> Vec<(f64, f64)> {
    let first = tis.iter().filter_map(|t| t.start_date).min();
    let last = tis
        .iter()
        .filter_map(|t| t.end_date.or(t.start_date.map(|_| now)))
        .max();
    let (Some(first), Some(last)) = (first, last) else {
        return vec![(0.0, 0.0); tis.len()];
    };
    let span = ((last - first).num_milliseconds() as f64).max(1.0);
    tis.iter()
        .map(|t| match t.start_date {
            Some(s) => {
                let e = t.end_date.unwrap_or(now);
                let left = (s - first).num_milliseconds() as f64 / span * 100.0;
                let width = ((e - s).num_milliseconds() as f64 / span * 100.0).max(0.5);
                (left, width.min(100.0 - left).max(0.5))
            }
            None => (0.0, 0.0),
        })
        .collect()
}

pub async fn show(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let Some(run) = runs::get(&st.pool, &dag_id, &run_id).await? else {
        return Err(WebError::NotFound(format!(
            "Run `{run_id}` of DAG `{dag_id}` not found; pick one from the DAG's page."
        )));
    };
    let mut tis = runs::task_states(&st.pool, run.id).await?;
    // Show tasks in the DAG's order (upstream first) when the run's version is readable.
    if let Some(spec) = q::version_spec(&st.pool, run.version_id).await? {
        if let Ok(dag) = crate::dag::spec::from_stored(spec) {
            let order = |id: &str| {
                dag.tasks
                    .iter()
                    .position(|t| t.task_id.as_str() == id)
                    .unwrap_or(usize::MAX)
            };
            tis.sort_by_key(|t| order(&t.task_id));
        }
    }
    let bars = timeline(&tis, Utc::now());
    let tasks = tis
        .into_iter()
        .zip(bars)
        .map(|(ti, (left, width))| TaskItem {
            log_href: format!(
                "/dags/{}/runs/{}/tasks/{}/logs/{}",
                seg(&dag_id),
                seg(&run_id),
                seg(&ti.task_id),
                ti.try_number.max(1)
            ),
            left: format!("{left:.2}"),
            width: format!("{width:.2}"),
            ti,
        })
        .collect();
    render(&RunPage {
        can_edit: user.role != "viewer",
        chrome: user.chrome(),
        run,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::TaskState;

    fn ti(start: Option<i64>, end: Option<i64>) -> TaskStateRow {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        TaskStateRow {
            id: 1,
            task_id: "t".into(),
            state: TaskState::Success,
            try_number: 1,
            max_tries: 1,
            start_date: start.map(|s| t0 + chrono::Duration::seconds(s)),
            end_date: end.map(|s| t0 + chrono::Duration::seconds(s)),
            hostname: None,
            note: None,
        }
    }

    #[test]
    fn bars_share_one_axis() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:20Z")
            .unwrap()
            .with_timezone(&Utc);
        let bars = timeline(
            &[ti(Some(0), Some(10)), ti(Some(10), None), ti(None, None)],
            now,
        );
        assert_eq!(bars[0], (0.0, 50.0));
        assert_eq!(bars[1], (50.0, 50.0));
        assert_eq!(bars[2], (0.0, 0.0));
    }
}
