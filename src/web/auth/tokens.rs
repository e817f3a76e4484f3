//! API clients: `POST /auth/token` trades a username and password for a bearer token
//! (Airflow 3's flow), and the `Authorization` header carries it (`Bearer`) or the password
//! itself (`Basic`). Browsers never send these on their own, so they need no CSRF token.

use std::net::IpAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;

use super::passwords::{sign_in, SignInError};
use super::sessions::random_token;
use super::{too_many, AuthOutcome, ClientAddr, CurrentUser};
use crate::db::users;
use crate::web::error::ApiError;
use crate::web::AppState;

/// Who an `Authorization` header says the caller is.
pub(super) async fn from_authorization(
    st: &AppState,
    client: IpAddr,
    value: &str,
) -> Result<AuthOutcome, SignInError> {
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Ok(
            match users::token_owner(&st.pool, token.trim(), "api").await? {
                Some(o) => AuthOutcome::User(CurrentUser {
                    id: o.user_id,
                    username: o.username,
                    role: o.role,
                    csrf: None,
                    addr: client,
                }),
                None => AuthOutcome::Rejected(
                    "the bearer token is unknown or expired; get a new one from POST /auth/token",
                ),
            },
        );
    }
    if let Some(b64) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok();
        let pair = decoded
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|s| s.split_once(':'));
        let Some((username, password)) = pair else {
            return Ok(AuthOutcome::Rejected("malformed basic auth header"));
        };
        return Ok(
            match sign_in(
                &st.pool,
                &st.hashing,
                &st.logins,
                client,
                username,
                password,
            )
            .await?
            {
                Some(u) => AuthOutcome::User(CurrentUser {
                    id: u.id,
                    username: u.username,
                    role: u.role,
                    csrf: None,
                    addr: client,
                }),
                None => AuthOutcome::Rejected("wrong username or password"),
            },
        );
    }
    Ok(AuthOutcome::Rejected(
        "unsupported Authorization scheme; use Bearer or Basic",
    ))
}

#[derive(Deserialize)]
pub struct TokenBody {
    username: String,
    password: String,
}

/// `POST /auth/token` `{username, password}` → `201 {"access_token": ...}`, as Airflow 3.
pub async fn token(
    State(st): State<AppState>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(st.settings.max_body_bytes)
        } else {
            ApiError::bad_request(format!("expected JSON {{\"username\", \"password\"}}: {e}"))
        }
    })?;
    let checked = sign_in(
        &st.pool,
        &st.hashing,
        &st.logins,
        client,
        &body.username,
        &body.password,
    )
    .await;
    let user = match checked {
        Ok(Some(user)) => {
            super::passwords::record_sign_in(&st.pool, "sign_in", &user.username, client).await;
            user
        }
        Ok(None) => return Err(ApiError::unauthorized("wrong username or password")),
        Err(SignInError::Busy) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                SignInError::Busy.to_string(),
            ))
        }
        Err(SignInError::Throttled(t)) => {
            return Ok(too_many(
                t.retry_after,
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, t.to_string()),
            ));
        }
        Err(SignInError::Internal(e)) => return Err(ApiError::internal(e)),
    };
    let token = random_token();
    let ttl = st.settings.token_ttl.as_secs() as i64;
    users::insert_token(&st.pool, &token, user.id, "api", "", ttl).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({ "access_token": token, "token_type": "bearer", "expires_in": ttl }),
        ),
    )
        .into_response())
}
