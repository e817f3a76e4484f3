//! The scheduler: the pure planner and rules, the DAG processor that keeps Postgres in step
//! with the DAGs folder, and the loop that creates, starts, retries, reaps and times out
//! runs. Any number of schedulers can share a database: every step is a compare-and-set or
//! takes its rows with `SKIP LOCKED`.

pub mod processor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::core::retry::FailedTry;
use crate::core::Duration;
use crate::db::tasks::{self, Fence, Finish, SpecCache};
use crate::db::{self, scheduling, SCHEDULER_CHANNEL};
use crate::settings::EngineSettings;

/// What one tick did, for tests and debug logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub planned: usize,
    pub created: usize,
    pub started: usize,
    pub reaped: usize,
    pub timed_out: usize,
}

pub struct Scheduler {
    pool: PgPool,
    id: Uuid,
    hostname: String,
    settings: EngineSettings,
    specs: SpecCache,
    wake: Arc<Notify>,
    /// Since when every step has reached the database; `None` after a failure. The reaper
    /// waits until the database has been reachable for a whole lease TTL, so workers get
    /// to heartbeat and record their outcomes before their leases are judged.
    healthy_since: Mutex<Option<Instant>>,
    /// The last error of each step, so a failure is logged when it starts or changes, not
    /// every pass.
    failures: Mutex<HashMap<&'static str, String>>,
}

impl Scheduler {
    pub fn new(pool: PgPool, settings: EngineSettings, specs: SpecCache) -> Self {
        Scheduler {
            pool,
            id: Uuid::new_v4(),
            hostname: crate::settings::hostname(),
            settings,
            specs,
            wake: Arc::new(Notify::new()),
            healthy_since: Mutex::new(None),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Runs one step of a tick; a failure counts as nothing done, is logged when it first
    /// happens (or its message changes), and marks the database as not healthy.
    async fn step<T: Default, E: Into<anyhow::Error>>(
        &self,
        name: &'static str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        let result = work.await;
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(v) => {
                if failures.remove(name).is_some() {
                    info!(step = name, "scheduler step works again");
                }
                v
            }
            Err(e) => {
                let e: anyhow::Error = e.into();
                let message = format!("{e:#}");
                if failures.get(name) != Some(&message) {
                    warn!(step = name, error = %message, "scheduler step failed; it runs again next tick");
                    failures.insert(name, message);
                }
                *self.healthy_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                T::default()
            }
        }
    }

    /// Whether the database has been reachable for a whole lease TTL plus the time a
    /// worker's pool may take to reconnect, so expired leases can be trusted to mean a dead
    /// worker, not an outage everyone shared. (A pool that lost its connections retries with
    /// a backoff of up to a fifth of its 10 s acquire timeout: 2 s.)
    fn may_reap(&self) -> bool {
        const RECONNECT: std::time::Duration = std::time::Duration::from_secs(3);
        let mut since = self.healthy_since.lock().unwrap_or_else(|e| e.into_inner());
        let t = *since.get_or_insert_with(Instant::now);
        t.elapsed() >= self.settings.lease_ttl.std() + RECONNECT
    }

    /// Runs the DAG processor and the scheduling loop until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        info!(scheduler = %self.id, dags_folder = %self.settings.dags_folder.display(), "scheduler started");
        let processor = self.settings.process_dags_folder.then(|| {
            tokio::spawn(processor::run(
                self.pool.clone(),
                crate::dag::DagFolder::new(
                    &self.settings.dags_folder,
                    self.settings.dag_file_max_bytes,
                ),
                self.wake.clone(),
                shutdown.clone(),
            ))
        });
        tokio::spawn(db::listen::listen_channel(
            self.pool.clone(),
            SCHEDULER_CHANNEL,
            self.wake.clone(),
            shutdown.clone(),
        ));
        while !shutdown.is_cancelled() {
            match self.tick().await {
                Ok(report) if report != TickReport::default() => debug!(?report, "scheduler tick"),
                Ok(_) => {}
                Err(e) => warn!(error = %format!("{e:#}"), "scheduler tick failed; trying again"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval.std()) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        if let Some(p) = processor {
            let _ = p.await;
        }
        info!(scheduler = %self.id, "scheduler stopped");
        Ok(())
    }

    /// One pass over everything that may need doing. Tests drive this directly.
    #[instrument(skip_all, fields(scheduler = %self.id))]
    pub async fn tick(&self) -> anyhow::Result<TickReport> {
        let data_intervals = self.settings.create_cron_data_intervals;
        // Each step stands alone: one failing must not stop reaping or timeouts.
        let heartbeat = self
            .step(
                "heartbeat",
                scheduling::scheduler_heartbeat(&self.pool, self.id, &self.hostname),
            )
            .await;
        // Backfills queue their next runs first, so the step below starts them this pass.
        let _backfill_runs: usize = self
            .step(
                "advance backfills",
                crate::db::backfill::advance(&self.pool),
            )
            .await;
        let report = TickReport {
            planned: self
                .step(
                    "plan next runs",
                    scheduling::plan_next_runs(&self.pool, &self.specs, data_intervals),
                )
                .await,
            created: self
                .step(
                    "create due runs",
                    scheduling::create_due_runs(&self.pool, &self.specs, data_intervals),
                )
                .await,
            started: self
                .step(
                    "start queued runs",
                    scheduling::start_queued_runs(&self.pool, &self.specs),
                )
                .await,
            reaped: if self.may_reap() {
                self.step("reap expired leases", self.reap()).await
            } else {
                0
            },
            timed_out: self
                .step(
                    "enforce run timeouts",
                    scheduling::enforce_run_timeouts(&self.pool),
                )
                .await,
        };
        if report.created >= scheduling::CREATE_PER_PASS {
            self.wake.notify_one(); // more runs are due: come back at once
        }
        let _: () = heartbeat;
        Ok(report)
    }

    /// Expired leases: the worker died or stalled. The try counts as failed; the task is
    /// retried if it has tries left, otherwise its failure propagates downstream.
    async fn reap(&self) -> anyhow::Result<usize> {
        let expired = tasks::expired_leases(&self.pool, 100).await?;
        let mut reaped = 0;
        for e in expired {
            let dag = match self.specs.get(&self.pool, e.version_id).await {
                Ok(dag) => dag,
                Err(err) => {
                    let note = format!(
                        "updraft could not read DAG version {}: {err:#}",
                        e.version_id
                    );
                    warn!(ti_id = e.ti_id, "{note}; failing the task and its run");
                    tasks::fail_unreadable(&self.pool, e.run_pk, e.ti_id, &note).await?;
                    continue;
                }
            };
            let failed = FailedTry {
                dag_id: &e.dag_id,
                task_id: &e.task_id,
                logical_date: Some(e.logical_date),
                try_number: e.try_number.max(0) as u32,
            };
            let retry = match dag.task(&e.task_id) {
                Some(t) => t.retry_after(&failed, e.max_tries),
                None => (e.try_number <= e.max_tries).then_some(Duration::ZERO),
            };
            let outcome = Finish::Failed { retry_after: retry };
            let item = tasks::FinishItem {
                ti_id: e.ti_id,
                run_pk: e.run_pk,
                fence: Fence::Expired {
                    owner: e.lease_owner,
                    try_number: e.try_number,
                },
                outcome,
                dag,
                tail: Vec::new(),
                hand_off: None,
            };
            if let tasks::Finished::Recorded { .. } = tasks::finish(&self.pool, item).await? {
                reaped += 1;
                let message = match retry {
                    Some(d) => format!("The worker running this try stopped heartbeating; its lease expired. Retrying in {d}"),
                    None => "The worker running this try stopped heartbeating; its lease expired. No tries left: FAILED".into(),
                };
                warn!(ti_id = e.ti_id, task_id = %e.task_id, try_number = e.try_number, "reaped an expired lease");
                let line = crate::core::LogLine::system(message);
                db::logs::append(&self.pool, e.ti_id, e.try_number, &[line]).await?;
            }
        }
        Ok(reaped)
    }
}
