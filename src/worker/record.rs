//! Recording a try's outcome: deciding success, skip, retry or failure, then writing it
//! (fenced by the lease) through one batching recorder per worker, retrying while the
//! database is away.

use std::sync::Arc;

use backon::{ExponentialBuilder, Retryable};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::logs::LOG_END_WAIT;
use super::{AskedToStop, StopReason, Worker};
use crate::core::retry::FailedTry;
use crate::core::{Duration, LogLine, LogStream};
use crate::db;
use crate::db::tasks::{self, Claimed, Fence, Finish, FinishItem, Finished};
use crate::operators::{self, TaskLog};

/// An outcome to record and where to send the result.
pub(super) type OutcomeJob = (FinishItem, oneshot::Sender<sqlx::Result<Finished>>);

/// How long a worker keeps trying to record an outcome while the database is away (the
/// lease stays renewed meanwhile); after that it releases the lease and the task is retried.
const RECORD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

impl Worker {
    /// Decides the finish for a try and records it, retrying while the database is away. If
    /// it still cannot be recorded, the lease is released so the reaper retries the task.
    /// With `hand_off`, the recording may lease one of the tasks it queues to this worker
    /// (for the slot the try frees): that task is returned, to be run next.
    pub(super) async fn record(
        &self,
        c: &Claimed,
        (stop, asked): (Option<StopReason>, Option<AskedToStop>),
        result: anyhow::Result<operators::Outcome>,
        log: &TaskLog,
        (end_logs, writer): (oneshot::Sender<()>, tokio::task::JoinHandle<Vec<LogLine>>),
        hand_off: bool,
    ) -> Option<Claimed> {
        let dag = match self.spec_with_retries(c.version_id).await {
            Some(d) => d,
            None => {
                warn!("cannot load the DAG version to record the outcome; releasing the lease");
                let _ = end_logs.send(());
                if let Ok(Ok(tail)) = tokio::time::timeout(LOG_END_WAIT, writer).await {
                    self.append_tail(c, &tail).await;
                }
                self.release(c).await;
                return None;
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
            // An operator that runs until stopped was asked to stop: at shutdown its work
            // goes on elsewhere; on a pause its run ends (it resumes when a run starts again).
            (None, Ok(out)) if out.interrupted && asked == Some(AskedToStop::Shutdown) => {
                log.info("Stopped for the worker's shutdown: the task goes back to the queue");
                Some(Finish::GiveBack)
            }
            (None, Ok(out)) if out.interrupted && asked == Some(AskedToStop::Paused) => {
                log.info("Stopped because the DAG was paused; marking task as SUCCESS");
                Some(Finish::Success {
                    xcom: out
                        .xcom
                        .into_iter()
                        .map(|(k, v)| (k, mask_json(log, v)))
                        .collect(),
                })
            }
            (None, Ok(out)) if out.skipped => {
                log.info("Marking task as SKIPPED");
                Some(Finish::Skipped)
            }
            (None, Ok(out)) => {
                log.info("Marking task as SUCCESS");
                // XComs are shown in pages and read by templates: no secret is stored in one.
                let xcom = out
                    .xcom
                    .into_iter()
                    .map(|(k, v)| (k, mask_json(log, v)))
                    .collect();
                Some(Finish::Success { xcom })
            }
            (None, Err(e)) => {
                // A permanent operator error (bad configuration, a 4xx, ...) fails now: another
                // try cannot help. Other errors (rendering, the spec) retry as before.
                let operator = e.downcast_ref::<operators::OperatorError>();
                let failed = FailedTry {
                    dag_id: &c.dag_id,
                    task_id: &c.task_id,
                    logical_date: Some(c.logical_date),
                    try_number: c.try_number.max(0) as u32,
                };
                let retry = match dag.task(&c.task_id) {
                    _ if operator.is_some_and(|o| !o.is_transient()) => None,
                    Some(t) => t.retry_after(&failed, c.max_tries),
                    None => (c.try_number <= c.max_tries).then_some(Duration::ZERO),
                };
                let line = match operator {
                    Some(o) => format!("Task failed ({}): {e:#}", o.verdict(retry.is_some())),
                    None => format!("Task failed: {e:#}"),
                };
                // The terminal says so too, once per failed try, with where to read more.
                warn!(
                    log = %format!(
                        "/dags/{}/runs/{}/tasks/{}/logs/{} (or `updraft tasks logs {} {} {} --try {}`)",
                        c.dag_id, c.run_id, c.task_id, c.try_number,
                        c.dag_id, c.run_id, c.task_id, c.try_number
                    ),
                    "{}; {}",
                    log.mask(&line),
                    match retry {
                        Some(d) => format!("retrying in {d}"),
                        None => "no retries left".to_string(),
                    }
                );
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
            return None;
        };
        let item = FinishItem {
            tail,
            hand_off: hand_off.then(|| tasks::HandOff {
                worker: self.id,
                hostname: self.hostname.clone(),
            }),
            ..self.own_outcome(c, finish, dag)
        };
        // While the database is away, keep trying often (at most a second apart), so the
        // outcome lands as soon as it is back: before the reaper, which waits a lease TTL
        // after an outage, would take the try back.
        let mut warned = false;
        let result = (|| async {
            let (done_tx, done_rx) = oneshot::channel();
            match self.finisher.send((item.clone(), done_tx)) {
                Ok(()) => done_rx.await.unwrap_or(Err(sqlx::Error::PoolClosed)),
                Err(_) => Err(sqlx::Error::PoolClosed),
            }
        })
        .retry(
            ExponentialBuilder::new()
                .with_min_delay(std::time::Duration::from_millis(50))
                .with_max_delay(std::time::Duration::from_secs(1))
                .with_total_delay(Some(RECORD_PATIENCE))
                .without_max_times()
                .with_jitter(),
        )
        .notify(|e, _| {
            if !warned {
                warn!(error = %e, "recording the outcome failed; retrying until the database answers");
                warned = true;
            }
        })
        .await;
        match result {
            Ok(Finished::Recorded {
                run_ended, next, ..
            }) => {
                if run_ended == Some(crate::core::RunState::Failed) {
                    warn!(
                        page = %format!("/dags/{}/runs/{}", c.dag_id, c.run_id),
                        "run {} of DAG {} failed", c.run_id, c.dag_id
                    );
                }
                next.map(|n| *n)
            }
            Ok(Finished::LeaseLost) => {
                warn!("the try was taken away before its outcome was recorded; outcome discarded");
                self.append_tail(c, &item.tail).await;
                None
            }
            Err(e) => {
                warn!(error = %e, "could not record the outcome; releasing the lease so the task is retried");
                self.append_tail(c, &item.tail).await;
                self.release(c).await;
                None
            }
        }
    }

    /// Hands a try that was never started back to the queue, untried; if that cannot be
    /// recorded, releases its lease (the reaper then retries it).
    pub(super) async fn give_back(&self, c: &Claimed) {
        let Some(dag) = self.spec_with_retries(c.version_id).await else {
            self.release(c).await;
            return;
        };
        let item = self.own_outcome(c, Finish::GiveBack, dag);
        if let Err(e) = tasks::finish(&self.pool, item).await {
            warn!(error = %e, "could not hand an unstarted task back; releasing its lease");
            self.release(c).await;
        }
    }

    /// `outcome` of this worker's try `c`, fenced by its lease; no log lines, no hand-off.
    fn own_outcome(&self, c: &Claimed, outcome: Finish, dag: Arc<crate::dag::Dag>) -> FinishItem {
        FinishItem {
            ti_id: c.ti_id,
            run_pk: c.run_pk,
            fence: Fence::Lease {
                owner: self.id,
                try_number: c.try_number,
            },
            outcome,
            dag,
            tail: Vec::new(),
            hand_off: None,
        }
    }

    async fn spec_with_retries(&self, version_id: i64) -> Option<Arc<crate::dag::Dag>> {
        (|| self.specs.get(&self.pool, version_id))
            .retry(
                ExponentialBuilder::new()
                    .with_min_delay(std::time::Duration::from_millis(200))
                    .with_max_times(5),
            )
            .notify(
                |e, _| warn!(error = %format!("{e:#}"), "loading the DAG version failed; retrying"),
            )
            .await
            .ok()
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
}

/// Outcome transactions a worker has in flight at once (each holds a connection). More only
/// queue inside the database and lengthen each other: on 2 cores with 3 workers, 4 per
/// worker gave a chain's hand-off p50 7.3 ms against 4.4 ms with 2, for 10 % more
/// throughput (RELIABILITY.md).
const IN_FLIGHT: usize = 2;

/// Starts the worker's recorder ([`record_outcomes`]) on a thread and a runtime of its own,
/// with a pool of its own. Between a transaction's statements the recorder waits on the
/// database; on the worker's runtime each of those wake-ups queued behind the tasks running
/// there, and a hand-off waits for every one of them. Apart, the hand-off p50 under 200
/// chains went from 3.7–4.1 ms to 2.6–3.4 ms, and 50 × 40 `empty` from 1,729–1,817 to
/// 2,162–2,358 tasks/s (RELIABILITY.md). It ends when the worker's sender is dropped.
pub(super) fn start_recorder(
    pool: &PgPool,
    rx: mpsc::UnboundedReceiver<OutcomeJob>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pool = pool.clone();
    std::thread::Builder::new()
        .name("updraft-recorder".into())
        .spawn(move || {
            runtime.block_on(async move {
                let own = db::side_pool(&pool, IN_FLIGHT as u32);
                record_outcomes(own.clone(), rx).await;
                own.close().await;
            })
        })?;
    Ok(())
}

/// Records outcomes as they arrive. Outcomes are grouped by run: each run's outcomes share
/// one transaction (one commit for a burst of short tasks), and different runs'
/// transactions go side by side, so a transaction never holds more than one run's lock and
/// never waits behind another run's. A run has at most one transaction in flight from this
/// worker: outcomes of a run whose transaction is still committing wait and go together in
/// the next one, instead of queueing on the run's row lock behind it (every finish locks its
/// run). If a transaction fails, its items are recorded one by one so that one bad item
/// cannot hold the others back.
///
/// One transaction for the outcomes of every idle run was measured too: under 200 chains
/// it gave 2.3 times the throughput, but a hand-off waits for the whole batch's statements,
/// and its p50 was 5.5–6.4 ms against 3.6–4.5 ms (RELIABILITY.md).
pub(super) async fn record_outcomes(pool: PgPool, mut rx: mpsc::UnboundedReceiver<OutcomeJob>) {
    const MAX_BATCH: usize = 64;
    let mut waiting: std::collections::BTreeMap<i64, Vec<OutcomeJob>> = Default::default();
    let mut busy: std::collections::HashSet<i64> = Default::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
    let mut open = true;
    while open || !busy.is_empty() || !waiting.is_empty() {
        tokio::select! {
            job = rx.recv(), if open => match job {
                Some(job) => waiting.entry(job.0.run_pk).or_default().push(job),
                None => open = false,
            },
            Some(run) = done_rx.recv() => {
                busy.remove(&run);
            }
        }
        // Whatever else has arrived joins its run's group.
        while let Ok(job) = rx.try_recv() {
            waiting.entry(job.0.run_pk).or_default().push(job);
        }
        let ready: Vec<i64> = waiting
            .keys()
            .filter(|run| !busy.contains(run))
            .copied()
            .take(IN_FLIGHT.saturating_sub(busy.len()))
            .collect();
        for run in ready {
            let Some(mut jobs) = waiting.remove(&run) else {
                continue;
            };
            if jobs.len() > MAX_BATCH {
                waiting.insert(run, jobs.split_off(MAX_BATCH));
            }
            busy.insert(run);
            let (pool, done) = (pool.clone(), done_tx.clone());
            tokio::spawn(async move {
                // Even if recording panicked, the run must not stay busy forever.
                let _ = tokio::spawn(async move { record_group(&pool, jobs).await }).await;
                let _ = done.send(run);
            });
        }
    }
}

async fn record_group(pool: &PgPool, jobs: Vec<OutcomeJob>) {
    let (items, replies): (Vec<FinishItem>, Vec<_>) = jobs.into_iter().unzip();
    match tasks::finish_many(pool, &items).await {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Err(e) if items.len() > 1 => {
            warn!(error = %e, items = items.len(), "recording a batch of outcomes failed; recording them one by one");
            for (item, reply) in items.into_iter().zip(replies) {
                let _ = reply.send(tasks::finish(pool, item).await);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(sqlx::Error::Protocol(e.to_string())));
            }
        }
    }
}

/// `value` with every secret the try's log masks replaced by `***` in its strings (keys too).
fn mask_json(log: &TaskLog, value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(log.mask(&s).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask_json(log, v)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (log.mask(&k).into_owned(), mask_json(log, v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_xcom_values_are_masked() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let log = TaskLog::new(
            tx,
            Arc::new(crate::core::Secrets::new(["hunter2".to_string()])),
        );
        let masked = mask_json(
            &log,
            serde_json::json!({"url": "postgres://u:hunter2@h/db", "list": ["hunter2", 1], "hunter2": true}),
        );
        assert_eq!(
            masked,
            serde_json::json!({"url": "postgres://u:***@h/db", "list": ["***", 1], "***": true})
        );
    }
}
