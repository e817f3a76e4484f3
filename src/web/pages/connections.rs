//! Admin → Connections: list with search, create, edit, delete, and test (when
//! `core.test_connection` is on). The password is never shown back: the form leaves it
//! empty, and saving with it empty keeps the stored one. Values under sensitive keys of the
//! extra are shown as `***`; saving `***` back keeps them too.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::variables::{page_error, urlencode};
use super::{render, Chrome, Pager};
use crate::core::connection::Connection;
use crate::db::connections::{self as db, OnConflict};
use crate::db::listing::{ListQuery, StoreError};
use crate::web::api::connections::{keep_masked, shown_extra};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

const PER_PAGE: i64 = 50;

/// Types the operators use, offered in the form (any other type can be typed in).
pub const TYPES: &[&str] = &["http", "https", "kafka", "postgres", "cassandra"];

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListParams {
    q: String,
    page: String,
}

pub struct Row {
    pub conn_id: String,
    pub conn_type: String,
    pub host: String,
    pub port: String,
    pub login: String,
    pub has_password: bool,
    pub description: String,
}

#[derive(Template)]
#[template(path = "admin/connections.html")]
pub struct ConnectionsPage {
    pub chrome: Chrome,
    pub rows: Vec<Row>,
    pub q: String,
    pub pager: Pager,
    pub can_edit: bool,
}

impl ConnectionsPage {
    pub fn edit_href(&self, r: &Row) -> String {
        format!("/connections/edit?conn_id={}", urlencode(&r.conn_id))
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
        .order_by(&["conn_id".into()], db::ORDER_FIELDS)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let (conns, total) = db::list(&st.pool, &st.settings.vault, &q)
        .await
        .map_err(page_error)?;
    render(&ConnectionsPage {
        chrome: user.chrome(),
        rows: conns
            .into_iter()
            .map(|c| Row {
                conn_id: c.conn.conn_id,
                conn_type: c.conn.conn_type,
                host: c.conn.host.unwrap_or_default(),
                port: c.conn.port.map(|p| p.to_string()).unwrap_or_default(),
                login: c.conn.login.unwrap_or_default(),
                has_password: c.conn.password.is_some_and(|p| !p.is_empty()),
                description: c.conn.description.unwrap_or_default(),
            })
            .collect(),
        q: p.q,
        pager: Pager::new(page, PER_PAGE, total),
        can_edit: user.role != "viewer",
    })
}

#[derive(Template)]
#[template(path = "admin/connection_form.html")]
pub struct ConnectionForm {
    pub chrome: Chrome,
    pub existing: Option<String>,
    pub f: Fields,
    pub has_password: bool,
    pub types: &'static [&'static str],
    pub error: Option<String>,
    /// The outcome of a test: (success, message).
    pub tested: Option<(bool, String)>,
    pub can_test: bool,
}

/// The form's fields as text; the password is never filled in.
#[derive(Default, Clone)]
pub struct Fields {
    pub conn_id: String,
    pub conn_type: String,
    pub description: String,
    pub host: String,
    pub schema: String,
    pub login: String,
    pub port: String,
    pub extra: String,
}

impl Fields {
    fn of(c: &Connection) -> Fields {
        Fields {
            conn_id: c.conn_id.clone(),
            conn_type: c.conn_type.clone(),
            description: c.description.clone().unwrap_or_default(),
            host: c.host.clone().unwrap_or_default(),
            schema: c.schema.clone().unwrap_or_default(),
            login: c.login.clone().unwrap_or_default(),
            port: c.port.map(|p| p.to_string()).unwrap_or_default(),
            extra: shown_extra(c.extra.as_deref()).unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct IdParam {
    conn_id: String,
}

pub async fn new_form(State(st): State<AppState>, user: CurrentUser) -> Result<Response, WebError> {
    render(&ConnectionForm {
        chrome: user.chrome(),
        existing: None,
        f: Fields {
            conn_type: "http".into(),
            ..Default::default()
        },
        has_password: false,
        types: TYPES,
        error: None,
        tested: None,
        can_test: st.settings.test_connection,
    })
}

pub async fn edit_form(
    State(st): State<AppState>,
    user: CurrentUser,
    Query(p): Query<IdParam>,
) -> Result<Response, WebError> {
    let c = db::get(&st.pool, &st.settings.vault, &p.conn_id)
        .await
        .map_err(page_error)?
        .ok_or_else(|| WebError::NotFound(format!("There is no connection `{}`.", p.conn_id)))?;
    render(&ConnectionForm {
        chrome: user.chrome(),
        existing: Some(c.conn.conn_id.clone()),
        f: Fields::of(&c.conn),
        has_password: c.conn.password.is_some_and(|p| !p.is_empty()),
        types: TYPES,
        error: None,
        tested: None,
        can_test: st.settings.test_connection,
    })
}

#[derive(Deserialize)]
pub struct SaveForm {
    #[serde(default)]
    existing: String,
    conn_id: String,
    conn_type: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    schema: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    clear_password: Option<String>,
    #[serde(default)]
    port: String,
    #[serde(default)]
    extra: String,
    /// Set by the Test button.
    #[serde(default)]
    test: Option<String>,
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub async fn save(
    State(st): State<AppState>,
    user: CurrentUser,
    Form(f): Form<SaveForm>,
) -> Result<Response, WebError> {
    let editing = !f.existing.is_empty();
    let fields = Fields {
        conn_id: f.conn_id.trim().to_string(),
        conn_type: f.conn_type.trim().to_string(),
        description: f.description.clone(),
        host: f.host.clone(),
        schema: f.schema.clone(),
        login: f.login.clone(),
        port: f.port.clone(),
        extra: f.extra.clone(),
    };
    let form = |error: Option<String>, tested: Option<(bool, String)>, has_password: bool| {
        ConnectionForm {
            chrome: user.chrome(),
            existing: editing.then(|| f.existing.clone()),
            f: fields.clone(),
            has_password,
            types: TYPES,
            error,
            tested,
            can_test: st.settings.test_connection,
        }
    };
    let port = match opt(&f.port).map(|p| p.parse::<i32>()) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            return render(&form(
                Some(format!("Port `{}` is not a number.", f.port.trim())),
                None,
                false,
            ))
        }
    };
    let mut conn = Connection {
        conn_id: fields.conn_id.clone(),
        conn_type: fields.conn_type.clone(),
        description: opt(&f.description),
        host: opt(&f.host),
        schema: opt(&f.schema),
        login: opt(&f.login),
        password: (!f.password.is_empty()).then(|| f.password.clone()),
        port,
        extra: opt(&f.extra),
    };
    let old = if editing {
        db::get(&st.pool, &st.settings.vault, &f.existing)
            .await
            .map_err(page_error)?
            .map(|c| c.conn)
    } else {
        None
    };
    if let Some(old) = &old {
        if conn.password.is_none() && f.clear_password.is_none() {
            conn.password = old.password.clone();
        }
        keep_masked(&mut conn, old);
    }
    let has_password = conn.password.is_some();
    if f.test.is_some() {
        if !st.settings.test_connection {
            return Err(WebError::Forbidden(
                "Testing connections is disabled (set UPDRAFT_TEST_CONNECTION=true).".into(),
            ));
        }
        let tested = crate::operators::conn_test::test_connection(&conn).await;
        let tested = match tested {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        return render(&form(None, Some(tested), has_password));
    }
    let on_conflict = if editing && f.existing == conn.conn_id {
        OnConflict::Overwrite
    } else {
        OnConflict::Keep
    };
    match db::put(&st.pool, &st.settings.vault, &conn, on_conflict).await {
        Ok(true) => {
            if editing && f.existing != conn.conn_id {
                db::delete(&st.pool, &f.existing).await?;
            }
            Ok(Redirect::to("/connections").into_response())
        }
        Ok(false) => render(&form(
            Some(format!(
                "A connection `{}` already exists; edit it instead.",
                conn.conn_id
            )),
            None,
            has_password,
        )),
        Err(StoreError::Db(e)) => Err(e.into()),
        Err(e) => render(&form(Some(e.to_string()), None, has_password)),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    conn_id: String,
}

pub async fn delete(
    State(st): State<AppState>,
    _user: CurrentUser,
    Form(f): Form<DeleteForm>,
) -> Result<Response, WebError> {
    db::delete(&st.pool, &f.conn_id).await?;
    Ok(Redirect::to("/connections").into_response())
}

/// The routes of this page.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/connections", get(list).post(save))
        .route("/connections/new", get(new_form))
        .route("/connections/edit", get(edit_form))
        .route("/connections/delete", post(delete))
}
