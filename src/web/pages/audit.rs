//! The audit log page: every change, newest first, filtered by DAG, event, user or run.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{fmt_time, render, Chrome, Pager};
use crate::db::api::Page;
use crate::db::events::{self, EventQuery, EventRow};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

const PER_PAGE: i64 = 50;

/// The filters, as the form sends them (empty = any).
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct AuditQuery {
    pub dag_id: String,
    pub event: String,
    pub owner: String,
    pub run_id: String,
    pub page: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    pub q: AuditQuery,
    pub events: Vec<EventRow>,
    pub pager: Pager,
}

impl AuditPage {
    pub fn time(&self, e: &EventRow) -> String {
        fmt_time(Some(e.at))
    }
    pub fn extra(&self, e: &EventRow) -> String {
        match &e.extra {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            v => v.to_string(),
        }
    }
    /// The query string of another page with the same filters.
    pub fn page_href(&self, page: i64) -> String {
        let q = serde_urlencoded::to_string([
            ("dag_id", self.q.dag_id.as_str()),
            ("event", self.q.event.as_str()),
            ("owner", self.q.owner.as_str()),
            ("run_id", self.q.run_id.as_str()),
            ("page", &page.to_string()),
        ])
        .unwrap_or_default();
        format!("/audit-log?{q}")
    }
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub async fn list(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let page = q.page.parse::<i64>().unwrap_or(1).max(1);
    let query = EventQuery {
        dag_id: some(&q.dag_id),
        run_id: some(&q.run_id),
        owner: some(&q.owner),
        events: some(&q.event).into_iter().collect(),
        page: Page {
            limit: PER_PAGE,
            offset: (page - 1) * PER_PAGE,
        },
        ..Default::default()
    };
    let (events, total) = events::list(&st.pool, &query).await?;
    render(&AuditPage {
        chrome: user.chrome(),
        q,
        events,
        pager: Pager::new(page, PER_PAGE, total),
    })
}
