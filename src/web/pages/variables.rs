//! Admin → Variables: list with search, create, edit, delete, import and export (Airflow's
//! `variables export` JSON). Values of variables whose key looks sensitive are shown as
//! `***` and never put into a form; saving the edit form with the value left empty keeps the
//! stored one. Export holds every value, so only admins may download it.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{render, Chrome, Pager};
use crate::core::connection::is_sensitive_name;
use crate::db::listing::{ListQuery, StoreError};
use crate::db::variables::{self as db, OnConflict, Variable};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

const PER_PAGE: i64 = 50;

/// A store error as a page error: bad input and missing keys are the user's to fix.
pub fn page_error(e: StoreError) -> WebError {
    match e {
        StoreError::Invalid(m) => WebError::BadRequest(m),
        StoreError::Vault(v) => WebError::BadRequest(v.to_string()),
        StoreError::Db(e) => e.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListParams {
    q: String,
    page: String,
}

pub struct Row {
    pub key: String,
    pub value: String,
    pub description: String,
    pub encrypted: bool,
}

#[derive(Template)]
#[template(path = "admin/variables.html")]
pub struct VariablesPage {
    pub chrome: Chrome,
    pub rows: Vec<Row>,
    pub q: String,
    pub pager: Pager,
    pub message: Option<String>,
    pub can_edit: bool,
}

impl VariablesPage {
    pub fn edit_href(&self, r: &Row) -> String {
        format!("/variables/edit?key={}", urlencode(&r.key))
    }
}

pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// What the list shows of a value: `***` for sensitive keys (and inside JSON), at most 120
/// characters.
fn shown(v: &Variable) -> String {
    let s = crate::web::api::variables::shown_value(&v.key, &v.value);
    if s.chars().count() > 120 {
        s.chars().take(117).collect::<String>() + "..."
    } else {
        s
    }
}

pub async fn list(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(p): Query<ListParams>,
) -> Result<Response, WebError> {
    let page = p.page.parse::<i64>().unwrap_or(1).max(1);
    let pattern = (!p.q.trim().is_empty()).then(|| p.q.trim().to_string());
    let q = ListQuery::new(pattern.as_deref(), None, PER_PAGE, (page - 1) * PER_PAGE)
        .order_by(&["key".into()], db::ORDER_FIELDS)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let (vars, total) = db::list(&st.pool, &st.settings.vault, &q)
        .await
        .map_err(page_error)?;
    render(&VariablesPage {
        chrome: user.chrome(),
        rows: vars
            .iter()
            .map(|v| Row {
                value: shown(v),
                key: v.key.clone(),
                description: v.description.clone().unwrap_or_default(),
                encrypted: v.is_encrypted,
            })
            .collect(),
        q: p.q,
        pager: Pager::new(page, PER_PAGE, total),
        message: None,
        can_edit: user.role != "viewer",
    })
}

#[derive(Template)]
#[template(path = "admin/variable_form.html")]
pub struct VariableForm {
    pub chrome: Chrome,
    /// The key being edited; `None` for a new variable.
    pub existing: Option<String>,
    pub key: String,
    pub value: String,
    pub description: String,
    pub sensitive: bool,
    pub error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeyParam {
    key: String,
}

pub async fn new_form(user: CurrentUser) -> Result<Response, WebError> {
    render(&VariableForm {
        chrome: user.chrome(),
        existing: None,
        key: String::new(),
        value: String::new(),
        description: String::new(),
        sensitive: false,
        error: None,
    })
}

pub async fn edit_form(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(k): Query<KeyParam>,
) -> Result<Response, WebError> {
    let v = db::get(&st.pool, &st.settings.vault, &k.key)
        .await
        .map_err(page_error)?
        .ok_or_else(|| WebError::NotFound(format!("There is no variable `{}`.", k.key)))?;
    let sensitive = is_sensitive_name(&v.key);
    render(&VariableForm {
        chrome: user.chrome(),
        existing: Some(v.key.clone()),
        value: if sensitive { String::new() } else { v.value },
        key: v.key,
        description: v.description.unwrap_or_default(),
        sensitive,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct SaveForm {
    /// Set when editing: the key the form was opened for.
    #[serde(default)]
    existing: String,
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    description: String,
}

pub async fn save(
    State(st): State<AppState>,
    user: CurrentUser,
    Form(f): Form<SaveForm>,
) -> Result<Response, WebError> {
    let key = f.key.trim().to_string();
    let editing = !f.existing.is_empty();
    let description = (!f.description.trim().is_empty()).then(|| f.description.trim().to_string());
    let result = if editing && f.value.is_empty() && is_sensitive_name(&key) && key == f.existing {
        // The form never showed the secret: an empty value keeps it.
        db::update(
            &st.pool,
            &st.settings.vault,
            &key,
            None,
            Some(description.as_deref()),
        )
        .await
        .map(|_| ())
    } else {
        let on_conflict = if editing {
            OnConflict::Overwrite
        } else {
            OnConflict::Keep
        };
        match db::put(
            &st.pool,
            &st.settings.vault,
            &key,
            &f.value,
            description.as_deref(),
            on_conflict,
        )
        .await
        {
            Ok(false) => Err(StoreError::Invalid(format!(
                "a variable `{key}` already exists; edit it instead"
            ))),
            Ok(true) => {
                if editing && key != f.existing {
                    db::delete(&st.pool, &f.existing).await?;
                }
                if editing && description.is_none() {
                    db::update(&st.pool, &st.settings.vault, &key, None, Some(None))
                        .await
                        .map_err(page_error)?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(()) => Ok(Redirect::to("/variables").into_response()),
        Err(StoreError::Db(e)) => Err(e.into()),
        Err(e) => render(&VariableForm {
            chrome: user.chrome(),
            existing: editing.then_some(f.existing),
            sensitive: is_sensitive_name(&key),
            key,
            value: String::new(),
            description: f.description,
            error: Some(e.to_string()),
        }),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    key: String,
}

pub async fn delete(
    State(st): State<AppState>,
    _user: CurrentUser,
    Form(f): Form<DeleteForm>,
) -> Result<Response, WebError> {
    db::delete(&st.pool, &f.key).await?;
    Ok(Redirect::to("/variables").into_response())
}

#[derive(Deserialize)]
pub struct ImportForm {
    json: String,
    #[serde(default)]
    overwrite: Option<String>,
}

pub async fn import(
    State(st): State<AppState>,
    user: CurrentUser,
    Form(f): Form<ImportForm>,
) -> Result<Response, WebError> {
    let entries = crate::core::transfer::parse_import(&f.json)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let on_conflict = if f.overwrite.is_some() {
        OnConflict::Overwrite
    } else {
        OnConflict::Keep
    };
    let (mut done, mut kept) = (0, 0);
    for (key, value, description) in &entries {
        match db::put(
            &st.pool,
            &st.settings.vault,
            key,
            value,
            description.as_deref(),
            on_conflict,
        )
        .await
        .map_err(page_error)?
        {
            true => done += 1,
            false => kept += 1,
        }
    }
    let (vars, total) = db::list(
        &st.pool,
        &st.settings.vault,
        &ListQuery::new(None, None, PER_PAGE, 0)
            .order_by(&["key".into()], db::ORDER_FIELDS)
            .map_err(|e| WebError::BadRequest(e.to_string()))?,
    )
    .await
    .map_err(page_error)?;
    render(&VariablesPage {
        chrome: user.chrome(),
        rows: vars
            .iter()
            .map(|v| Row {
                value: shown(v),
                key: v.key.clone(),
                description: v.description.clone().unwrap_or_default(),
                encrypted: v.is_encrypted,
            })
            .collect(),
        q: String::new(),
        pager: Pager::new(1, PER_PAGE, total),
        message: Some(format!(
            "Imported {done} of {} variable(s){}.",
            entries.len(),
            if kept > 0 {
                format!("; {kept} already existed and were kept")
            } else {
                String::new()
            }
        )),
        can_edit: true,
    })
}

pub async fn export(State(st): State<AppState>, user: CurrentUser) -> Result<Response, WebError> {
    if user.role == "viewer" {
        return Err(WebError::Forbidden(
            "An export holds every value, secrets included; only admins may download it.".into(),
        ));
    }
    let vars = db::all(&st.pool, &st.settings.vault)
        .await
        .map_err(page_error)?;
    let body =
        crate::core::transfer::export_json(&vars.into_iter().map(Into::into).collect::<Vec<_>>());
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"variables.json\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The routes of this page.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/variables", get(list).post(save))
        .route("/variables/new", get(new_form))
        .route("/variables/edit", get(edit_form))
        .route("/variables/delete", post(delete))
        .route("/variables/import", post(import))
        .route("/variables/export", get(export))
}
