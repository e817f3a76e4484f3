//! Connections with Airflow's fields. The password and the extra are sealed by the
//! [`Vault`]: encrypted whenever a Fernet key is configured; without one, a password (or an
//! extra holding sensitive keys) is refused and anything else kept as plain text.

use sqlx::PgPool;

use super::listing::{ListQuery, StoreError};
use crate::core::connection::{sensitive_values, Connection};
use crate::core::fernet::Vault;

/// `order_by` names the connections list accepts (Airflow's fields), and their columns.
pub const ORDER_FIELDS: &[(&str, &str)] = &[
    ("conn_id", "conn_id"),
    ("connection_id", "conn_id"),
    ("conn_type", "conn_type"),
    ("description", "description"),
    ("host", "host"),
    ("port", "port"),
    ("id", "id"),
];

/// A stored connection, decrypted, with how it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConnection {
    pub id: i64,
    pub conn: Connection,
    pub is_encrypted: bool,
    pub is_extra_encrypted: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    pub id: i64,
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i32>,
    pub extra: Option<String>,
    pub is_encrypted: bool,
    pub is_extra_encrypted: bool,
}

impl Row {
    pub(super) fn open(self, vault: &Vault) -> Result<StoredConnection, StoreError> {
        let password = self
            .password
            .map(|p| {
                vault.open(
                    &p,
                    self.is_encrypted,
                    &format!("the password of connection `{}`", self.conn_id),
                )
            })
            .transpose()?;
        let extra = self
            .extra
            .map(|e| {
                vault.open(
                    &e,
                    self.is_extra_encrypted,
                    &format!("the extra of connection `{}`", self.conn_id),
                )
            })
            .transpose()?;
        Ok(StoredConnection {
            id: self.id,
            is_encrypted: self.is_encrypted,
            is_extra_encrypted: self.is_extra_encrypted,
            conn: Connection {
                conn_id: self.conn_id,
                conn_type: self.conn_type,
                description: self.description,
                host: self.host,
                schema: self.schema,
                login: self.login,
                password,
                port: self.port,
                extra,
            },
        })
    }
}

pub(super) const COLUMNS: &str = "id, conn_id, conn_type, description, host, schema, login, password, port, extra, is_encrypted, is_extra_encrypted";
const WHERE: &str = "(cardinality($1::text[]) = 0 OR conn_id ILIKE ANY($1)) AND ($2::text IS NULL OR starts_with(conn_id, $2))";

/// One page of connections and how many match.
pub async fn list(
    pool: &PgPool,
    vault: &Vault,
    q: &ListQuery,
) -> Result<(Vec<StoredConnection>, i64), StoreError> {
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM connections WHERE {WHERE}"))
        .bind(&q.patterns)
        .bind(&q.prefix)
        .fetch_one(pool)
        .await?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM connections WHERE {WHERE} {} LIMIT $3 OFFSET $4",
        q.order_sql("id", "id")
    ))
    .bind(&q.patterns)
    .bind(&q.prefix)
    .bind(q.limit)
    .bind(q.offset)
    .fetch_all(pool)
    .await?;
    let conns = rows
        .into_iter()
        .map(|r| r.open(vault))
        .collect::<Result<_, _>>()?;
    Ok((conns, total))
}

/// Every connection, by id (export).
pub async fn all(pool: &PgPool, vault: &Vault) -> Result<Vec<StoredConnection>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM connections ORDER BY conn_id"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|r| r.open(vault)).collect()
}

pub async fn get(
    pool: &PgPool,
    vault: &Vault,
    conn_id: &str,
) -> Result<Option<StoredConnection>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM connections WHERE conn_id = $1"
    ))
    .bind(conn_id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| r.open(vault)).transpose()
}

/// What [`put`] does when the id exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConflict {
    Overwrite,
    /// Leave it; `put` returns false.
    Keep,
}

/// Stores a connection (validated first); false when it existed and was kept.
pub async fn put(
    pool: &PgPool,
    vault: &Vault,
    conn: &Connection,
    on_conflict: OnConflict,
) -> Result<bool, StoreError> {
    conn.validate()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let id = &conn.conn_id;
    let password = conn
        .password
        .as_deref()
        .map(|p| {
            vault.seal(
                p,
                !p.is_empty(),
                &format!("the password of connection `{id}`"),
            )
        })
        .transpose()?;
    let extra = conn
        .extra
        .as_deref()
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut found = Vec::new();
            sensitive_values(&serde_json::from_str(e).unwrap_or_default(), &mut found);
            vault.seal(
                e,
                !found.is_empty(),
                &format!("the extra of connection `{id}` (it has sensitive keys)"),
            )
        })
        .transpose()?;
    let conflict = match on_conflict {
        OnConflict::Overwrite => {
            "ON CONFLICT (conn_id) DO UPDATE SET conn_type = EXCLUDED.conn_type, description = EXCLUDED.description,
               host = EXCLUDED.host, schema = EXCLUDED.schema, login = EXCLUDED.login, password = EXCLUDED.password,
               port = EXCLUDED.port, extra = EXCLUDED.extra, is_encrypted = EXCLUDED.is_encrypted,
               is_extra_encrypted = EXCLUDED.is_extra_encrypted, updated_at = now()"
        }
        OnConflict::Keep => "ON CONFLICT (conn_id) DO NOTHING",
    };
    let done = sqlx::query(&format!(
        "INSERT INTO connections (conn_id, conn_type, description, host, schema, login, password, port, extra,
                                  is_encrypted, is_extra_encrypted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) {conflict}"
    ))
    .bind(id)
    .bind(&conn.conn_type)
    .bind(&conn.description)
    .bind(&conn.host)
    .bind(&conn.schema)
    .bind(&conn.login)
    .bind(password.as_ref().map(|s| s.text.as_str()))
    .bind(conn.port)
    .bind(extra.as_ref().map(|s| s.text.as_str()))
    .bind(password.as_ref().is_some_and(|s| s.encrypted))
    .bind(extra.as_ref().is_some_and(|s| s.encrypted))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(done > 0)
}

/// Deletes a connection; false when there was none.
pub async fn delete(pool: &PgPool, conn_id: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM connections WHERE conn_id = $1")
        .bind(conn_id)
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

/// The stored columns of a connection as they are on disk (tests check nothing is plain).
pub async fn raw(
    pool: &PgPool,
    conn_id: &str,
) -> sqlx::Result<Option<(Option<String>, Option<String>)>> {
    sqlx::query_as("SELECT password, extra FROM connections WHERE conn_id = $1")
        .bind(conn_id)
        .fetch_optional(pool)
        .await
}
