//! The worker: claims queued tasks into free slots, runs each under a lease renewed by a
//! heartbeat, and records the outcome (fenced by the lease). No transaction or row lock is
//! held while a task runs. NOTIFY and local finishes wake the claim loop; polling is only
//! the fallback. A slot whose try's recording was handed the run's next task (a chain's
//! successor) runs it at once, without a claim.

mod config_cache;
pub mod contract;
mod execute;
mod logs;
mod record;
pub mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, instrument, warn};
use uuid::Uuid;

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

/// Why a running try was asked to stop cleanly (its `stop` token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AskedToStop {
    Shutdown,
    Paused,
}

struct Running {
    try_number: i32,
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
    stop: CancellationToken,
    asked: Arc<Mutex<Option<AskedToStop>>>,
}

impl Running {
    /// Asks the try to stop cleanly, once; the first reason wins.
    fn ask_to_stop(&self, why: AskedToStop) {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        if asked.is_none() {
            *asked = Some(why);
            self.stop.cancel();
        }
    }
}

pub struct Worker {
    pool: PgPool,
    id: Uuid,
    hostname: Arc<str>,
    settings: EngineSettings,
    specs: SpecCache,
    /// Connections and variables (environment over database) for each try.
    config: config_cache::ConfigCache,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<i64, Running>>>,
    finisher: mpsc::UnboundedSender<record::OutcomeJob>,
    /// Stores every try's log lines, in one statement per flush for all tries.
    logs: logs::LogWriter,
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
            logs: logs::LogWriter::start(pool.clone()),
            pool,
            id: Uuid::new_v4(),
            hostname: crate::settings::hostname().into(),
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
        // Of the slots, those that may run commands in processes of their own at once: more
        // commands than the machine can run only queue for its cores, and the time between a
        // command's exit and its recorded outcome grows with that queue.
        let processes = Arc::new(Semaphore::new(this.settings.worker_process_slots));
        let tracker = TaskTracker::new();
        // Commands and scratch directories a dead worker on this machine left behind: first
        // thing, before any database round trip, so that a worker stopped while it starts
        // has still cleaned up after its predecessor.
        let reaped =
            tokio::task::spawn_blocking(crate::operators::bash::process::reap_orphans).await?;
        this.register().await?;
        if reaped.run_dirs > 0 {
            info!(
                run_dirs = reaped.run_dirs,
                processes = reaped.processes,
                "cleaned up after a worker that died on this machine"
            );
        }
        info!(
            worker = %this.id,
            slots = this.settings.worker_slots,
            process_slots = this.settings.worker_process_slots,
            "worker started"
        );

        let listen_stop = CancellationToken::new();
        let finisher_rx = this
            .finisher_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = finisher_rx {
            record::start_recorder(&this.pool, rx)?;
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
            let free_processes = processes.available_permits() as i64;
            let mut claimed_all = false;
            if free > 0 {
                let limits = (free as i64, free_processes);
                match tasks::claim(&this.pool, this.id, &this.hostname, limits).await {
                    Ok(claimed) => {
                        claimed_all = claimed.len() == free;
                        for c in claimed {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            // Only this loop takes process slots, and it claimed no more
                            // than were free: this does not wait.
                            let process = match c.subprocess {
                                true => processes.clone().acquire_owned().await.ok(),
                                false => None,
                            };
                            let (me, stopping) = (this.clone(), shutdown.clone());
                            tracker.spawn(async move {
                                // The slot runs what the finish hands it (its run's next
                                // task), then goes back to the claim loop.
                                let mut next = Some(c);
                                while let Some(c) = next.take() {
                                    next = me.run_claimed(c, &stopping).await;
                                    if let Some(n) = next.take_if(|_| stopping.is_cancelled()) {
                                        // Handed over as the worker began to stop: not
                                        // started, so it goes back to the queue untried.
                                        me.give_back(&n).await;
                                    }
                                }
                                drop((permit, process));
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
            // Sleep until woken, polled, or the next retry falls due, whichever is first.
            let idle = this.idle_time().await;
            tokio::select! {
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.cancelled() => {}
            }
        }

        info!(worker = %this.id, "worker stopping: no new claims; waiting for running tasks");
        // Tasks that run until stopped (continuous sinks) stop now and are handed back;
        // the others ignore this and get the grace period.
        for r in this.lock_running().values() {
            r.ask_to_stop(AskedToStop::Shutdown);
        }
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
        // A try still leased to this worker now is a claim or hand-off whose answer was lost:
        // nothing will run it here.
        this.requeue_strays(&[], crate::core::Duration::ZERO).await;
        listen_stop.cancel();
        tokio::task::spawn_blocking(crate::operators::bash::process::remove_run_dir).await?;
        // Every try has been recorded or handed back: nothing is leased to this worker.
        if let Err(e) = tasks::unregister_worker(&this.pool, this.id).await {
            warn!(error = %e, "could not remove this worker's row; it is forgotten after a day");
        }
        info!(worker = %this.id, "worker stopped");
        Ok(())
    }

    /// How long an idle claim loop waits: the poll interval, or less when a retry falls due
    /// sooner.
    async fn idle_time(&self) -> std::time::Duration {
        let poll = self.settings.poll_interval.std();
        match tasks::next_retry_due(&self.pool).await {
            Ok(Some(due)) => (due - chrono::Utc::now())
                .to_std()
                .map(|d| d.min(poll))
                .unwrap_or(std::time::Duration::ZERO),
            _ => poll,
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews this worker's lease (one row for all its tries) every third of the lease TTL,
    /// and cancels tries that were taken away (reaped, run timed out, cleared). A failed
    /// heartbeat is retried at the next beat; leases only expire if the database stays out
    /// of reach for the whole TTL, and the reaper waits a TTL after any outage of its own.
    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let every = self.settings.lease_ttl.std() / 3;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            match self.beat().await {
                Ok(()) if failing => {
                    info!("heartbeat works again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    warn!(error = %e, "heartbeat failed; retrying each beat (leases expire if this lasts longer than the lease TTL)");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }

    /// One heartbeat: renew the lease, then check which tries are still this worker's. Only
    /// the tries asked about are judged: one claimed after the snapshot is not "lost".
    async fn beat(&self) -> sqlx::Result<()> {
        if !tasks::worker_heartbeat(&self.pool, self.id).await? {
            // The row was removed (by hand, or a clock jump let it be forgotten): register
            // again so this worker's tries stay leased.
            self.register().await?;
        }
        let asked: Vec<(i64, i32)> = self
            .lock_running()
            .iter()
            .map(|(id, r)| (*id, r.try_number))
            .collect();
        let held = tasks::held_tries(&self.pool, self.id, &asked).await?;
        {
            let running = self.lock_running();
            for h in held.iter().filter(|h| h.dag_paused) {
                if let Some(r) = running.get(&h.ti_id) {
                    r.ask_to_stop(AskedToStop::Paused);
                }
            }
            for (ti_id, _) in asked
                .iter()
                .filter(|(id, _)| !held.iter().any(|h| h.ti_id == *id))
            {
                if let Some(r) = running.get(ti_id) {
                    warn!(
                        ti_id,
                        "this try was taken away (reaped, timed out or cleared); cancelling it"
                    );
                    *r.reason.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(StopReason::LeaseLost);
                    r.cancel.cancel();
                }
            }
        }
        // Only tries leased two lease TTLs ago: one claimed after `asked` was read is not a
        // stray (a beat that took that long has let its leases expire anyway).
        let known: Vec<i64> = asked.iter().map(|(id, _)| *id).collect();
        let grace = crate::core::Duration::from(self.settings.lease_ttl.std().saturating_mul(2));
        self.requeue_strays(&known, grace).await;
        Ok(())
    }

    /// Puts tries leased to this worker that it does not know of back in the queue
    /// ([`tasks::requeue_strays`]); best effort, the next beat tries again.
    async fn requeue_strays(&self, known: &[i64], grace: crate::core::Duration) {
        match tasks::requeue_strays(&self.pool, self.id, known, grace).await {
            Ok(strays) if !strays.is_empty() => warn!(
                tasks = ?strays,
                "tasks were leased to this worker without its knowing (an answer lost at commit); back in the queue"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "could not check for tasks leased to this worker without its knowing")
            }
        }
    }

    async fn register(&self) -> sqlx::Result<()> {
        tasks::register_worker(
            &self.pool,
            self.id,
            &self.hostname,
            self.settings.worker_slots as i32,
            self.settings.lease_ttl,
        )
        .await
    }

    /// Runs a claimed try and records its outcome; returns the task the recording handed to
    /// this slot, if any (none once the worker is stopping).
    #[instrument(skip_all, fields(dag_id = %c.dag_id, run_id = %c.run_id, task_id = %c.task_id, try_number = c.try_number))]
    async fn run_claimed(
        self: &Arc<Self>,
        c: Claimed,
        stopping: &CancellationToken,
    ) -> Option<Claimed> {
        let cancel = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let stop = CancellationToken::new();
        let asked = Arc::new(Mutex::new(None));
        let this_try = Running {
            try_number: c.try_number,
            cancel: cancel.clone(),
            reason: reason.clone(),
            stop: stop.clone(),
            asked: asked.clone(),
        };
        let earlier = self.lock_running().insert(c.ti_id, this_try);
        // An earlier try of this task still running here was taken away (cleared), or this
        // newer try could not have been claimed: stop it now rather than at the next beat,
        // which would only ask about the newer try.
        if let Some(old) = earlier.filter(|o| o.try_number != c.try_number) {
            warn!(
                ti_id = c.ti_id,
                "an earlier try of this task was taken away (cleared); cancelling it"
            );
            *old.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(StopReason::LeaseLost);
            old.cancel.cancel();
        }
        // Read before the log exists, so every line of the try is masked for what it can see.
        let prepared = self
            .config
            .for_try(&self.pool, c.config_generation, c.pool_exists)
            .await;
        let secrets = match &prepared {
            Ok(p) => p.secrets.clone(),
            Err(_) => self.config.env_only().1,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(tx, secrets);
        let (end_tx, end_rx) = oneshot::channel();
        let writer = tokio::spawn(logs::write_logs(
            self.logs.clone(),
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
                c.pool
            )),
            Ok(p) => self.execute(&c, log.clone(), cancel, stop, p.env).await,
        };
        let reason = *reason.lock().unwrap_or_else(|e| e.into_inner());
        let asked = *asked.lock().unwrap_or_else(|e| e.into_inner());
        // The try stays in `running` (so its lease is renewed) until its outcome is recorded.
        let hand_off = !stopping.is_cancelled();
        let next = self
            .record(
                &c,
                (reason, asked),
                result,
                &log,
                (end_tx, writer),
                hand_off,
            )
            .await;
        // Only this try's entry: a newer try of the task (cleared meanwhile) may hold the key.
        let mut running = self.lock_running();
        if running
            .get(&c.ti_id)
            .is_some_and(|r| r.try_number == c.try_number)
        {
            running.remove(&c.ti_id);
        }
        drop(running);
        next
    }
}
