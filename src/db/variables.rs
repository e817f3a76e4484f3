//! Variables: key, value (text; JSON when it parses), description. Values are sealed by the
//! [`Vault`]: encrypted whenever a Fernet key is configured, refused without one when the
//! key looks sensitive (Airflow's names), plain otherwise.

use sqlx::PgPool;

use super::listing::{ListQuery, StoreError};
use crate::core::connection::is_sensitive_name;
use crate::core::fernet::Vault;

/// `order_by` names the variables list accepts, and their columns (Airflow's fields).
pub const ORDER_FIELDS: &[(&str, &str)] = &[
    ("key", "key"),
    ("id", "id"),
    ("_val", "val"),
    ("description", "description"),
    ("is_encrypted", "is_encrypted"),
];

/// A stored variable, its value decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
}

/// Airflow's key length limit (`ID_LEN`).
pub const MAX_KEY_LEN: usize = 250;

/// Checks a key: not empty, at most 250 characters, no control characters.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.chars().count() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "invalid variable key `{}`: it must be 1 to {MAX_KEY_LEN} characters without control characters",
            key.escape_debug()
        )));
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub key: String,
    pub val: String,
    pub description: Option<String>,
    pub is_encrypted: bool,
}

impl Row {
    pub(super) fn open(self, vault: &Vault) -> Result<Variable, StoreError> {
        let what = format!("the value of variable `{}`", self.key);
        Ok(Variable {
            value: vault.open(&self.val, self.is_encrypted, &what)?,
            key: self.key,
            description: self.description,
            is_encrypted: self.is_encrypted,
        })
    }
}

const COLUMNS: &str = "key, val, description, is_encrypted";
const WHERE: &str =
    "(cardinality($1::text[]) = 0 OR key ILIKE ANY($1)) AND ($2::text IS NULL OR starts_with(key, $2))";

/// One page of variables and how many match. A value that cannot be decrypted fails the
/// page (the error names the variable and what to set).
pub async fn list(
    pool: &PgPool,
    vault: &Vault,
    q: &ListQuery,
) -> Result<(Vec<Variable>, i64), StoreError> {
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM variables WHERE {WHERE}"))
        .bind(&q.patterns)
        .bind(&q.prefix)
        .fetch_one(pool)
        .await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM variables WHERE {WHERE} {} LIMIT $3 OFFSET $4",
        q.order_sql("id", "id")
    ))
    .bind(&q.patterns)
    .bind(&q.prefix)
    .bind(q.limit)
    .bind(q.offset)
    .fetch_all(pool)
    .await?;
    let vars = rows
        .into_iter()
        .map(|r| r.open(vault))
        .collect::<Result<_, _>>()?;
    Ok((vars, total))
}

/// Every variable, by key (export).
pub async fn all(pool: &PgPool, vault: &Vault) -> Result<Vec<Variable>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM variables ORDER BY key"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(|r| r.open(vault)).collect()
}

pub async fn get(pool: &PgPool, vault: &Vault, key: &str) -> Result<Option<Variable>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM variables WHERE key = $1"))
            .bind(key)
            .fetch_optional(pool)
            .await?;
    row.map(|r| r.open(vault)).transpose()
}

/// What a write does when the key exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    /// Replace the value (and the description, when one is given).
    Overwrite,
    /// Leave the stored one; the write reports `false`.
    Keep,
}

/// Stores a variable. `description: None` keeps a stored description. Returns whether the
/// value was written (false: the key existed and `on_conflict` kept it).
pub async fn put(
    pool: &PgPool,
    vault: &Vault,
    key: &str,
    value: &str,
    description: Option<&str>,
    on_conflict: OnConflict,
) -> Result<bool, StoreError> {
    check_key(key)?;
    let sealed = vault.seal(
        value,
        is_sensitive_name(key),
        &format!("the value of variable `{key}`"),
    )?;
    let sql = match on_conflict {
        OnConflict::Overwrite => {
            "INSERT INTO variables (key, val, description, is_encrypted) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET val = EXCLUDED.val, is_encrypted = EXCLUDED.is_encrypted,
               description = COALESCE(EXCLUDED.description, variables.description), updated_at = now()"
        }
        OnConflict::Keep => {
            "INSERT INTO variables (key, val, description, is_encrypted) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO NOTHING"
        }
    };
    let done = sqlx::query(sql)
        .bind(key)
        .bind(&sealed.text)
        .bind(description)
        .bind(sealed.encrypted)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(done > 0)
}

/// Changes an existing variable: the value when given, the description when given
/// (`Some(None)` clears it). Returns false when there is no such key.
pub async fn update(
    pool: &PgPool,
    vault: &Vault,
    key: &str,
    value: Option<&str>,
    description: Option<Option<&str>>,
) -> Result<bool, StoreError> {
    let sealed = value
        .map(|v| {
            vault.seal(
                v,
                is_sensitive_name(key),
                &format!("the value of variable `{key}`"),
            )
        })
        .transpose()?;
    let done = sqlx::query(
        "UPDATE variables SET val = COALESCE($2, val), is_encrypted = COALESCE($3, is_encrypted),
           description = CASE WHEN $4 THEN $5 ELSE description END, updated_at = now()
         WHERE key = $1",
    )
    .bind(key)
    .bind(sealed.as_ref().map(|s| s.text.as_str()))
    .bind(sealed.as_ref().map(|s| s.encrypted))
    .bind(description.is_some())
    .bind(description.flatten())
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done > 0)
}

/// Deletes a variable; false when there was none.
pub async fn delete(pool: &PgPool, key: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM variables WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

/// Keys among `keys` that are stored.
pub async fn existing(pool: &PgPool, keys: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT key FROM variables WHERE key = ANY($1) ORDER BY key")
        .bind(keys)
        .fetch_all(pool)
        .await
}

impl From<Variable> for crate::core::transfer::StoredVariable {
    fn from(v: Variable) -> Self {
        crate::core::transfer::StoredVariable {
            key: v.key,
            value: v.value,
            description: v.description,
        }
    }
}
