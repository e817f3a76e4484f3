//! The worker: claims queued tasks into free slots, runs each under a lease renewed by a
//! heartbeat, and records the outcome (fenced by the lease). No transaction or row lock is
//! held while a task runs. NOTIFY and local finishes wake the claim loop; polling is only
//! the fallback.

pub mod render;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::core::{LogLine, LogStream, Secrets};
use crate::db::tasks::{self, Claimed, Fence, Finish, FinishItem, Finished, SpecCache};
use crate::db::{self, WORKER_CHANNEL};
use crate::operators::{self, OperatorEnv, TaskContext, TaskLog};
use crate::settings::EngineSettings;

/// Why a running try's token was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Shutdown,
    LeaseLost,
}

/// An outcome to record and where to send the result.
type OutcomeJob = (FinishItem, oneshot::Sender<sqlx::Result<Finished>>);

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
    env: Arc<OperatorEnv>,
    /// Passwords masked in every log line; fixed for the process, so computed once.
    secrets: Arc<Secrets>,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<i64, Running>>>,
    finisher: mpsc::UnboundedSender<OutcomeJob>,
    finisher_rx: Mutex<Option<mpsc::UnboundedReceiver<OutcomeJob>>>,
}

impl Worker {
    pub fn new(pool: PgPool, settings: EngineSettings, specs: SpecCache) -> Self {
        let env = Arc::new(settings.operator_env.clone());
        let (finisher, finisher_rx) = mpsc::unbounded_channel();
        Worker {
            finisher,
            finisher_rx: Mutex::new(Some(finisher_rx)),
            pool,
            id: Uuid::new_v4(),
            hostname: crate::settings::hostname(),
            settings,
            specs,
            secrets: Arc::new(env.secrets()),
            env,
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
            tokio::spawn(record_outcomes(this.pool.clone(), rx));
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
        let (tx, rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(tx, self.secrets.clone());
        let (end_tx, end_rx) = oneshot::channel();
        let writer = tokio::spawn(write_logs(
            self.pool.clone(),
            c.ti_id,
            c.try_number,
            rx,
            end_rx,
        ));

        let result = self.execute(&c, log.clone(), cancel).await;
        let stop = *reason.lock().unwrap_or_else(|e| e.into_inner());
        // The try stays in `running` (so its lease is renewed) until its outcome is recorded.
        self.record(&c, stop, result, &log, end_tx, writer).await;
        self.lock_running().remove(&c.ti_id);
    }

    /// Decides the finish for a try and records it, retrying while the database is away. If
    /// it still cannot be recorded, the lease is released so the reaper retries the task.
    async fn record(
        &self,
        c: &Claimed,
        stop: Option<StopReason>,
        result: anyhow::Result<operators::Outcome>,
        log: &TaskLog,
        end_logs: oneshot::Sender<()>,
        writer: tokio::task::JoinHandle<Vec<LogLine>>,
    ) {
        let dag = match self.spec_with_retries(c.version_id).await {
            Some(d) => d,
            None => {
                warn!("cannot load the DAG version to record the outcome; releasing the lease");
                let _ = end_logs.send(());
                if let Ok(Ok(tail)) = tokio::time::timeout(LOG_END_WAIT, writer).await {
                    self.append_tail(c, &tail).await;
                }
                self.release(c).await;
                return;
            }
        };
        let finish = match (stop, result) {
            (Some(StopReason::LeaseLost), _) => {
                log.info("The task's lease was taken away (the run timed out or the lease expired); result discarded");
                None
            }
            (Some(StopReason::Shutdown), _) => {
                log.info("Worker shutting down: the task goes back to the queue");
                Some(Finish::GiveBack)
            }
            (None, Ok(out)) if out.skipped => {
                log.info("Marking task as SKIPPED");
                Some(Finish::Skipped)
            }
            (None, Ok(out)) => {
                log.info("Marking task as SUCCESS");
                Some(Finish::Success { xcom: out.xcom })
            }
            (None, Err(e)) => {
                // A permanent operator error (bad configuration, a 4xx, ...) fails now: another
                // try cannot help. Other errors (rendering, the spec) retry as before.
                let operator = e.downcast_ref::<operators::OperatorError>();
                let retry = (c.try_number <= c.max_tries
                    && operator.is_none_or(|o| o.is_transient()))
                .then(|| {
                    let task = dag.task(&c.task_id);
                    task.map(|t| t.retry_policy().delay_after(c.try_number as u32))
                        .unwrap_or_default()
                });
                let line = match operator {
                    Some(o) => format!("Task failed ({}): {e:#}", o.verdict(retry.is_some())),
                    None => format!("Task failed: {e:#}"),
                };
                log.line(LogStream::System, line);
                match retry {
                    Some(d) => log.info(format!("Marking task as UP_FOR_RETRY; next try in {d}")),
                    None => log.info("Marking task as FAILED"),
                }
                Some(Finish::Failed { retry_after: retry })
            }
        };
        // End the log explicitly: a process the operator left behind may still hold a handle.
        let _ = end_logs.send(());
        let tail = match tokio::time::timeout(LOG_END_WAIT, writer).await {
            Ok(Ok(tail)) => tail,
            _ => Vec::new(),
        };
        let Some(finish) = finish else {
            self.append_tail(c, &tail).await;
            return;
        };
        let fence = Fence::Lease {
            owner: self.id,
            try_number: c.try_number,
        };
        let item = FinishItem {
            ti_id: c.ti_id,
            fence,
            outcome: finish,
            dag,
            tail,
        };
        let mut backoff = std::time::Duration::from_millis(250);
        let deadline = Instant::now() + RECORD_PATIENCE;
        loop {
            let (done_tx, done_rx) = oneshot::channel();
            let result = match self.finisher.send((item.clone(), done_tx)) {
                Ok(()) => done_rx.await.unwrap_or(Err(sqlx::Error::PoolClosed)),
                Err(_) => Err(sqlx::Error::PoolClosed),
            };
            match result {
                Ok(Finished::Recorded { .. }) => return,
                Ok(Finished::LeaseLost) => {
                    warn!(
                        "lease lost before the outcome was recorded; the reaper retries the task"
                    );
                    self.append_tail(c, &item.tail).await;
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    warn!(error = %e, "recording the outcome failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                }
                Err(e) => {
                    warn!(error = %e, "could not record the outcome; releasing the lease so the task is retried");
                    self.append_tail(c, &item.tail).await;
                    self.release(c).await;
                    return;
                }
            }
        }
    }

    async fn spec_with_retries(&self, version_id: i64) -> Option<Arc<crate::dag::Dag>> {
        for attempt in 0..5u32 {
            match self.specs.get(&self.pool, version_id).await {
                Ok(d) => return Some(d),
                Err(e) => {
                    warn!(error = %e, attempt, "loading the DAG version failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        None
    }

    async fn append_tail(&self, c: &Claimed, tail: &[LogLine]) {
        if let Err(e) = db::logs::append(&self.pool, c.ti_id, c.try_number, tail).await {
            warn!(error = %e, "could not store the try's last log lines");
        }
    }

    /// Lets the lease expire now, so the reaper counts the try as failed and retries it.
    async fn release(&self, c: &Claimed) {
        if let Err(e) = tasks::release_lease(&self.pool, c.ti_id, self.id, c.try_number).await {
            // It expires by itself once this try leaves `running` and stops being renewed.
            warn!(error = %e, "could not release the lease; it expires on its own");
        }
    }

    /// Resolves arguments and runs the operator under the execution timeout.
    async fn execute(
        &self,
        c: &Claimed,
        log: TaskLog,
        cancel: CancellationToken,
    ) -> anyhow::Result<operators::Outcome> {
        let dag = self.specs.get(&self.pool, c.version_id).await?;
        let task = dag.task(&c.task_id).ok_or_else(|| {
            anyhow::anyhow!(
                "task `{}` is not in DAG version {}",
                c.task_id,
                c.version_id
            )
        })?;
        let mut params = dag.params.clone();
        if let Some(conf) = c.conf.as_object() {
            for (k, v) in conf {
                params.insert(k.clone(), v.clone());
            }
        }
        let ctx = TaskContext {
            dag_id: c.dag_id.clone(),
            task_id: c.task_id.clone(),
            run_id: c.run_id.clone(),
            try_number: c.try_number,
            logical_date: c.logical_date,
            data_interval_start: c.data_interval_start,
            data_interval_end: c.data_interval_end,
            conf: c.conf.clone(),
            params,
            log,
            cancel: cancel.clone(),
            env: self.env.clone(),
        };
        ctx.log.info(format!(
            "Starting attempt {} of {} of {}.{} ({}) on {}",
            c.try_number,
            c.max_tries + 1,
            c.dag_id,
            c.task_id,
            task.uses,
            self.hostname
        ));
        let upstream: Vec<String> = task.upstream.iter().map(|t| t.to_string()).collect();
        let xcoms = if task.args.is_literal() || upstream.is_empty() {
            render::XComs::new()
        } else {
            tasks::xcoms(&self.pool, c.run_pk, &upstream)
                .await?
                .into_iter()
                .map(|(t, k, v)| ((t, k), v))
                .collect()
        };
        let with = if task.args.is_literal() {
            task.args.to_literal_json()
        } else {
            render::resolve(&task.args, &render::template_context(&ctx), &xcoms)?
        };
        let started = Instant::now();
        let mut run =
            std::pin::pin!(async { Ok(operators::run(task.operator, with, &ctx).await?) });
        let out = match task.execution_timeout {
            Some(limit) => match tokio::time::timeout(limit.std(), &mut run).await {
                Ok(r) => r,
                Err(_) => {
                    // Cancel first, so the operator stops its work (bash kills its process
                    // group), then give it a moment to do so.
                    cancel.cancel();
                    let _ = tokio::time::timeout(CANCEL_WAIT, &mut run).await;
                    Err(anyhow::anyhow!(
                        "Task timed out after {limit} (execution_timeout)"
                    ))
                }
            },
            None => run.await,
        };
        ctx.log.info(format!(
            "Task ran for {:.3}s",
            started.elapsed().as_secs_f64()
        ));
        out
    }
}

/// Records outcomes as they arrive, batching whatever is waiting into one transaction (one
/// commit for a burst of short tasks). If a batch fails, its items are recorded one by one
/// so that one bad item cannot hold the others back.
async fn record_outcomes(pool: PgPool, mut rx: mpsc::UnboundedReceiver<OutcomeJob>) {
    const MAX_BATCH: usize = 64;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<FinishItem>, Vec<_>) = batch.into_iter().unzip();
        match tasks::finish_many(&pool, &items).await {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) if items.len() > 1 => {
                warn!(error = %e, items = items.len(), "recording a batch of outcomes failed; recording them one by one");
                for (item, reply) in items.into_iter().zip(replies) {
                    let _ = reply.send(tasks::finish(&pool, item).await);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(sqlx::Error::Protocol(e.to_string())));
                }
            }
        }
    }
}

/// While a try runs, its lines are written every `LOG_FLUSH` (so a live tail sees them);
/// whatever is left when the try ends is returned, to be stored with the outcome.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a cancelled operator gets to stop before its future is dropped.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the log writer gets to hand back the last lines after the try ended.
const LOG_END_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a worker keeps trying to record an outcome while the database is away (the
/// lease stays renewed meanwhile); after that it releases the lease and the task is retried.
const RECORD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// About how many lines a try's log writer holds while the database refuses them; past this
/// the oldest are dropped, and one line says how many.
const LOG_HOLD_MAX: usize = 100_000;
/// How long the writer lets a write in flight finish once the try has ended (the caller waits
/// `LOG_END_WAIT` for it).
const LOG_INFLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// Lines not yet stored, and how many older ones had to be dropped.
#[derive(Default)]
struct Held {
    lines: Vec<LogLine>,
    dropped: usize,
}

impl Held {
    /// Drops the oldest lines beyond `max`, counting them.
    fn trim(&mut self, max: usize) {
        if self.lines.len() > max {
            let excess = self.lines.len() - max;
            self.lines.drain(..excess);
            self.dropped += excess;
        }
    }

    /// The lines to store: a note on what was dropped, if anything, then the lines.
    fn batch(&self) -> std::borrow::Cow<'_, [LogLine]> {
        match (self.dropped, self.lines.first()) {
            (0, _) | (_, None) => std::borrow::Cow::Borrowed(&self.lines),
            (n, Some(first)) => {
                let mut all = Vec::with_capacity(self.lines.len() + 1);
                all.push(LogLine {
                    at: first.at,
                    stream: LogStream::System,
                    text: format!(
                        "{n} log lines were dropped while the database could not store them"
                    ),
                });
                all.extend(self.lines.iter().cloned());
                std::borrow::Cow::Owned(all)
            }
        }
    }

    /// Everything left, for the caller to store with the outcome.
    fn into_tail(mut self) -> Vec<LogLine> {
        self.trim(LOG_HOLD_MAX);
        self.batch().into_owned()
    }
}

async fn write_logs(
    pool: PgPool,
    ti_id: i64,
    try_number: i32,
    mut rx: mpsc::UnboundedReceiver<LogLine>,
    mut end: oneshot::Receiver<()>,
) -> Vec<LogLine> {
    let mut held = Held::default();
    let mut flush_at: Option<tokio::time::Instant> = None;
    // Failed writes in a row: lines are kept and retried with backoff, not dropped for it.
    let mut failures = 0u32;
    loop {
        let flush = async {
            match flush_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    held.lines.push(line);
                    if failures > 0 && held.lines.len() >= 2 * LOG_HOLD_MAX {
                        held.trim(LOG_HOLD_MAX);
                    }
                    flush_at.get_or_insert_with(|| tokio::time::Instant::now() + LOG_FLUSH);
                }
                None => return held.into_tail(), // every handle is gone: the caller stores these
            },
            _ = flush => {
                let (written, ended) = {
                    let batch = held.batch();
                    let append = db::logs::append(&pool, ti_id, try_number, &batch);
                    tokio::pin!(append);
                    tokio::select! {
                        r = &mut append => (r, false),
                        _ = &mut end => {
                            // A write that finishes in time is not repeated by the caller; one
                            // stuck on an unreachable database (waiting for a connection, so
                            // nothing was sent) gives way, and its lines go back to the caller.
                            let r = tokio::time::timeout(LOG_INFLIGHT_WAIT, &mut append)
                                .await
                                .unwrap_or(Err(sqlx::Error::PoolTimedOut));
                            (r, true)
                        }
                    }
                };
                match written {
                    Ok(()) => {
                        held = Held::default();
                        failures = 0;
                        flush_at = None;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            warn!(error = %e, lines = held.lines.len(), "could not store task log lines; keeping them and retrying");
                        }
                        held.trim(LOG_HOLD_MAX);
                        let backoff = LOG_FLUSH * 2u32.pow(failures.min(6));
                        flush_at = Some(tokio::time::Instant::now() + backoff);
                    }
                }
                if ended {
                    while let Ok(line) = rx.try_recv() {
                        held.lines.push(line);
                    }
                    return held.into_tail();
                }
            }
            _ = &mut end => {
                // The try is over: take what is already queued and hand it all back.
                while let Ok(line) = rx.try_recv() {
                    held.lines.push(line);
                }
                return held.into_tail();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> LogLine {
        LogLine {
            at: chrono::Utc::now(),
            stream: LogStream::Stdout,
            text: format!("line {i}"),
        }
    }

    #[test]
    fn held_lines_keep_the_newest_and_count_every_dropped_one() {
        let mut held = Held {
            lines: (1..=10).map(line).collect(),
            dropped: 0,
        };
        held.trim(10);
        assert_eq!(held.lines.len(), 10, "at the limit nothing goes");
        assert!(matches!(held.batch(), std::borrow::Cow::Borrowed(_)));
        // Two trims: the note counts both.
        held.lines.extend((11..=15).map(line));
        held.trim(10);
        held.lines.extend((16..=20).map(line));
        held.trim(10);
        let tail = held.into_tail();
        let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 11);
        assert_eq!(
            texts[0],
            "10 log lines were dropped while the database could not store them"
        );
        assert_eq!(texts[1], "line 11");
        assert_eq!(texts[10], "line 20");
    }
}
