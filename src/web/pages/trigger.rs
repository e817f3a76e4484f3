//! The trigger form: the DAG's `params` as fields plus an optional JSON conf. Anything
//! invalid is shown back on the form and nothing is triggered.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{render, seg, Chrome};
use crate::db::runs::{self, TriggerError, TriggerRequest};
use crate::db::web as q;
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

pub struct ParamField {
    pub name: String,
    /// What the input shows: strings as they are, anything else as JSON.
    pub value: String,
    /// Whether the default is a string (the input is then taken literally).
    pub is_string: bool,
}

#[derive(Template)]
#[template(path = "dags/trigger.html")]
pub struct TriggerPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub params: Vec<ParamField>,
    pub conf: String,
    pub note: String,
    pub error: Option<String>,
}

impl TriggerPage {
    pub fn dag_href(&self) -> String {
        format!("/dags/{}", seg(&self.dag_id))
    }
    pub fn action(&self) -> String {
        format!("/dags/{}/trigger", seg(&self.dag_id))
    }
}

async fn load_params(
    st: &AppState,
    dag_id: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, WebError> {
    let Some(detail) = q::dag_detail(&st.pool, dag_id).await? else {
        return Err(WebError::NotFound(format!(
            "DAG `{dag_id}` not found; pick one from the DAG list."
        )));
    };
    Ok(crate::dag::spec::from_stored(detail.spec)
        .map(|d| d.params)
        .unwrap_or_default())
}

fn fields(params: &serde_json::Map<String, serde_json::Value>) -> Vec<ParamField> {
    params
        .iter()
        .map(|(name, v)| ParamField {
            name: name.clone(),
            value: match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            is_string: v.is_string(),
        })
        .collect()
}

pub async fn form(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Response, WebError> {
    let params = load_params(&st, &dag_id).await?;
    render(&TriggerPage {
        chrome: user.chrome(),
        params: fields(&params),
        dag_id,
        conf: String::new(),
        note: String::new(),
        error: None,
    })
}

/// Builds the run's conf from the submitted form: params first, then the JSON conf on top.
pub fn build_conf(
    params: &serde_json::Map<String, serde_json::Value>,
    form: &[(String, String)],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut conf = serde_json::Map::new();
    for (name, default) in params {
        let Some(raw) = get(&format!("param.{name}")) else {
            continue;
        };
        let value = if default.is_string() {
            serde_json::Value::String(raw.to_string())
        } else {
            serde_json::from_str(raw).map_err(|e| {
                format!("Param `{name}` must be JSON (like its default {default}): {e}")
            })?
        };
        conf.insert(name.clone(), value);
    }
    let raw_conf = get("conf").unwrap_or("").trim();
    if !raw_conf.is_empty() {
        match serde_json::from_str::<serde_json::Value>(raw_conf) {
            Ok(serde_json::Value::Object(extra)) => conf.extend(extra),
            Ok(_) => return Err("Conf must be a JSON object, like {\"key\": \"value\"}.".into()),
            Err(e) => {
                return Err(format!(
                    "Conf is not valid JSON: {e}. Fix it or leave it empty."
                ))
            }
        }
    }
    Ok(conf)
}

/// Triggers a run from the form. Its CSRF token was checked by `require_auth`, as for every
/// state-changing request.
pub async fn submit(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let params = load_params(&st, &dag_id).await?;
    let note = get("note").unwrap_or_default();
    let show_error = |error: String| -> Result<Response, WebError> {
        let mut shown = fields(&params);
        for f in &mut shown {
            if let Some(v) = get(&format!("param.{}", f.name)) {
                f.value = v;
            }
        }
        let mut res = render(&TriggerPage {
            chrome: user.chrome(),
            dag_id: dag_id.clone(),
            params: shown,
            conf: get("conf").unwrap_or_default(),
            note: note.clone(),
            error: Some(error),
        })?;
        *res.status_mut() = StatusCode::BAD_REQUEST;
        Ok(res)
    };
    let conf = match build_conf(&params, &form) {
        Ok(c) => c,
        Err(e) => return show_error(e),
    };
    let req = TriggerRequest {
        conf: Some(serde_json::Value::Object(conf)),
        note: (!note.trim().is_empty()).then(|| note.trim().to_string()),
        ..Default::default()
    };
    match runs::trigger(&st.pool, &dag_id, req).await {
        Ok(run) => {
            let what = (Some(dag_id.as_str()), Some(run.run_id.as_str()), None);
            let extra = serde_json::Value::Null;
            crate::web::api::events::record(&st, &user, "ui", "trigger", what, extra).await;
            Ok(
                Redirect::to(&format!("/dags/{}/runs/{}", seg(&dag_id), seg(&run.run_id)))
                    .into_response(),
            )
        }
        Err(TriggerError::Db(e)) => Err(e.into()),
        Err(TriggerError::DagNotFound(_)) => Err(WebError::NotFound(format!(
            "DAG `{dag_id}` is gone; it was removed or failed to load."
        ))),
        Err(e) => show_error(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> serde_json::Map<String, serde_json::Value> {
        json!({"name": "x", "count": 3})
            .as_object()
            .unwrap()
            .clone()
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn params_and_conf_merge() {
        let c = build_conf(
            &params(),
            &form(&[
                ("param.name", "y"),
                ("param.count", "4"),
                ("conf", "{\"extra\": true}"),
            ]),
        )
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(c),
            json!({"name": "y", "count": 4, "extra": true})
        );
    }

    #[test]
    fn bad_json_is_reported() {
        let e = build_conf(&params(), &form(&[("param.count", "four")])).unwrap_err();
        assert!(e.contains("`count`"), "{e}");
        let e = build_conf(&params(), &form(&[("conf", "{nope")])).unwrap_err();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = build_conf(&params(), &form(&[("conf", "[1]")])).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
    }
}
