//! Resolving the record schema a publish or sink try is held to (see
//! [`crate::dag::contracts`]): a fetch task of the same DAG version, or of another DAG's
//! current version.

use std::sync::Arc;

use sqlx::PgPool;

use super::Worker;
use crate::dag::contracts::{contract_source, task_schema, ContractSource};
use crate::dag::{Dag, Task};
use crate::db::tasks::SpecCache;
use crate::operators::contract::Contract;
use crate::operators::OperatorError;

impl Worker {
    /// The contract of `task` given its resolved `with:`; `None` when it has none.
    pub(super) async fn contract(
        &self,
        dag: &Dag,
        task: &Task,
        with: &serde_json::Value,
    ) -> anyhow::Result<Option<Arc<Contract>>> {
        contract(&self.pool, &self.specs, dag, task, with).await
    }
}

/// The contract of `task` of `dag` given its resolved `with:`; `None` when it has none.
/// (Also what `updraft streams replay-dead-letters` checks dead letters against.)
pub async fn contract(
    pool: &PgPool,
    specs: &SpecCache,
    dag: &Dag,
    task: &Task,
    with: &serde_json::Value,
) -> anyhow::Result<Option<Arc<Contract>>> {
    let schema = match contract_source(dag, task, with) {
        None => return Ok(None),
        Some(ContractSource::Here(t)) => dag
            .task(&t)
            .and_then(|f| task_schema(dag, f))
            .ok_or_else(|| not_a_fetch(dag.dag_id.as_str(), &t))?,
        Some(ContractSource::Other { dag_id, task_id }) => {
            let version = crate::db::dags::current_version_id(pool, &dag_id)
                .await?
                .ok_or_else(|| {
                    OperatorError::config(format!(
                        "`schema_from` names DAG `{dag_id}`, which is not loaded"
                    ))
                })?;
            let other = specs.get(pool, version).await?;
            other
                .task(&task_id)
                .and_then(|f| task_schema(&other, f))
                .ok_or_else(|| not_a_fetch(&dag_id, &task_id))?
        }
    };
    let contract = Contract::compile(&schema).map_err(OperatorError::config)?;
    Ok(Some(Arc::new(contract)))
}

fn not_a_fetch(dag_id: &str, task_id: &str) -> OperatorError {
    OperatorError::config(format!(
        "the record schema comes from `{dag_id}.{task_id}`, which is not a fetch task with its `fields:` written out"
    ))
}
