//! Every DAG file that failed to load, with each error's file, line and message.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{fmt_time, render, Chrome, Pager};
use crate::db::web::{self as q, ImportErrorRow};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

const PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    page: String,
}

#[derive(Template)]
#[template(path = "import_errors.html")]
pub struct ImportErrorsPage {
    pub chrome: Chrome,
    pub errors: Vec<ImportErrorRow>,
    pub dags_folder: String,
    pub pager: Pager,
}

impl ImportErrorsPage {
    pub fn time(&self, e: &ImportErrorRow) -> String {
        fmt_time(Some(e.created_at))
    }
    /// Each error of the file on its own line.
    pub fn lines<'a>(&self, e: &'a ImportErrorRow) -> Vec<&'a str> {
        e.message.lines().collect()
    }
}

pub async fn list(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(pq): Query<PageQuery>,
) -> Result<Response, WebError> {
    let page = pq.page.parse::<i64>().unwrap_or(1).max(1);
    let (errors, total) = q::import_errors(&st.pool, PER_PAGE, (page - 1) * PER_PAGE).await?;
    render(&ImportErrorsPage {
        chrome: user.chrome(),
        errors,
        dags_folder: st.settings.dags_folder.display().to_string(),
        pager: Pager::new(page, PER_PAGE, total),
    })
}
