//! The worker's side of rendering: the try's facts from its claim, its DAG version and one
//! database read; variables and connections from the try's operator environment (the
//! environment's `AIRFLOW_VAR_*` / `AIRFLOW_CONN_*` first, then the database's, as Airflow's
//! secrets chain does); XComs from the database while the template runs.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use super::facts::{DagFacts, Facts, PrevSuccess, RunFacts, TaskFacts, TiFacts};
use super::lookup::{ConnectionInfo, LookupError, TemplateData, XComHit, XComQuery};
use super::{Limits, RenderError, Renderer, XComs};
use crate::dag::{Dag, Task};
use crate::db::tasks::Claimed;
use crate::db::templates::{self, RenderRow};
use crate::operators::OperatorEnv;

/// How long one XCom read during a render may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Variables and connections from the operator environment, XComs from the database.
#[derive(Clone)]
pub struct EnvData {
    pub env: Arc<OperatorEnv>,
    pub pool: PgPool,
    /// The runtime to run database reads on; renders call from a blocking thread.
    pub handle: tokio::runtime::Handle,
}

impl TemplateData for EnvData {
    fn variable(&self, key: &str) -> Result<Option<String>, LookupError> {
        use crate::settings::LookupError as Missing;
        match self.env.variable(key) {
            Ok(v) => Ok(Some(v.to_string())),
            Err(Missing::MissingVariable { .. }) => Ok(None),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }

    fn connection(&self, conn_id: &str) -> Result<Option<ConnectionInfo>, LookupError> {
        use crate::settings::LookupError as Missing;
        match self.env.connection(conn_id) {
            Ok(c) => Ok(Some(ConnectionInfo {
                conn_id: conn_id.to_string(),
                conn_type: Some(c.conn_type.clone()).filter(|t| !t.is_empty()),
                description: c.description.clone(),
                host: c.host.clone(),
                schema: c.schema.clone(),
                login: c.login.clone(),
                password: c.password.clone(),
                port: c.port.map(i64::from),
                extra: c.extra.clone(),
            })),
            Err(Missing::MissingConnection { .. }) => Ok(None),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }

    fn xcoms(&self, q: &XComQuery) -> Result<Vec<XComHit>, LookupError> {
        let up_to = if q.include_prior_dates {
            // A run without a logical date has no earlier runs to speak of.
            Some(
                q.logical_date
                    .ok_or_else(|| LookupError("no logical date".into()))?,
            )
        } else {
            None
        };
        let read = templates::xcoms(&self.pool, &q.dag_id, &q.run_id, &q.task_ids, &q.key, up_to);
        self.handle
            .block_on(async { tokio::time::timeout(LOOKUP_TIMEOUT, read).await })
            .map_err(|_| LookupError(format!("reading XComs took longer than {LOOKUP_TIMEOUT:?}")))?
            .map_err(|e| LookupError(e.to_string()))
    }
}

/// The context facts of a claimed try.
pub fn facts(dag: &Dag, task: &Task, c: &Claimed, row: &RenderRow, hostname: &str) -> Facts {
    let conf = c.conf.as_object().cloned().unwrap_or_default();
    let dag_params: Vec<(String, serde_json::Value)> = dag
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let secs = |d: Option<crate::core::Duration>| d.map(|d| d.as_secs_f64());
    Facts {
        params: Facts::resolve_params(&dag_params, &conf),
        dag: DagFacts {
            dag_id: dag.dag_id.to_string(),
            description: dag.description.clone(),
            owner: dag.owners(),
            tags: dag.tags.clone(),
            catchup: dag.catchup,
            max_active_runs: dag.max_active_runs as i64,
            max_active_tasks: dag.max_active_tasks as i64,
            dagrun_timeout: secs(dag.dagrun_timeout),
            start_date: dag.start_date,
            end_date: dag.end_date,
            doc_md: dag.doc_md.clone(),
            schedule: dag.schedule.display(),
            task_ids: dag.tasks.iter().map(|t| t.task_id.to_string()).collect(),
            params: dag_params.clone(),
        },
        task: TaskFacts {
            task_id: task.task_id.to_string(),
            class_path: task.uses.clone(),
            owner: task.owner.clone(),
            retries: task.retries as i64,
            retry_delay: task.retry_delay.as_secs_f64(),
            retry_exponential_backoff: task.retry_exponential_backoff,
            max_retry_delay: secs(task.max_retry_delay),
            execution_timeout: secs(task.execution_timeout),
            queue: task.queue.clone().unwrap_or_else(|| "default".into()),
            pool: task.pool.clone().unwrap_or_else(|| "default_pool".into()),
            priority_weight: 1,
            trigger_rule: task.trigger_rule.as_str().to_string(),
            depends_on_past: false,
            doc_md: task.doc_md.clone(),
            params: dag_params.clone(),
            upstream: task.upstream.iter().map(|t| t.to_string()).collect(),
            downstream: task.downstream.iter().map(|t| t.to_string()).collect(),
        },
        run: RunFacts {
            run_id: c.run_id.clone(),
            run_type: row.run_type.as_str().to_string(),
            state: row.run_state.as_str().to_string(),
            logical_date: Some(c.logical_date),
            data_interval_start: Some(c.data_interval_start),
            data_interval_end: Some(c.data_interval_end),
            run_after: Some(row.run_after),
            start_date: row.run_start_date,
            end_date: row.run_end_date,
            queued_at: Some(row.queued_at),
            conf,
            clear_number: 0,
        },
        ti: TiFacts {
            try_number: c.try_number as i64,
            max_tries: c.max_tries as i64,
            map_index: -1,
            hostname: hostname.to_string(),
            start_date: row.ti_start_date,
        },
        prev_success: row.prev_found.then_some(PrevSuccess {
            data_interval_start: row.prev_interval_start,
            data_interval_end: row.prev_interval_end,
            start_date: row.prev_start_date,
            end_date: row.prev_end_date,
        }),
    }
}

/// What the worker needs to render one try.
pub struct TryRender<'a> {
    pub pool: &'a PgPool,
    pub env: &'a Arc<OperatorEnv>,
    pub hostname: &'a str,
    pub dag: &'a Dag,
    pub task: &'a Task,
    pub claimed: &'a Claimed,
}

/// Resolves a claimed try's `with:` off the async runtime; a render that takes longer than
/// the task's `execution_timeout` fails the try.
pub async fn resolve_for_try(
    t: TryRender<'_>,
    xcoms: XComs,
) -> Result<serde_json::Value, anyhow::Error> {
    let row = templates::render_row(t.pool, t.claimed.run_pk, t.claimed.ti_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the run of this try is gone"))?;
    let facts = facts(t.dag, t.task, t.claimed, &row, t.hostname);
    let data = EnvData {
        env: t.env.clone(),
        pool: t.pool.clone(),
        handle: tokio::runtime::Handle::current(),
    };
    let renderer = Renderer::new(
        &facts,
        Arc::new(data),
        Limits::default(),
        chrono::Utc::now(),
    );
    let deadline = t.task.execution_timeout.map(|d| d.std());
    renderer
        .resolve_async(t.task.args.clone(), xcoms, deadline)
        .await
        .map_err(|e: RenderError| anyhow::anyhow!(e))
}
