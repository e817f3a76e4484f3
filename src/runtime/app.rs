//! Wiring roles together. `standalone` is scheduler + worker (+ web) in one process;
//! the separate roles are the same parts alone. One cancellation token reaches every loop.

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::db::tasks::SpecCache;
use crate::scheduler::Scheduler;
use crate::settings::EngineSettings;
use crate::worker::Worker;

/// Which parts this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub scheduler: bool,
    pub worker: bool,
}

/// Runs the chosen roles until `shutdown`, returning when all have stopped.
pub async fn run_engine(
    pool: PgPool,
    settings: EngineSettings,
    roles: Roles,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let specs = SpecCache::default();
    tokio::spawn(give_back_freed_memory(shutdown.clone()));
    let mut handles = Vec::new();
    if roles.scheduler {
        let s = Scheduler::new(pool.clone(), settings.clone(), specs.clone());
        handles.push(tokio::spawn(s.run(shutdown.clone())));
    }
    if roles.worker {
        let w = Worker::new(pool.clone(), settings.clone(), specs.clone());
        handles.push(tokio::spawn(w.run(shutdown.clone())));
    }
    if handles.is_empty() {
        return Ok(());
    }
    // Wait for all roles together: the first to fail stops the others, at once.
    let mut roles = futures::future::select_all(handles);
    loop {
        let (result, _, rest) = roles.await;
        let failed = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(anyhow::anyhow!("a role panicked: {e}")),
        };
        if let Some(e) = failed {
            shutdown.cancel();
            for h in rest {
                let _ = h.await;
            }
            return Err(e);
        }
        if rest.is_empty() {
            return Ok(());
        }
        roles = futures::future::select_all(rest);
    }
}

/// Scheduler and worker running in this process on DAGs that are already stored (the DAGs
/// folder is not processed): what `dags test` and `bench` use.
pub struct InProcess {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    pub fn start(pool: PgPool, mut settings: EngineSettings) -> InProcess {
        settings.process_dags_folder = false;
        let shutdown = CancellationToken::new();
        let roles = Roles {
            scheduler: true,
            worker: true,
        };
        let handle = tokio::spawn(run_engine(pool, settings, roles, shutdown.clone()));
        InProcess { shutdown, handle }
    }

    /// Stops both roles and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }
}

/// A token cancelled at the first SIGINT or SIGTERM. The handlers are in place when this
/// returns (before any role starts), so a signal that comes while the process is still
/// starting is a graceful stop too, not the default death that would leave its run
/// directory behind.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
            .ok()
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        match handlers {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("shutting down: finishing running tasks (Ctrl-C again to stop at once)");
        t.cancel();
        // A second signal stops at once; leases expire and other workers retry.
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    token
}

/// Every half minute, hands memory the allocator holds but no longer uses back to the
/// system. glibc keeps what a burst freed (a batch of records, a finished sink's buffers) in
/// its arenas until told; without this a process that streamed or ran a pipeline keeps its
/// peak. Costs a walk over the free lists: microseconds for a process this size.
async fn give_back_freed_memory(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => trim(),
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
