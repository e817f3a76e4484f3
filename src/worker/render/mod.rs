//! Resolving a task's `with:` at run time: `$t` templates are rendered the way Airflow 3
//! renders a templated field, `$x` markers read upstream XComs. The result is plain JSON that
//! the operator's config deserializes.
//!
//! Airflow compatibility is the point: a template written for Airflow must print the same
//! text here. The context has every name Airflow 3.3 gives a task (`context`), values print
//! as Python's `str()` (`value`), operators, methods and filters follow Python and Jinja
//! (`ops`, `methods`, `filters`, `format`), datetimes are pendulum's (`time`), and `macros`
//! has Airflow's macros. `tests/fixtures/airflow/template_corpus.json`, rendered by Airflow
//! 3.3.2 itself, holds this to account (`corpus_tests`).
//!
//! Rendering runs on a blocking thread, never on the async runtime, bounded in instructions
//! and output bytes (`compile::Limits`) and in time by the task's `execution_timeout`; a
//! render that goes over fails the try with a message saying which bound it hit.
//!
//! # Layout (each file uses only those above it in this list)
//! - `value`: Python `str`/`repr`, type names, the [`value::PyObject`] protocol.
//! - `time`, `objects`: datetimes and timedeltas; tuples, enums, modules.
//! - `format`, `pyjson`: `%`/`str.format`, `json.dumps`.
//! - `ops`, `methods`, `filters`: operators, methods of plain values, filters.
//! - `lookup`: [`TemplateData`], what a render may look up (variables, connections, XComs).
//! - `macros`, `context`: the `macros` object and the whole context.
//! - `compile`: the syntax-tree rewrite, the environment, running one template.
//! - `in_worker`: how the worker gathers a try's facts and renders off the runtime.

mod accessors;
mod airflow;
mod compile;
mod context;
mod facts;
mod filters;
mod format;
mod in_worker;
mod lookup;
mod macros;
mod methods;
mod objects;
mod ops;
mod pyjson;
mod rewrite;
mod textfilters;
mod ti;
mod time;
mod value;

#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::dag::Arg;

pub use compile::{Limits, TemplateError};
pub use facts::{DagFacts, Facts, PrevSuccess, RunFacts, TaskFacts, TiFacts};
pub use in_worker::{resolve_for_try, EnvData, TryRender};
pub use lookup::{ConnectionInfo, LookupError, TemplateData, XComHit, XComQuery};

/// XCom values available to this task for `$x` markers: (task_id, key) → value.
pub type XComs = HashMap<(String, String), serde_json::Value>;

/// Why a task's arguments could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template `{template}` failed to render: {error}")]
    Template {
        template: String,
        error: TemplateError,
    },
    #[error(
        "rendering the task's templates took longer than {0:?} (its execution_timeout); \
         the render was stopped"
    )]
    TimedOut(std::time::Duration),
    #[error("rendering the task's templates failed unexpectedly: {0}")]
    Crashed(String),
}

/// One try's templates: what they see and how far they may go.
#[derive(Clone)]
pub struct Renderer {
    context: minijinja::Value,
    limits: Limits,
}

impl Renderer {
    pub fn new(
        facts: &Facts,
        data: Arc<dyn TemplateData>,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Self {
        Renderer {
            context: context::build(facts, data, now),
            limits,
        }
    }

    /// Renders one template (on the calling thread; see [`Renderer::resolve_async`]).
    pub fn render(&self, source: &str) -> Result<String, TemplateError> {
        let env = compile::environment(self.limits);
        compile::render(&env, source, &self.context, self.limits)
    }

    /// Resolves every marker below `arg` on the calling thread.
    pub fn resolve(&self, arg: &Arg, xcoms: &XComs) -> Result<serde_json::Value, RenderError> {
        let env = compile::environment(self.limits);
        self.resolve_in(&env, arg, xcoms)
    }

    fn resolve_in(
        &self,
        env: &minijinja::Environment<'_>,
        arg: &Arg,
        xcoms: &XComs,
    ) -> Result<serde_json::Value, RenderError> {
        Ok(match arg {
            Arg::Value(v) => v.clone(),
            Arg::List(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|a| self.resolve_in(env, a, xcoms))
                    .collect::<Result<_, _>>()?,
            ),
            Arg::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, a)| Ok((k.clone(), self.resolve_in(env, a, xcoms)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            Arg::Template(source) => serde_json::Value::String(
                compile::render(env, source, &self.context, self.limits).map_err(|error| {
                    RenderError::Template {
                        template: abbreviate(source),
                        error,
                    }
                })?,
            ),
            // Like Airflow, a missing XCom (e.g. the upstream was skipped) is null.
            Arg::XCom { task, key } => xcoms
                .get(&(task.to_string(), key.clone()))
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        })
    }

    /// Resolves `arg` on a blocking thread, giving up after `deadline` (the task's
    /// `execution_timeout`). A render that is given up on stops by itself when its fuel runs
    /// out; the try does not wait for it.
    pub async fn resolve_async(
        self,
        arg: Arg,
        xcoms: XComs,
        deadline: Option<std::time::Duration>,
    ) -> Result<serde_json::Value, RenderError> {
        let job = tokio::task::spawn_blocking(move || self.resolve(&arg, &xcoms));
        let joined = match deadline {
            Some(d) => tokio::time::timeout(d, job)
                .await
                .map_err(|_| RenderError::TimedOut(d))?,
            None => job.await,
        };
        joined.map_err(|e| RenderError::Crashed(e.to_string()))?
    }
}

/// The start of a long template, for messages.
fn abbreviate(source: &str) -> String {
    const MAX: usize = 200;
    if source.len() <= MAX {
        return source.to_string();
    }
    let mut end = MAX;
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &source[..end])
}
