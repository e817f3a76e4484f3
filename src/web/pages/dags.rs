//! The DAG list and the pause toggle.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{fmt_time, render, seg, Chrome, Pager};
use crate::db::web::{self as q, DagFilter, DagRow};
use crate::web::auth::{safe_next, CurrentUser};
use crate::web::error::WebError;
use crate::web::AppState;

pub const PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    tag: String,
    /// Lenient: anything but a positive number means the first page.
    page: String,
}

/// One DAG row of the list.
pub struct DagItem {
    pub row: DagRow,
}

impl DagItem {
    pub fn href(&self) -> String {
        format!("/dags/{}", seg(&self.row.dag_id))
    }
    pub fn last_state(&self) -> &str {
        self.row
            .recent_states
            .first()
            .map(|s| s.as_str())
            .unwrap_or("")
    }
    pub fn next_run(&self) -> String {
        if self.row.schedule.is_none() {
            return "manual only".into();
        }
        if self.row.schedule_ended {
            return crate::db::dags::ended_text(self.row.end_date).into();
        }
        fmt_time(self.row.next_logical_date.or(self.row.next_run_after))
    }
    pub fn schedule(&self) -> &str {
        self.row.schedule.as_deref().unwrap_or("None")
    }
    /// (state, link) of recent runs, oldest first so the newest is on the right.
    pub fn recent(&self) -> Vec<(String, String, String)> {
        self.row
            .recent_states
            .iter()
            .zip(&self.row.recent_run_ids)
            .rev()
            .map(|(s, r)| {
                (
                    s.to_string(),
                    r.clone(),
                    format!("/dags/{}/runs/{}", seg(&self.row.dag_id), seg(r)),
                )
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "dags/list.html")]
pub struct DagListPage {
    pub chrome: Chrome,
    pub items: Vec<DagItem>,
    pub tags: Vec<String>,
    pub q: String,
    pub tag: String,
    pub pager: Pager,
    pub import_errors: i64,
}

impl DagListPage {
    /// The list URL for another page, keeping the filters.
    pub fn page_href(&self, page: i64) -> String {
        let q = serde_urlencoded::to_string([("q", self.q.as_str()), ("tag", self.tag.as_str())])
            .unwrap_or_default();
        format!("/dags?{q}&page={page}")
    }
    /// Keep refreshing while a shown DAG has a run that may still change.
    pub fn live(&self) -> bool {
        self.items
            .iter()
            .any(|i| i.row.recent_states.iter().any(|s| s.is_unfinished()))
    }
    pub fn filtered(&self) -> bool {
        !self.q.is_empty() || !self.tag.is_empty()
    }
    /// Where the pause toggle returns to.
    pub fn here(&self) -> String {
        self.page_href(self.pager.page)
    }
}

pub async fn list(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(lq): Query<ListQuery>,
) -> Result<Response, WebError> {
    let page = lq.page.parse::<i64>().unwrap_or(1).max(1);
    let filter = DagFilter {
        tags: if lq.tag.is_empty() {
            vec![]
        } else {
            vec![lq.tag.clone()]
        },
        text: Some(lq.q.trim().to_string()),
        paused: None,
        only_active: true,
        limit: PER_PAGE,
        offset: (page - 1) * PER_PAGE,
    };
    let (rows, total) = q::list_dags(&st.pool, &filter).await?;
    let tags = q::all_tags(&st.pool).await?;
    let (_, import_errors) = q::import_errors(&st.pool, 0, 0).await?;
    render(&DagListPage {
        chrome: user.chrome(),
        items: rows.into_iter().map(|row| DagItem { row }).collect(),
        tags,
        q: lq.q,
        tag: lq.tag,
        pager: Pager::new(page, PER_PAGE, total),
        import_errors,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PauseForm {
    /// "true" to pause, "false" to unpause.
    paused: String,
    next: Option<String>,
}

/// Pauses or unpauses a DAG. The form's CSRF token was checked by `require_auth`, as for
/// every state-changing request.
pub async fn pause(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Form(f): Form<PauseForm>,
) -> Result<Response, WebError> {
    let paused = match f.paused.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(WebError::BadRequest(
                "`paused` must be true or false".into(),
            ))
        }
    };
    if !crate::db::dags::set_paused(&st.pool, &dag_id, paused).await? {
        return Err(WebError::NotFound(format!(
            "DAG `{dag_id}` not found. It may have been removed; go back to the DAG list."
        )));
    }
    let event = if paused { "pause" } else { "unpause" };
    let what = (Some(dag_id.as_str()), None, None);
    crate::web::api::events::record(&st, &user, "ui", event, what, serde_json::Value::Null).await;
    let next = f.next.as_deref().and_then(safe_next).unwrap_or("/dags");
    Ok(Redirect::to(next).into_response())
}
