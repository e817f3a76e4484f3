//! Users and their passwords: argon2 hashes computed in the bounded hashing pool
//! (`web::hashing`), and the sign-in every login path goes through (throttled per client
//! address and username, before any hashing).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::Rng;
use sqlx::PgPool;

use super::ROLES;
use crate::db::users;
use crate::web::hashing::{HashPool, PasswordChecksBusy};
use crate::web::throttle::{LoginThrottle, Throttled};

/// Why a sign-in was not even decided: the caller should wait, or the server failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Too many recent attempts for this username from this address (answer 429).
    #[error(transparent)]
    Throttled(#[from] Throttled),
    /// Password checks are all busy and the queue is full (answer 503).
    #[error("too many sign-in attempts are being checked right now; try again in a few seconds")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for SignInError {
    fn from(e: sqlx::Error) -> Self {
        SignInError::Internal(e.into())
    }
}

/// A new argon2id hash of `password`, computed in the bounded hashing pool (`hashing`).
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    crate::web::hashing::global().hash(password).await
}

/// Verified against when the username is unknown, so unknown users take as long as wrong
/// passwords and the timing does not tell which usernames exist. Same parameters as
/// `Argon2::default()` (checked by a unit test); no password matches it (random output).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$udB+FAFHr3EjU15G4nP5NQ$vhT1bc9HzviHcUjWAldwblvuZJf5paq7L7NrCkg3kt8";

async fn verify_password(
    hashing: &HashPool,
    password: &str,
    hash: &str,
) -> Result<bool, SignInError> {
    hashing.verify(password, hash).await.map_err(|e| {
        if e.is::<PasswordChecksBusy>() {
            SignInError::Busy
        } else {
            SignInError::Internal(e)
        }
    })
}

/// The user if the password is theirs. Unknown usernames cost one verification too (against
/// [`DUMMY_HASH`]). Fails with [`SignInError::Busy`] when too many checks are queued.
pub async fn check_password(
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<Option<users::User>, SignInError> {
    check_password_in(crate::web::hashing::global(), pool, username, password).await
}

/// [`check_password`] in the given hashing pool (the web server's own).
pub async fn check_password_in(
    hashing: &HashPool,
    pool: &PgPool,
    username: &str,
    password: &str,
) -> Result<Option<users::User>, SignInError> {
    let found = users::credentials(pool, username).await?;
    let hash = found.as_ref().map_or(DUMMY_HASH, |(_, hash)| hash.as_str());
    let matches = verify_password(hashing, password, hash).await?;
    Ok(found.filter(|_| matches).map(|(user, _)| user))
}

/// A password check through the throttle: refused with [`SignInError::Throttled`] while this
/// client has to wait for this username, and it opens the throttle again when the password
/// is right.
pub async fn sign_in(
    pool: &PgPool,
    hashing: &HashPool,
    logins: &LoginThrottle,
    client: IpAddr,
    username: &str,
    password: &str,
) -> Result<Option<users::User>, SignInError> {
    // A refused attempt costs no hashing at all.
    logins.attempt(client, username)?;
    let user = check_password_in(hashing, pool, username, password).await?;
    if user.is_some() {
        logins.succeeded(client, username);
    } else {
        record_sign_in(pool, "sign_in_failed", username, client).await;
    }
    Ok(user)
}

/// Records a sign-in (from the form or `/auth/token`; basic auth signs in on every request,
/// so only its failures are recorded) or a failed one, in the audit log.
pub async fn record_sign_in(pool: &PgPool, event: &str, username: &str, client: IpAddr) {
    // A failed attempt's name is whatever was typed: keep at most 100 characters of it.
    let owner: String = username.chars().take(100).collect();
    let e = crate::db::events::Event {
        event,
        owner: Some(&owner),
        source: "ui",
        remote_addr: Some(client.to_string()),
        ..Default::default()
    };
    if let Err(err) = crate::db::events::record(pool, &e).await {
        tracing::warn!(error = %err, event, "could not write the audit log");
    }
}

/// Creates a user, or sets a new password and role for an existing one (for `updraft users
/// create`, also how a lost `admin` password is reset). Resetting ends that user's sessions
/// and API tokens. Returns true when the user was created. Fails if the role is unknown.
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    password: &str,
    role: &str,
) -> anyhow::Result<bool> {
    if username.trim().is_empty() || username.len() > 100 {
        anyhow::bail!("the username must be 1 to 100 characters");
    }
    if password.len() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    if !ROLES.contains(&role) {
        anyhow::bail!("unknown role `{role}`; use one of: {}", ROLES.join(", "));
    }
    let hash = hash_password(password).await?;
    Ok(users::upsert_user(pool, username, &hash, role).await?)
}

/// On first start, creates `admin` with a generated password, writes
/// `{"admin": "<password>"}` to `password_file` readable only by this user (like Airflow
/// standalone's `simple_auth_manager_passwords.json.generated`) and returns the password so
/// the caller prints it once. Returns None when `admin` already exists.
pub async fn ensure_admin(pool: &PgPool, password_file: &Path) -> anyhow::Result<Option<String>> {
    if users::user_exists(pool, "admin").await? {
        return Ok(None);
    }
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    let hash = hash_password(&password).await?;
    if !users::insert_user(pool, "admin", &hash, "admin").await? {
        return Ok(None); // another process created it first
    }
    let body = serde_json::to_string_pretty(&serde_json::json!({ "admin": password }))?;
    let write = || -> std::io::Result<()> {
        if let Some(dir) = password_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(password_file)?;
        f.write_all(body.as_bytes())
    };
    write().map_err(|e| {
        anyhow::anyhow!(
            "created user `admin` but could not store its password in {}: {e}; \
             set a new one with `updraft users create --username admin`",
            password_file.display()
        )
    })?;
    Ok(Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    use argon2::Argon2;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = argon2::Params::try_from(&dummy).unwrap();
        let default = Argon2::default();
        let cost = |p: &argon2::Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(cost(&params), cost(default.params()));
        assert_eq!(dummy.algorithm, argon2::Algorithm::default().ident());
        assert!(default.verify_password(b"password", &dummy).is_err());
    }
}
