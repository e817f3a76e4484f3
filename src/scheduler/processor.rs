//! The DAG processor: loads the DAGs folder, stores versions and import errors, and reloads
//! within a second of any change (file events, coalesced; a periodic rescan as fallback).
//! Files that did not change are not read again ([`DagFolder`] keeps what each gave), and each
//! import error or warning is logged once, when it appears, not on every reload.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dag::{DagBag, DagFolder};
use crate::db::dags::{self, SyncReport};

/// How long to wait for more events after one arrives, so an editor's burst is one reload.
const COALESCE: Duration = Duration::from_millis(100);
/// A full rescan even without events (network filesystems do not deliver them).
const RESCAN: Duration = Duration::from_secs(30);

/// Loads the folder (re-parsing only changed files) and stores it; `known` carries hashes
/// between calls.
pub async fn sync_once(
    pool: &PgPool,
    folder: &Arc<Mutex<DagFolder>>,
    known: &mut BTreeMap<String, String>,
) -> anyhow::Result<(DagBag, SyncReport)> {
    let folder = folder.clone();
    let mut bag = tokio::task::spawn_blocking(move || {
        folder.lock().unwrap_or_else(|p| p.into_inner()).load()
    })
    .await?;
    // Pools are known here, so a task naming a missing one is an import error now rather
    // than a failure at run time.
    bag.check_pools(&crate::db::pools::names(pool).await?);
    let report = dags::sync_bag(pool, &bag, known).await?;
    Ok((bag, report))
}

/// What has been logged already, so each import error and warning is logged once.
#[derive(Default)]
struct Logged(BTreeSet<String>);

impl Logged {
    /// Logs the entries not logged before; forgets the ones that went away (so they are
    /// logged again if they come back).
    fn update(&mut self, bag: &DagBag) {
        let mut now = BTreeSet::new();
        for e in bag.errors.values().flatten() {
            let line = format!("import error: {e}");
            if !self.0.contains(&line) {
                warn!("{line}");
            }
            now.insert(line);
        }
        for w in bag.warnings.values().flatten() {
            let line = format!("DAG file warning: {w}");
            if !self.0.contains(&line) {
                warn!("{line}");
            }
            now.insert(line);
        }
        self.0 = now;
    }
}

pub async fn run(
    pool: PgPool,
    folder: DagFolder,
    wake_scheduler: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = mpsc::channel(64);
    let _watcher = match crate::dag::load::watch(folder.path(), tx) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, folder = %folder.path().display(), "cannot watch the DAGs folder; rescanning every 30 s");
            None
        }
    };
    let folder = Arc::new(Mutex::new(folder));
    let mut known = BTreeMap::new();
    let mut logged = Logged::default();
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
                }
                logged.update(&bag);
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
