//! One run: each task's state, tries, times and a Gantt-style timeline. The page refreshes
//! its live part while the run is unfinished (web/static/app.js).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::{fmt_duration, fmt_time, render, seg, Chrome};
use crate::core::{RunState, TaskState};
use crate::db::runs::{self, RunRow, TaskStateRow, TryRow};
use crate::db::web as q;
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

pub struct TaskItem {
    pub ti: TaskStateRow,
    pub log_href: String,
    /// One timeline bar per try, earliest first.
    pub bars: Vec<Bar>,
}

/// A try on the timeline: position and width in percent of the run's span.
pub struct Bar {
    pub state: TaskState,
    pub left: String,
    pub width: String,
    pub title: String,
}

/// A try to place on the timeline; `end` is `None` while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub try_number: i32,
    pub state: TaskState,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// The timeline's axis: where it starts and ends, and labelled ticks (percent, label).
pub struct Axis {
    pub from: String,
    pub to: String,
    pub ticks: Vec<(String, String)>,
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
}

#[derive(Template)]
#[template(path = "runs/detail.html")]
pub struct RunPage {
    pub chrome: Chrome,
    pub run: RunRow,
    pub tasks: Vec<TaskItem>,
    pub axis: Option<Axis>,
    /// Whether the user may change things (not a viewer): the action buttons show.
    pub can_edit: bool,
}

impl RunPage {
    /// A note, Markdown rendered as safe HTML.
    pub fn md(&self, note: &str) -> String {
        crate::web::markdown::render(note)
    }
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
        task_action_href(&self.run.dag_id, &self.run.run_id, task_id)
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

/// Where a task instance's action form (clear, mark) posts, from the run page and the task
/// instance page alike.
pub fn task_action_href(dag_id: &str, run_id: &str, task_id: &str) -> String {
    format!(
        "/dags/{}/runs/{}/tasks/{}/action",
        seg(dag_id),
        seg(run_id),
        seg(task_id)
    )
}

/// Every try of each task: the recorded ones, then the current one if it has started and is
/// not recorded yet (it runs).
pub fn spans(tis: &[TaskStateRow], tries: &[TryRow]) -> Vec<Vec<Span>> {
    tis.iter()
        .map(|ti| {
            let mut out: Vec<Span> = tries
                .iter()
                .filter(|t| t.ti_id == ti.id)
                .filter_map(|t| {
                    Some(Span {
                        try_number: t.try_number,
                        state: t.state,
                        start: t.start_date?,
                        end: t.end_date,
                    })
                })
                .collect();
            if let Some(start) = ti.start_date {
                if !out.iter().any(|s| s.try_number == ti.try_number) {
                    out.push(Span {
                        try_number: ti.try_number,
                        state: ti.state,
                        start,
                        end: ti.end_date,
                    });
                }
            }
            out.sort_by_key(|s| s.try_number);
            out
        })
        .collect()
}

/// Places every try on one time axis from the first start to the last end (or now, while
/// something runs): (left, width) in percent per try, and the axis's ends.
#[allow(clippy::type_complexity)]
pub fn timeline(
    spans: &[Vec<Span>],
    now: DateTime<Utc>,
) -> (Vec<Vec<(f64, f64)>>, Option<(DateTime<Utc>, DateTime<Utc>)>) {
    let all = spans.iter().flatten();
    let first = all.clone().map(|s| s.start).min();
    let last = all.map(|s| s.end.unwrap_or(now)).max();
    let (Some(first), Some(last)) = (first, last) else {
        return (spans.iter().map(|_| Vec::new()).collect(), None);
    };
    let span = ((last - first).num_milliseconds() as f64).max(1.0);
    let bars = spans
        .iter()
        .map(|tries| {
            tries
                .iter()
                .map(|s| {
                    let e = s.end.unwrap_or(now);
                    let left = (s.start - first).num_milliseconds() as f64 / span * 100.0;
                    let width = ((e - s.start).num_milliseconds() as f64 / span * 100.0).max(0.5);
                    (left, width.min(100.0 - left).max(0.5))
                })
                .collect()
        })
        .collect();
    (bars, Some((first, last)))
}

/// Ticks at every quarter of the axis, labelled by the time since its start.
fn axis(from: DateTime<Utc>, to: DateTime<Utc>) -> Axis {
    let total = (to - from).num_milliseconds().max(0) as f64 / 1000.0;
    let ticks = (0..=4)
        .map(|i| {
            let secs = total * i as f64 / 4.0;
            let label = if total >= 120.0 {
                format!("+{:.0}m", secs / 60.0)
            } else if total >= 10.0 {
                format!("+{secs:.0}s")
            } else {
                format!("+{secs:.1}s")
            };
            (format!("{}", i * 25), label)
        })
        .collect();
    Axis {
        from: fmt_time(Some(from)),
        to: fmt_time(Some(to)),
        ticks,
    }
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
    let tries = runs::tries(&st.pool, run.id).await?;
    let spans = spans(&tis, &tries);
    let (bars, ends) = timeline(&spans, Utc::now());
    let tasks = tis
        .into_iter()
        .zip(spans.into_iter().zip(bars))
        .map(|(ti, (spans, bars))| TaskItem {
            log_href: format!(
                "/dags/{}/runs/{}/tasks/{}/logs/{}",
                seg(&dag_id),
                seg(&run_id),
                seg(&ti.task_id),
                ti.try_number.max(1)
            ),
            bars: spans
                .iter()
                .zip(bars)
                .map(|(s, (left, width))| Bar {
                    state: s.state,
                    left: format!("{left:.2}"),
                    width: format!("{width:.2}"),
                    title: format!(
                        "try {}: {}, {} → {}",
                        s.try_number,
                        s.state,
                        fmt_time(Some(s.start)),
                        fmt_time(s.end)
                    ),
                })
                .collect(),
            ti,
        })
        .collect();
    render(&RunPage {
        can_edit: user.role != "viewer",
        chrome: user.chrome(),
        run,
        tasks,
        axis: ends.map(|(from, to)| axis(from, to)),
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
    fn bars_share_one_axis_and_every_try_has_one() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let now = at(20);
        // A task that failed once (0–5 s) and succeeded on its second try (5–10 s), one
        // still running since 10 s, one not started.
        let mut retried = ti(Some(5), Some(10));
        retried.try_number = 2;
        let mut running = ti(Some(10), None);
        running.id = 2;
        let mut waiting = ti(None, None);
        waiting.id = 3;
        let history = [
            TryRow {
                ti_id: 1,
                try_number: 1,
                state: TaskState::Failed,
                start_date: Some(at(0)),
                end_date: Some(at(5)),
            },
            TryRow {
                ti_id: 1,
                try_number: 2,
                state: TaskState::Success,
                start_date: Some(at(5)),
                end_date: Some(at(10)),
            },
        ];
        let spans = spans(&[retried, running, waiting], &history);
        assert_eq!(spans[0].len(), 2, "both tries of the retried task");
        assert_eq!(spans[0][0].state, TaskState::Failed);
        assert_eq!(spans[1].len(), 1, "the running try, not yet recorded");
        assert!(spans[2].is_empty());
        let (bars, ends) = timeline(&spans, now);
        assert_eq!(bars[0], vec![(0.0, 25.0), (25.0, 25.0)]);
        assert_eq!(bars[1], vec![(50.0, 50.0)]);
        assert_eq!(ends, Some((at(0), at(20))));
        let a = axis(at(0), at(20));
        assert_eq!(a.ticks[2], ("50".to_string(), "+10s".to_string()));
        assert!(a.from.ends_with(" UTC"));
    }
}
