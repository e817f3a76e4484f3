//! A task's log for one try: paged by line id (never the whole log at once), live-tailed over
//! server-sent events while the try runs, and downloadable as one text stream.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use crate::core::TaskState;

use super::{fmt_time, render, seg, Chrome};
use crate::db::logs::LogRow as LogLine;
use crate::db::web::{self as q, TiRow};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

/// Lines per page (and per SSE batch).
pub const PAGE_LINES: i64 = 1000;
const DOWNLOAD_BATCH: i64 = 10_000;

type LogPath = Path<(String, String, String, String)>;

/// A try number from the URL; anything else is a page that does not exist.
fn parse_try(raw: &str) -> Result<i32, WebError> {
    raw.parse::<i32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        WebError::NotFound(format!(
            "There is no try `{raw}`; tries are numbered from 1. Open the log from the run's page."
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LogQuery {
    /// The last line id already shown; lenient (anything else means the start).
    after: String,
}

impl LogQuery {
    fn after(&self) -> i64 {
        self.after.parse::<i64>().unwrap_or(0).max(0)
    }
}

#[derive(Template)]
#[template(path = "runs/log.html")]
pub struct LogPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i32,
    pub tries: Vec<i32>,
    pub state: TaskState,
    pub lines: Vec<LogLine>,
    pub after: i64,
    pub more: bool,
    /// A publish or sink task's topic (as the DAG's current version names it).
    pub topic: Option<super::dag_detail::TaskTopic>,
}

impl LogPage {
    /// Where the task instance's action form posts (the run page's task actions).
    pub fn action_href(&self) -> String {
        super::runs::task_action_href(&self.dag_id, &self.run_id, &self.task_id)
    }
    /// The task has not started, so an empty log is expected.
    pub fn not_started(&self) -> bool {
        matches!(
            self.state,
            TaskState::None | TaskState::Scheduled | TaskState::Queued
        )
    }
    fn base(&self) -> String {
        format!(
            "/dags/{}/runs/{}/tasks/{}/logs",
            seg(&self.dag_id),
            seg(&self.run_id),
            seg(&self.task_id)
        )
    }
    pub fn run_href(&self) -> String {
        format!("/dags/{}/runs/{}", seg(&self.dag_id), seg(&self.run_id))
    }
    pub fn dag_href(&self) -> String {
        format!("/dags/{}", seg(&self.dag_id))
    }
    pub fn try_href(&self, n: &i32) -> String {
        format!("{}/{n}", self.base())
    }
    pub fn next_href(&self) -> String {
        let last = self.lines.last().map(|l| l.id).unwrap_or(self.after);
        format!("{}/{}?after={last}", self.base(), self.try_number)
    }
    pub fn download_href(&self) -> String {
        format!("{}/{}/download", self.base(), self.try_number)
    }
    /// The SSE URL when this is the last page of a try that is still running.
    pub fn stream_href(&self) -> Option<String> {
        let last = self.lines.last().map(|l| l.id).unwrap_or(self.after);
        (!self.more && self.is_live())
            .then(|| format!("{}/{}/stream?after={last}", self.base(), self.try_number))
    }
    fn is_live(&self) -> bool {
        self.state.is_unfinished() && self.tries.last() == Some(&self.try_number)
    }
    pub fn time(&self, l: &LogLine) -> String {
        fmt_time(Some(l.at))
    }
}

async fn find_ti(
    st: &AppState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<TiRow, WebError> {
    q::task_instance(&st.pool, dag_id, run_id, task_id).await?.ok_or_else(|| {
        WebError::NotFound(format!("Task `{task_id}` of run `{run_id}` (DAG `{dag_id}`) not found; open it from the run's page."))
    })
}

/// The topic of a publish or sink task, for its link to the topic monitor. The current
/// version's: its topic is the one that matters now.
async fn task_topic(
    st: &AppState,
    dag_id: &str,
    task_id: &str,
) -> Option<super::dag_detail::TaskTopic> {
    let dag = match crate::db::dags::current_spec(&st.pool, dag_id).await {
        Ok(d) => d?,
        Err(e) => {
            tracing::warn!(dag_id, error = %e, "could not read the DAG for its task's topic");
            return None;
        }
    };
    super::dag_detail::task_topics(&dag, &st.settings.operator_env)
        .into_iter()
        .find(|t| t.task_id == task_id)
}

/// A try the task has not had is a 404, not an empty page.
fn check_try(ti: &TiRow, try_number: i32) -> Result<(), WebError> {
    let tries = ti.try_number.max(1);
    if (1..=tries).contains(&try_number) {
        return Ok(());
    }
    Err(WebError::NotFound(format!(
        "Task `{}` has no try {try_number}: its tries are 1 to {tries}.",
        ti.task_id
    )))
}

pub async fn show(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id, try_number)): LogPath,
    Query(lq): Query<LogQuery>,
) -> Result<Response, WebError> {
    let try_number = parse_try(&try_number)?;
    let ti = find_ti(&st, &dag_id, &run_id, &task_id).await?;
    check_try(&ti, try_number)?;
    let mut lines =
        crate::db::logs::page(&st.pool, ti.id, try_number, lq.after(), PAGE_LINES + 1).await?;
    let more = lines.len() as i64 > PAGE_LINES;
    lines.truncate(PAGE_LINES as usize);
    let topic = task_topic(&st, &dag_id, &task_id).await;
    render(&LogPage {
        topic,
        chrome: user.chrome(),
        tries: (1..=ti.try_number.max(1)).collect(),
        state: ti.state,
        dag_id,
        run_id,
        task_id,
        try_number,
        lines,
        after: lq.after(),
        more,
    })
}

/// Server-sent events: `line` events (JSON `{id, at, stream, line}`) after `after`, then one
/// `end` event (data: the final state) once the try is over and every line has been sent.
pub async fn stream(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id, try_number)): LogPath,
    Query(lq): Query<LogQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, WebError> {
    let try_number = parse_try(&try_number)?;
    let ti = find_ti(&st, &dag_id, &run_id, &task_id).await?;
    check_try(&ti, try_number)?;
    struct Tail {
        st: AppState,
        ti_id: i64,
        try_number: i32,
        after: i64,
        done: bool,
    }
    let init = Tail {
        st,
        ti_id: ti.id,
        try_number,
        after: lq.after(),
        done: false,
    };
    let events = stream::unfold(init, |mut t| async move {
        if t.done {
            return None;
        }
        loop {
            let lines = match crate::db::logs::page(&t.st.pool, t.ti_id, t.try_number, t.after, PAGE_LINES).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "log tail query failed");
                    t.done = true;
                    return Some((vec![Event::default().event("end").data("error")], t));
                }
            };
            if let Some(last) = lines.last() {
                t.after = last.id;
                let events = lines
                    .iter()
                    .map(|l| {
                        let data = serde_json::json!({"id": l.id, "at": fmt_time(Some(l.at)), "stream": l.stream, "line": l.line});
                        Event::default().event("line").id(l.id.to_string()).data(data.to_string())
                    })
                    .collect();
                return Some((events, t));
            }
            // The `end` event carries the try's final state, so the page can show it.
            let (finished, state) = match q::ti_state(&t.st.pool, t.ti_id).await {
                Ok(Some((_, current_try))) if current_try > t.try_number => (true, "retried".to_string()),
                Ok(Some((state, _))) => (state.is_finished(), state.to_string()),
                _ => (true, "unknown".to_string()),
            };
            if finished || t.st.shutdown.is_cancelled() {
                t.done = true;
                return Some((vec![Event::default().event("end").data(if t.st.shutdown.is_cancelled() { "shutdown".to_string() } else { state })], t));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = t.st.shutdown.cancelled() => {}
            }
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The whole try as plain text, streamed in batches so memory stays flat for huge logs.
pub async fn download(
    State(st): State<AppState>,
    Path((dag_id, run_id, task_id, try_number)): LogPath,
) -> Result<Response, WebError> {
    let try_number = parse_try(&try_number)?;
    let ti = find_ti(&st, &dag_id, &run_id, &task_id).await?;
    check_try(&ti, try_number)?;
    let pool = st.pool.clone();
    let body = stream::unfold(Some(0i64), move |after| {
        let pool = pool.clone();
        async move {
            let after = after?;
            match crate::db::logs::page(&pool, ti.id, try_number, after, DOWNLOAD_BATCH).await {
                Ok(lines) if lines.is_empty() => None,
                Ok(lines) => {
                    let mut chunk = String::with_capacity(lines.len() * 100);
                    for l in &lines {
                        chunk.push_str(&format!("[{}] {}\n", l.at.to_rfc3339(), l.line));
                    }
                    let next = (lines.len() as i64 == DOWNLOAD_BATCH)
                        .then(|| lines.last().map(|l| l.id).unwrap_or(after));
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        }
    });
    let name: String = format!("{dag_id}__{run_id}__{task_id}__{try_number}.log")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
