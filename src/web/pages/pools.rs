//! Admin → Pools: every pool with its slots, and how many are running, queued and open
//! (weighted by the tasks' `pool_slots`); create, edit, delete (not `default_pool`).

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::variables::urlencode;
use super::{render, Chrome};
use crate::db::listing::{ListQuery, StoreError};
use crate::db::pools::{self as db, DeleteError, PoolSpec, PoolStats};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "admin/pools.html")]
pub struct PoolsPage {
    pub chrome: Chrome,
    pub pools: Vec<PoolStats>,
    pub can_edit: bool,
    pub error: Option<String>,
    /// The form: editing an existing pool or adding one.
    pub form: PoolSpec,
    pub editing: bool,
}

impl PoolsPage {
    pub fn slots(&self, p: &PoolStats) -> String {
        if p.slots < 0 {
            "unlimited".into()
        } else {
            p.slots.to_string()
        }
    }
    pub fn open(&self, p: &PoolStats) -> String {
        if p.slots < 0 {
            "∞".into()
        } else {
            p.open_slots().to_string()
        }
    }
    pub fn edit_href(&self, p: &PoolStats) -> String {
        format!("/pools?edit={}", urlencode(&p.pool))
    }
    pub fn is_default(&self, p: &PoolStats) -> bool {
        p.pool == db::DEFAULT_POOL
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListParams {
    edit: String,
}

async fn page(
    st: &AppState,
    user: &CurrentUser,
    form: PoolSpec,
    editing: bool,
    error: Option<String>,
) -> Result<Response, WebError> {
    let (pools, _) = db::list(&st.pool, &ListQuery::new(None, None, 1000, 0)).await?;
    render(&PoolsPage {
        chrome: user.chrome(),
        pools,
        can_edit: user.role != "viewer",
        error,
        form,
        editing,
    })
}

pub async fn list(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(p): Query<ListParams>,
) -> Result<Response, WebError> {
    let (form, editing) = match db::get(&st.pool, &p.edit).await? {
        Some(e) => (
            PoolSpec {
                name: e.pool,
                slots: e.slots,
                description: e.description,
                include_deferred: e.include_deferred,
            },
            true,
        ),
        None => (
            PoolSpec {
                name: String::new(),
                slots: 1,
                description: String::new(),
                include_deferred: false,
            },
            false,
        ),
    };
    page(&st, &user, form, editing, None).await
}

#[derive(Deserialize)]
pub struct SaveForm {
    name: String,
    slots: String,
    #[serde(default)]
    description: String,
}

pub async fn save(
    State(st): State<AppState>,
    user: CurrentUser,
    Form(f): Form<SaveForm>,
) -> Result<Response, WebError> {
    let mut spec = PoolSpec {
        name: f.name.trim().to_string(),
        slots: 0,
        description: f.description.trim().to_string(),
        include_deferred: false,
    };
    let slots = f.slots.trim().parse::<i64>().map_err(|_| {
        StoreError::Invalid(format!("slots `{}` is not a whole number", f.slots.trim()))
    });
    let result = match slots.and_then(db::check_slots) {
        Ok(s) => {
            spec.slots = s;
            db::put(&st.pool, &spec, true).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to("/pools").into_response()),
        Err(StoreError::Db(e)) => Err(e.into()),
        Err(e) => page(&st, &user, spec, false, Some(e.to_string())).await,
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    name: String,
}

pub async fn delete(
    State(st): State<AppState>,
    _user: CurrentUser,
    Form(f): Form<DeleteForm>,
) -> Result<Response, WebError> {
    match db::delete(&st.pool, &f.name).await {
        Ok(()) | Err(DeleteError::NotFound(_)) => Ok(Redirect::to("/pools").into_response()),
        Err(DeleteError::Default) => Err(WebError::BadRequest(
            "default_pool cannot be deleted.".into(),
        )),
        Err(DeleteError::Db(e)) => Err(e.into()),
    }
}

/// The routes of this page.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/pools", get(list).post(save))
        .route("/pools/delete", post(delete))
}
