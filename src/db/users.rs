//! Users, browser sessions and API tokens. Secrets are random 32-byte values handed to the
//! client once; only their SHA-256 is stored.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// A user as the web layer sees it (no hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: String,
}

/// A valid session or API token, with its owner.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenOwner {
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub kind: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Inserts a user; false when the name is taken.
pub async fn insert_user(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    role: &str,
) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Creates the user, or gives an existing one this password hash and role and ends all their
/// sessions and API tokens, so the old password's logins stop working. True when created.
pub async fn upsert_user(
    pool: &PgPool,
    username: &str,
    password_hash: &str,
    role: &str,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    // `xmax = 0` only for a freshly inserted row, not for one the conflict clause updated.
    let (id, created): (i64, bool) = sqlx::query_as(
        "INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)
         ON CONFLICT (username) DO UPDATE
             SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role
         RETURNING id, (xmax = 0)",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn user_exists(pool: &PgPool, username: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)")
        .bind(username)
        .fetch_one(pool)
        .await
}

/// The user and their password hash, for a login attempt.
pub async fn credentials(pool: &PgPool, username: &str) -> sqlx::Result<Option<(User, String)>> {
    let row: Option<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, username, role, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(id, username, role, hash)| (User { id, username, role }, hash)))
}

/// Stores a session (`kind = "session"`, with its CSRF token) or an API token.
pub async fn insert_token(
    pool: &PgPool,
    token: &str,
    user_id: i64,
    kind: &str,
    csrf: &str,
    ttl_secs: i64,
) -> sqlx::Result<DateTime<Utc>> {
    // Expired tokens are dropped on the way; no background job needed.
    sqlx::query("DELETE FROM auth_tokens WHERE expires_at < now()")
        .execute(pool)
        .await?;
    sqlx::query_scalar(
        "INSERT INTO auth_tokens (token_hash, user_id, kind, csrf, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING expires_at",
    )
    .bind(hash_token(token))
    .bind(user_id)
    .bind(kind)
    .bind(csrf)
    .bind(ttl_secs as f64)
    .fetch_one(pool)
    .await
}

/// The owner of an unexpired token of the given kind.
pub async fn token_owner(
    pool: &PgPool,
    token: &str,
    kind: &str,
) -> sqlx::Result<Option<TokenOwner>> {
    sqlx::query_as::<_, TokenOwner>(
        "SELECT t.user_id, u.username, u.role, t.kind, t.csrf, t.expires_at
         FROM auth_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.kind = $2 AND t.expires_at > now()",
    )
    .bind(hash_token(token))
    .bind(kind)
    .fetch_optional(pool)
    .await
}

pub async fn delete_token(pool: &PgPool, token: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM auth_tokens WHERE token_hash = $1")
        .bind(hash_token(token))
        .execute(pool)
        .await?;
    Ok(())
}
