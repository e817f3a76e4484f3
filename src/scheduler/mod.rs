//! The scheduler: the pure planner and rules, the DAG processor that keeps Postgres in step
//! with the DAGs folder, and the loop that creates, starts, retries, reaps and times out
//! runs. Any number of schedulers can share a database: every step is a compare-and-set or
//! takes its rows with `SKIP LOCKED`.

pub mod processor;

use std::sync::Arc;

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

/// Runs one step of a tick; a failure is logged and counts as nothing done.
async fn step<T: Default, E: Into<anyhow::Error>>(
    name: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    match work.await {
        Ok(v) => v,
        Err(e) => {
            let e: anyhow::Error = e.into();
            warn!(step = name, error = %format!("{e:#}"), "scheduler step failed; it runs again next tick");
            T::default()
        }
    }
}

/// What one tick did, for tests and debug logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub planned: usize,
    pub created: usize,
    pub started: usize,
    pub retried: u64,
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
        }
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
        let report = TickReport {
            planned: step(
                "plan next runs",
                scheduling::plan_next_runs(&self.pool, &self.specs, data_intervals),
            )
            .await,
            created: step(
                "create due runs",
                scheduling::create_due_runs(&self.pool, &self.specs, data_intervals),
            )
            .await,
            started: step(
                "start queued runs",
                scheduling::start_queued_runs(&self.pool, &self.specs),
            )
            .await,
            retried: step("queue due retries", tasks::queue_due_retries(&self.pool)).await,
            reaped: step("reap expired leases", self.reap()).await,
            timed_out: step(
                "enforce run timeouts",
                scheduling::enforce_run_timeouts(&self.pool),
            )
            .await,
        };
        if report.created >= scheduling::CREATE_PER_PASS {
            self.wake.notify_one(); // more runs are due: come back at once
        }
        scheduling::scheduler_heartbeat(&self.pool, self.id, &self.hostname).await?;
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
                    tasks::fail_unreadable(&self.pool, e.ti_id, &note).await?;
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
                fence: Fence::Expired,
                outcome,
                dag,
                tail: Vec::new(),
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
