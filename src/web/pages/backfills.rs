//! A DAG's backfills: the form that starts one (with a preview of the dates it will run) and
//! the list with each backfill's progress, paused state and its pause, unpause and cancel
//! buttons (not for viewers).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{fmt_time, render, seg, Chrome};
use crate::core::backfill::DatePlan;
use crate::core::ReprocessBehavior;
use crate::db::backfill::{self as db, BackfillError, BackfillRequest, BackfillRow, Steer};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

/// The form's fields, kept to show them again.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct BackfillForm {
    pub from_date: String,
    pub to_date: String,
    pub reprocess_behavior: String,
    pub max_active_runs: String,
    pub run_backwards: Option<String>,
    pub dag_run_conf: String,
    /// `preview` or `create`.
    pub action: String,
}

#[derive(Template)]
#[template(path = "dags/backfills.html")]
pub struct BackfillsPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub can_edit: bool,
    pub form: BackfillForm,
    pub error: Option<String>,
    /// The preview: each date and what happens to it.
    pub preview: Vec<(String, String)>,
    pub backfills: Vec<BackfillRow>,
}

impl BackfillsPage {
    pub fn dag_href(&self) -> String {
        format!("/dags/{}", seg(&self.dag_id))
    }
    pub fn action_href(&self) -> String {
        format!("/dags/{}/backfills", seg(&self.dag_id))
    }
    pub fn steer_href(&self, b: &BackfillRow, what: &str) -> String {
        format!("/dags/{}/backfills/{}/{what}", seg(&self.dag_id), b.id)
    }
    pub fn state(&self, b: &BackfillRow) -> &'static str {
        match (b.completed_at, b.is_paused) {
            (Some(_), _) => "completed",
            (None, true) => "paused",
            (None, false) => "running",
        }
    }
    pub fn percent(&self, b: &BackfillRow) -> String {
        let p = if b.total_runs == 0 {
            100.0
        } else {
            100.0 * b.finished_runs as f64 / b.total_runs as f64
        };
        format!("{p:.0}")
    }
    pub fn time(&self, t: &DateTime<Utc>) -> String {
        fmt_time(Some(*t))
    }
    pub fn backwards(&self) -> bool {
        self.form.run_backwards.is_some()
    }
}

async fn page(
    st: &AppState,
    user: &CurrentUser,
    dag_id: String,
    form: BackfillForm,
    error: Option<String>,
    preview: Vec<(String, String)>,
) -> Result<Response, WebError> {
    let (backfills, _) = db::list(&st.pool, Some(&dag_id), 50, 0).await?;
    let mut res = render(&BackfillsPage {
        chrome: user.chrome(),
        dag_id,
        can_edit: user.role != "viewer",
        form,
        preview,
        backfills,
        error: error.clone(),
    })?;
    if error.is_some() {
        *res.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

pub async fn show(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Response, WebError> {
    if crate::db::web::dag_row(&st.pool, &dag_id).await?.is_none() {
        return Err(WebError::NotFound(format!("DAG `{dag_id}` not found.")));
    }
    let form = BackfillForm {
        reprocess_behavior: "none".into(),
        max_active_runs: "10".into(),
        ..Default::default()
    };
    page(&st, &user, dag_id, form, None, Vec::new()).await
}

fn date(field: &str, s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("{field}: use YYYY-MM-DD (UTC) or an RFC 3339 time"))
}

fn request(dag_id: &str, f: &BackfillForm, user: &CurrentUser) -> Result<BackfillRequest, String> {
    let conf = if f.dag_run_conf.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&f.dag_run_conf).map_err(|e| format!("conf is not valid JSON: {e}"))?
    };
    Ok(BackfillRequest {
        dag_id: dag_id.to_string(),
        from_date: date("From", &f.from_date)?,
        to_date: date("To", &f.to_date)?,
        run_backwards: f.run_backwards.is_some(),
        dag_run_conf: conf,
        reprocess_behavior: ReprocessBehavior::parse(&f.reprocess_behavior)
            .ok_or_else(|| format!("reprocess: use {}", ReprocessBehavior::names()))?,
        max_active_runs: f
            .max_active_runs
            .trim()
            .parse()
            .map_err(|_| "max active runs: a whole number".to_string())?,
        user: Some(user.username.clone()),
    })
}

/// The form: `preview` lists the dates, `create` starts the backfill.
pub async fn create(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Form(f): Form<BackfillForm>,
) -> Result<Response, WebError> {
    let req = match request(&dag_id, &f, &user) {
        Ok(r) => r,
        Err(e) => return page(&st, &user, dag_id, f, Some(e), Vec::new()).await,
    };
    let data_intervals = st.settings.create_cron_data_intervals;
    let outcome = if f.action == "create" {
        db::create(&st.pool, &req, data_intervals).await.map(|b| {
            let extra = json!({"backfill_id": b.id, "from_date": b.from_date, "to_date": b.to_date, "runs": b.total_runs});
            (Some(extra), Vec::new())
        })
    } else {
        db::plan(&st.pool, &req, data_intervals).await.map(|plan| {
            let rows = plan
                .iter()
                .map(|d| {
                    let what = match d.plan {
                        DatePlan::Create => "new run".to_string(),
                        DatePlan::Reprocess(_) => "run again".to_string(),
                        DatePlan::Skip(why) => format!("skipped: {why}"),
                    };
                    (fmt_time(Some(d.run.logical_date)), what)
                })
                .collect();
            (None, rows)
        })
    };
    match outcome {
        Ok((Some(extra), _)) => {
            let what = (Some(dag_id.as_str()), None, None);
            crate::web::api::events::record(&st, &user, "ui", "backfill", what, extra).await;
            Ok(Redirect::to(&format!("/dags/{}/backfills", seg(&dag_id))).into_response())
        }
        Ok((None, preview)) => page(&st, &user, dag_id, f, None, preview).await,
        Err(BackfillError::Db(e)) => Err(e.into()),
        Err(BackfillError::Other(e)) => Err(WebError::Internal(e)),
        Err(e) => page(&st, &user, dag_id, f, Some(e.to_string()), Vec::new()).await,
    }
}

/// Pause, unpause or cancel.
pub async fn steer(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, id, what)): Path<(String, i64, String)>,
) -> Result<Response, WebError> {
    let how = match what.as_str() {
        "pause" => Steer::Pause,
        "unpause" => Steer::Unpause,
        "cancel" => Steer::Cancel,
        _ => return Err(WebError::NotFound(format!("no backfill action `{what}`"))),
    };
    match db::steer(&st.pool, id, how).await? {
        None => return Err(WebError::NotFound(format!("backfill {id} not found"))),
        Some(false) => {
            return Err(WebError::BadRequest(format!(
                "backfill {id} has completed already"
            )))
        }
        Some(true) => {}
    }
    let what_ = (Some(dag_id.as_str()), None, None);
    let event = format!("backfill_{what}");
    crate::web::api::events::record(&st, &user, "ui", &event, what_, json!({"backfill_id": id}))
        .await;
    Ok(Redirect::to(&format!("/dags/{}/backfills", seg(&dag_id))).into_response())
}
