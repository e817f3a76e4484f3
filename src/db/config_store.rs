//! What a try reads of the stored configuration: the generation counter (bumped by a
//! trigger on every change to `variables` or `connections`), a snapshot of both tables
//! decrypted, and re-encryption of everything with the newest key (`rotate-fernet-key`).

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::{connections, variables};
use crate::core::fernet::Vault;
use crate::settings::Stored;

/// Every connection and variable, decrypted. An entry that cannot be decrypted is kept as
/// its error, so only the tries that use it fail. The generation is read first: a change
/// racing the read leaves an older number and a newer content, which at worst reloads once
/// more.
pub async fn snapshot(pool: &PgPool, vault: &Vault) -> sqlx::Result<Stored> {
    let generation: i64 = sqlx::query_scalar("SELECT generation FROM config_generation")
        .fetch_one(pool)
        .await?;
    let conn_rows: Vec<connections::Row> =
        sqlx::query_as(&format!("SELECT {} FROM connections", connections::COLUMNS))
            .fetch_all(pool)
            .await?;
    let var_rows: Vec<variables::Row> =
        sqlx::query_as("SELECT key, val, description, is_encrypted FROM variables")
            .fetch_all(pool)
            .await?;
    let mut conns = BTreeMap::new();
    for r in conn_rows {
        let id = r.conn_id.clone();
        conns.insert(id, r.open(vault).map(|c| c.conn).map_err(|e| e.to_string()));
    }
    let mut vars = BTreeMap::new();
    for r in var_rows {
        let key = r.key.clone();
        vars.insert(
            key,
            r.open(vault).map(|v| v.value).map_err(|e| e.to_string()),
        );
    }
    Ok(Stored {
        generation,
        connections: conns,
        variables: vars,
    })
}

/// `(id, conn_id, password, extra, is_encrypted, is_extra_encrypted)` of a connection.
type SecretColumns = (i64, String, Option<String>, Option<String>, bool, bool);

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub connections: usize,
    pub variables: usize,
}

/// Re-encrypts every stored secret with the vault's newest key, in one transaction, so that
/// older keys can then be dropped from the setting. Values stored in plain text (before a
/// key was set) are encrypted too. Fails without a key, or when a value matches no key.
pub async fn rotate(pool: &PgPool, vault: &Vault) -> Result<Rotated, super::listing::StoreError> {
    if !vault.has_keys() {
        return Err(crate::core::fernet::VaultError::NoKeyToStore {
            what: "re-encrypted secrets".into(),
        }
        .into());
    }
    let mut tx = pool.begin().await?;
    let mut done = Rotated::default();
    let rows: Vec<SecretColumns> = sqlx::query_as(
        "SELECT id, conn_id, password, extra, is_encrypted, is_extra_encrypted FROM connections
         ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (id, conn_id, password, extra, enc, extra_enc) in rows {
        let password = password
            .map(|p| vault.rotate(&p, enc, &format!("the password of connection `{conn_id}`")))
            .transpose()?;
        let extra = extra
            .map(|e| {
                vault.rotate(
                    &e,
                    extra_enc,
                    &format!("the extra of connection `{conn_id}`"),
                )
            })
            .transpose()?;
        sqlx::query(
            "UPDATE connections SET password = $2, extra = $3,
               is_encrypted = $4, is_extra_encrypted = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(password.as_ref().map(|s| s.text.as_str()))
        .bind(extra.as_ref().map(|s| s.text.as_str()))
        .bind(password.is_some())
        .bind(extra.is_some())
        .execute(&mut *tx)
        .await?;
        done.connections += 1;
    }
    let rows: Vec<(i64, String, String, bool)> =
        sqlx::query_as("SELECT id, key, val, is_encrypted FROM variables ORDER BY id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    for (id, key, val, enc) in rows {
        let sealed = vault.rotate(&val, enc, &format!("the value of variable `{key}`"))?;
        sqlx::query("UPDATE variables SET val = $2, is_encrypted = true WHERE id = $1")
            .bind(id)
            .bind(&sealed.text)
            .execute(&mut *tx)
            .await?;
        done.variables += 1;
    }
    tx.commit().await?;
    Ok(done)
}
