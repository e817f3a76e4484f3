//! The worker: claims queued tasks into free slots, runs each under a lease renewed by a
//! heartbeat, and records the outcome (fenced by the lease). No transaction or row lock is
//! held while a task runs. NOTIFY and local finishes wake the claim loop; polling is only
//! the fallback.

mod config_cache;
mod execute;
mod logs;
mod record;
pub mod render;
pub mod vars;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::db::pools::DEFAULT_POOL;
use crate::db::tasks::{self, Claimed, SpecCache};
use crate::db::{self, WORKER_CHANNEL};
use crate::operators::TaskLog;
use crate::settings::EngineSettings;

/// Why a running try's token was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Shutdown,
    LeaseLost,
}

struct Running {
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

pub struct Worker {
    pool: PgPool,
    id: Uuid,
    hostname: String,
    settings: EngineSettings,
    specs: SpecCache,
    /// Connections and variables (environment over database) for each try.
    config: config_cache::ConfigCache,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<i64, Running>>>,
    finisher: mpsc::UnboundedSender<record::OutcomeJob>,
    finisher_rx: Mutex<Option<mpsc::UnboundedReceiver<record::OutcomeJob>>>,
}

impl Worker {
    pub fn new(pool: PgPool, settings: EngineSettings, specs: SpecCache) -> Self {
        let config =
            config_cache::ConfigCache::new(settings.operator_env.clone(), settings.vault.clone());
        let (finisher, finisher_rx) = mpsc::unbounded_channel();
        Worker {
            finisher,
            finisher_rx: Mutex::new(Some(finisher_rx)),
            pool,
            id: Uuid::new_v4(),
            hostname: crate::settings::hostname(),
            settings,
            specs,
            config,
            wake: Arc::new(Notify::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Runs until `shutdown` is cancelled; then stops claiming, lets running tries finish
    /// within the grace period, and hands the rest back to the queue.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.settings.worker_slots));
        let tracker = TaskTracker::new();
        db::tasks::register_worker(
            &this.pool,
            this.id,
            &this.hostname,
            this.settings.worker_slots as i32,
        )
        .await?;
        info!(worker = %this.id, slots = this.settings.worker_slots, "worker started");

        let listen_stop = CancellationToken::new();
        let finisher_rx = this
            .finisher_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = finisher_rx {
            tokio::spawn(record::record_outcomes(this.pool.clone(), rx));
        }
        tokio::spawn(db::listen::listen_channel(
            this.pool.clone(),
            WORKER_CHANNEL,
            this.wake.clone(),
            listen_stop.clone(),
        ));
        tokio::spawn(this.clone().heartbeat_loop(listen_stop.clone()));

        while !shutdown.is_cancelled() {
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                match tasks::claim(
                    &this.pool,
                    this.id,
                    &this.hostname,
                    free as i64,
                    this.settings.lease_ttl,
                )
                .await
                {
                    Ok(claimed) => {
                        claimed_all = claimed.len() == free;
                        for c in claimed {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let me = this.clone();
                            tracker.spawn(async move {
                                me.run_claimed(c).await;
                                drop(permit);
                                me.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "claiming tasks failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
            if claimed_all {
                continue; // there may be more queued work
            }
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(this.settings.poll_interval.std()) => {}
                _ = shutdown.cancelled() => {}
            }
        }

        info!(worker = %this.id, "worker stopping: no new claims; waiting for running tasks");
        tracker.close();
        if tokio::time::timeout(this.settings.shutdown_grace.std(), tracker.wait())
            .await
            .is_err()
        {
            warn!("grace period over: handing running tasks back to the queue");
            for r in this.lock_running().values() {
                *r.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(StopReason::Shutdown);
                r.cancel.cancel();
            }
            tracker.wait().await;
        }
        listen_stop.cancel();
        Ok(())
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews leases; a try whose lease is gone (reaped, run timed out) is cancelled.
    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = self.settings.lease_ttl.std() / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            // Renew only the tries this worker is running right now (an outcome it failed to
            // record must not be kept alive forever), and judge only the ids it asked about:
            // a try claimed after the snapshot is not "lost".
            let asked: Vec<i64> = self.lock_running().keys().copied().collect();
            let renewed = if asked.is_empty() {
                Ok(Vec::new())
            } else {
                tasks::heartbeat(&self.pool, self.id, &asked, self.settings.lease_ttl).await
            };
            match renewed {
                Ok(held) => {
                    let running = self.lock_running();
                    for (ti_id, r) in running.iter().filter(|(id, _)| asked.contains(id)) {
                        if !held.contains(ti_id) {
                            warn!(ti_id, "lease lost; cancelling the try");
                            *r.reason.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(StopReason::LeaseLost);
                            r.cancel.cancel();
                        }
                    }
                }
                Err(e) => warn!(error = %e, "heartbeat failed; leases expire if this persists"),
            }
            if let Err(e) = tasks::worker_heartbeat(&self.pool, self.id).await {
                warn!(error = %e, "worker heartbeat failed");
            }
        }
    }

    #[instrument(skip_all, fields(dag_id = %c.dag_id, run_id = %c.run_id, task_id = %c.task_id, try_number = c.try_number))]
    async fn run_claimed(self: &Arc<Self>, c: Claimed) {
        let cancel = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        self.lock_running().insert(
            c.ti_id,
            Running {
                cancel: cancel.clone(),
                reason: reason.clone(),
            },
        );
        // Read before the log exists, so every line of the try is masked for what it can see.
        let pool_name = match self.specs.get(&self.pool, c.version_id).await {
            Ok(dag) => dag.task(&c.task_id).map(|t| t.pool_name().to_string()),
            Err(_) => None,
        };
        let prepared = self
            .config
            .for_try(&self.pool, pool_name.as_deref().unwrap_or(DEFAULT_POOL))
            .await;
        let secrets = match &prepared {
            Ok(p) => p.secrets.clone(),
            Err(_) => self.config.env_only().1,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(tx, secrets);
        let (end_tx, end_rx) = oneshot::channel();
        let writer = tokio::spawn(logs::write_logs(
            self.pool.clone(),
            c.ti_id,
            c.try_number,
            rx,
            end_rx,
        ));

        let result = match prepared {
            Err(e) => Err(anyhow::anyhow!(
                "could not read connections and variables from the database: {e}"
            )),
            // The pool was deleted after the DAG was validated (a missing pool is otherwise
            // an import error).
            Ok(p) if !p.pool_exists => Err(anyhow::anyhow!(
                "pool `{}` does not exist: create it (UI Admin → Pools, `updraft pools set`, or the API) or change the task's `pool`",
                pool_name.as_deref().unwrap_or(DEFAULT_POOL)
            )),
            Ok(p) => self.execute(&c, log.clone(), cancel, p.env).await,
        };
        let stop = *reason.lock().unwrap_or_else(|e| e.into_inner());
        // The try stays in `running` (so its lease is renewed) until its outcome is recorded.
        self.record(&c, stop, result, &log, end_tx, writer).await;
        self.lock_running().remove(&c.ti_id);
    }
}
