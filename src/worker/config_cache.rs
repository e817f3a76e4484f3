//! Connections and variables for each try: the process's environment (which wins) over the
//! database, with every secret of both masked in the try's log.
//!
//! The database is read at each try, so a change made in the UI, the API or the CLI applies
//! at the next try without a restart. To keep that cheap, the claim itself returns the
//! configuration generation (a counter a trigger bumps on every change) and whether the
//! task's pool exists; the tables themselves are read and decrypted again only when the
//! generation moved, and the result is shared by every try until then.
//! No SQL here: it is in `db::config_store`.

use std::sync::Arc;

use sqlx::PgPool;

use crate::core::fernet::Vault;
use crate::core::Secrets;
use crate::db::config_store;
use crate::settings::OperatorEnv;

/// What one try runs with.
pub(super) struct TryConfig {
    pub env: Arc<OperatorEnv>,
    /// Everything to mask in the try's log.
    pub secrets: Arc<Secrets>,
    pub pool_exists: bool,
}

struct Loaded {
    generation: i64,
    env: Arc<OperatorEnv>,
    secrets: Arc<Secrets>,
}

pub(super) struct ConfigCache {
    base: Arc<OperatorEnv>,
    base_secrets: Arc<Secrets>,
    vault: Vault,
    /// Held while reloading, so concurrent tries that see a new generation load it once.
    loaded: tokio::sync::Mutex<Option<Arc<Loaded>>>,
}

impl ConfigCache {
    pub fn new(base: OperatorEnv, vault: Vault) -> Self {
        let base_secrets = Arc::new(base.secrets());
        ConfigCache {
            base: Arc::new(base),
            base_secrets,
            vault,
            loaded: tokio::sync::Mutex::new(None),
        }
    }

    /// The environment alone, for a try whose database read failed (it fails too, but its
    /// log is still masked for what the process knows).
    pub fn env_only(&self) -> (Arc<OperatorEnv>, Arc<Secrets>) {
        (self.base.clone(), self.base_secrets.clone())
    }

    /// The configuration for a try claimed at configuration `generation`.
    pub async fn for_try(
        &self,
        db: &PgPool,
        generation: i64,
        pool_exists: bool,
    ) -> sqlx::Result<TryConfig> {
        let mut slot = self.loaded.lock().await;
        let current = match slot.as_ref().filter(|l| l.generation == generation) {
            Some(l) => l.clone(),
            None => {
                let stored = config_store::snapshot(db, &self.vault).await?;
                let env = OperatorEnv {
                    stored: Arc::new(stored),
                    ..(*self.base).clone()
                };
                let loaded = Arc::new(Loaded {
                    generation: env.stored.generation.min(generation),
                    secrets: Arc::new(env.secrets()),
                    env: Arc::new(env),
                });
                *slot = Some(loaded.clone());
                loaded
            }
        };
        drop(slot);
        Ok(TryConfig {
            env: current.env.clone(),
            secrets: current.secrets.clone(),
            pool_exists,
        })
    }
}
