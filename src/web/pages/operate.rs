//! The run page's actions: clear, mark and delete a run, clear and mark a task instance, and
//! notes. Each action is a form; the first post answers a confirmation page that lists
//! exactly the task instances that will change (a dry run), and only its "confirm" post
//! changes anything. Viewers see no buttons, and `require_auth` refuses their posts anyway.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::{render, seg, Chrome};
use crate::core::{RunState, TaskState};
use crate::db::api::task_instances::{by_ids, TiApiRow};
use crate::db::operate::{self, Applied, ClearRequest, MarkRequest, RunFilter, RunMark, Tasks};
use crate::db::runs::{self, RunRow};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

/// A run or task action form.
#[derive(Deserialize)]
pub struct ActionForm {
    /// `clear`, `clear_failed`, `success`, `failed`, `skipped`, `queued` or `delete`.
    action: String,
    /// Checkboxes of the task actions ("on" when ticked).
    downstream: Option<String>,
    upstream: Option<String>,
    /// Set by the confirmation page's form.
    confirm: Option<String>,
}

#[derive(Template)]
#[template(path = "runs/confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub run: RunRow,
    pub title: String,
    pub action: String,
    pub downstream: bool,
    pub upstream: bool,
    pub tis: Vec<TiApiRow>,
    /// What happens to the listed task instances, in words.
    pub outcome: String,
}

impl ConfirmPage {
    pub fn run_href(&self) -> String {
        run_href(&self.run)
    }
    pub fn dag_href(&self) -> String {
        format!("/dags/{}", seg(&self.run.dag_id))
    }
}

fn run_href(run: &RunRow) -> String {
    format!("/dags/{}/runs/{}", seg(&run.dag_id), seg(&run.run_id))
}

async fn find_run(st: &AppState, dag_id: &str, run_id: &str) -> Result<RunRow, WebError> {
    runs::get(&st.pool, dag_id, run_id).await?.ok_or_else(|| {
        WebError::NotFound(format!(
            "Run `{run_id}` of DAG `{dag_id}` not found; it may have been deleted."
        ))
    })
}

fn bad_action(a: &str) -> WebError {
    WebError::BadRequest(format!("unknown action `{a}`"))
}

/// A whole run's action: clear (all or failed), mark success/failed/queued, delete.
pub async fn run_action(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, WebError> {
    let run = find_run(&st, &dag_id, &run_id).await?;
    let confirmed = f.confirm.as_deref() == Some("yes");
    let clear = |only_failed: bool, dry_run: bool| ClearRequest {
        dag_id: dag_id.clone(),
        runs: RunFilter {
            run_id: Some(run_id.clone()),
            ..Default::default()
        },
        tasks: Tasks::All,
        include_upstream: false,
        include_downstream: false,
        only_failed,
        only_running: false,
        dry_run,
    };
    let mark = |state: RunState, dry_run: bool| RunMark {
        run_pk: run.id,
        version_id: run.version_id,
        state,
        dry_run,
    };
    let (title, outcome, ids) = match f.action.as_str() {
        a @ ("clear" | "clear_failed") => {
            let only_failed = a == "clear_failed";
            let done = operate::clear(&st.pool, &clear(only_failed, !confirmed)).await?;
            let title = if only_failed {
                "Clear the failed tasks of"
            } else {
                "Clear every task of"
            };
            (title, "run again as new tries", done.ti_ids)
        }
        a @ ("success" | "failed" | "queued") => {
            let state = RunState::parse(a).ok_or_else(|| bad_action(a))?;
            let done = operate::mark_run(&st.pool, mark(state, !confirmed)).await?;
            let (title, outcome) = match state {
                RunState::Success => ("Mark success:", "become success"),
                RunState::Failed => (
                    "Mark failed:",
                    "running ones fail, unfinished ones are skipped",
                ),
                _ => ("Run again:", "run again as new tries"),
            };
            (title, outcome, done.ti_ids)
        }
        "delete" => {
            let all: Vec<i64> = runs::task_states(&st.pool, run.id)
                .await?
                .iter()
                .map(|t| t.id)
                .collect();
            if confirmed {
                operate::delete_run(&st.pool, run.id).await?;
                record(&st, &user, "delete", &run, None, json!({})).await;
                return Ok(Redirect::to(&format!("/dags/{}", seg(&dag_id))).into_response());
            }
            (
                "Delete",
                "are deleted with the run, their logs and XComs",
                all,
            )
        }
        a => return Err(bad_action(a)),
    };
    if confirmed {
        let event = if f.action.starts_with("clear") {
            "clear"
        } else {
            "mark"
        };
        let extra = json!({"action": f.action, "task_instances": ids.len()});
        record(&st, &user, event, &run, None, extra).await;
        return Ok(Redirect::to(&run_href(&run)).into_response());
    }
    confirm_page(
        &st,
        &user,
        run,
        &f,
        format!("{title} run {run_id}"),
        outcome,
        ids,
    )
    .await
}

/// One task instance's action: clear (with downstream/upstream) or mark success/failed/skipped.
pub async fn task_action(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, WebError> {
    let run = find_run(&st, &dag_id, &run_id).await?;
    let confirmed = f.confirm.as_deref() == Some("yes");
    let (downstream, upstream) = (f.downstream.is_some(), f.upstream.is_some());
    let (title, outcome, done): (String, String, Applied) = match f.action.as_str() {
        "clear" => {
            let req = ClearRequest {
                dag_id: dag_id.clone(),
                runs: RunFilter {
                    run_id: Some(run_id.clone()),
                    ..Default::default()
                },
                tasks: Tasks::Ids(vec![task_id.clone()]),
                include_upstream: upstream,
                include_downstream: downstream,
                only_failed: false,
                only_running: false,
                dry_run: !confirmed,
            };
            let c = operate::clear(&st.pool, &req).await?;
            let applied = Applied {
                ti_ids: c.ti_ids,
                run_state: None,
            };
            (
                format!("Clear {task_id}"),
                "run again as new tries".into(),
                applied,
            )
        }
        a @ ("success" | "failed" | "skipped") => {
            let state = TaskState::parse(a).ok_or_else(|| bad_action(a))?;
            let req = MarkRequest {
                run_pk: run.id,
                version_id: run.version_id,
                task_ids: vec![task_id.clone()],
                state,
                include_upstream: upstream,
                include_downstream: downstream,
                dry_run: !confirmed,
            };
            let applied = operate::mark_tasks(&st.pool, &req).await?;
            (
                format!("Mark {task_id} {state}"),
                format!("become {state}; the tasks after them react by their trigger rules"),
                applied,
            )
        }
        a => return Err(bad_action(a)),
    };
    if confirmed {
        let event = if f.action == "clear" { "clear" } else { "mark" };
        let extra = json!({"action": f.action, "downstream": downstream, "upstream": upstream,
                           "task_instances": done.ti_ids.len()});
        record(&st, &user, event, &run, Some(&task_id), extra).await;
        return Ok(Redirect::to(&run_href(&run)).into_response());
    }
    let title = format!("{title} in run {run_id}");
    confirm_page(&st, &user, run, &f, title, &outcome, done.ti_ids).await
}

async fn confirm_page(
    st: &AppState,
    user: &CurrentUser,
    run: RunRow,
    f: &ActionForm,
    title: String,
    outcome: &str,
    ids: Vec<i64>,
) -> Result<Response, WebError> {
    let tis = by_ids(&st.pool, &ids).await?;
    render(&ConfirmPage {
        chrome: user.chrome(),
        run,
        title,
        action: f.action.clone(),
        downstream: f.downstream.is_some(),
        upstream: f.upstream.is_some(),
        tis,
        outcome: outcome.to_string(),
    })
}

async fn record(
    st: &AppState,
    user: &CurrentUser,
    event: &str,
    run: &RunRow,
    task_id: Option<&str>,
    extra: serde_json::Value,
) {
    let what = (
        Some(run.dag_id.as_str()),
        Some(run.run_id.as_str()),
        task_id,
    );
    crate::web::api::events::record(st, user, "ui", event, what, extra).await;
}

/// The note form of a run (or, with `task_id`, of one of its task instances).
#[derive(Deserialize)]
pub struct NoteForm {
    note: String,
    task_id: Option<String>,
}

pub async fn note(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, run_id)): Path<(String, String)>,
    Form(f): Form<NoteForm>,
) -> Result<Response, WebError> {
    let run = find_run(&st, &dag_id, &run_id).await?;
    let text = f.note.trim();
    if text.len() > 1000 {
        return Err(WebError::BadRequest(
            "a note has at most 1000 characters".into(),
        ));
    }
    let note = (!text.is_empty()).then_some(text);
    let task_id = f.task_id.filter(|t| !t.is_empty());
    match &task_id {
        Some(t) => {
            let ti = runs::task_states(&st.pool, run.id)
                .await?
                .into_iter()
                .find(|x| x.task_id == *t)
                .ok_or_else(|| WebError::NotFound(format!("no task `{t}` in this run")))?;
            operate::set_ti_notes(&st.pool, &[ti.id], note).await?;
        }
        None => operate::set_run_note(&st.pool, run.id, note).await?,
    }
    record(
        &st,
        &user,
        "note",
        &run,
        task_id.as_deref(),
        json!({"note": note}),
    )
    .await;
    Ok(Redirect::to(&run_href(&run)).into_response())
}
