//! The DAG processor: loads the DAGs folder, stores versions and import errors, and reloads
//! within a second of any change (file events, coalesced; a periodic rescan as fallback).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dag::DagBag;
use crate::db::dags::{self, SyncReport};

/// How long to wait for more events after one arrives, so an editor's burst is one reload.
const COALESCE: Duration = Duration::from_millis(100);
/// A full rescan even without events (network filesystems do not deliver them).
const RESCAN: Duration = Duration::from_secs(30);

/// Loads the folder once and stores it; `known` carries hashes between calls.
pub async fn sync_once(
    pool: &PgPool,
    folder: &Path,
    known: &mut BTreeMap<String, String>,
) -> anyhow::Result<(DagBag, SyncReport)> {
    let dir = folder.to_path_buf();
    let mut bag = tokio::task::spawn_blocking(move || DagBag::load(&dir)).await?;
    // Pools are known here, so a task naming a missing one is an import error now rather
    // than a failure at run time.
    bag.check_pools(&crate::db::pools::names(pool).await?);
    let report = dags::sync_bag(pool, &bag, known).await?;
    Ok((bag, report))
}

pub async fn run(
    pool: PgPool,
    folder: PathBuf,
    wake_scheduler: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel(64);
    let _watcher = match crate::dag::load::watch(&folder, tx) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, folder = %folder.display(), "cannot watch the DAGs folder; rescanning every 30 s");
            None
        }
    };
    let mut known = BTreeMap::new();
    let mut first = true;
    loop {
        match sync_once(&pool, &folder, &mut known).await {
            Ok((bag, report)) => {
                if first || report != SyncReport::default() {
                    info!(
                        dags = bag.dags.len(),
                        new_versions = report.new_versions,
                        import_errors = report.import_errors,
                        deactivated = report.deactivated,
                        "DAGs folder loaded"
                    );
                    for errors in bag.errors.values() {
                        for e in errors {
                            warn!("import error: {e}");
                        }
                    }
                }
                first = false;
                wake_scheduler.notify_one();
            }
            Err(e) => {
                warn!(error = %format!("{e:#}"), "storing the DAGs folder failed; trying again")
            }
        }
        tokio::select! {
            got = rx.recv() => {
                if got.is_none() {
                    // The watcher is gone; fall back to rescans.
                    tokio::select! {
                        _ = tokio::time::sleep(RESCAN) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                tokio::time::sleep(COALESCE).await;
                while rx.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(RESCAN) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
