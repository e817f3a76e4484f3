//! Running one try: resolve the task's `with:` (templates, XComs), then run its operator
//! under `execution_timeout`.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{render, Worker};
use crate::db::tasks::{self, Claimed};
use crate::operators::{self, OperatorEnv, TaskContext, TaskLog};

/// How long a cancelled operator gets to stop before its future is dropped.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Worker {
    /// Resolves arguments and runs the operator under the execution timeout.
    pub(super) async fn execute(
        &self,
        c: &Claimed,
        log: TaskLog,
        cancel: CancellationToken,
        stop: CancellationToken,
        env: Arc<OperatorEnv>,
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
            stop,
            env,
            contract: None,
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
            // Templates render off the async runtime, bounded (see `render`).
            let t = render::TryRender {
                pool: &self.pool,
                env: &ctx.env,
                hostname: &self.hostname,
                dag: &dag,
                task,
                claimed: c,
            };
            render::resolve_for_try(t, xcoms).await?
        };
        let mut ctx = ctx;
        ctx.contract = self.contract(&dag, task, &with).await?;
        if let Some(c) = &ctx.contract {
            ctx.log.info(format!(
                "Records are checked against the record schema of {}",
                c.source
            ));
        }
        let started = Instant::now();
        // The operator's typed error travels as anyhow from here; recording downcasts it to
        // decide whether another try can help.
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
