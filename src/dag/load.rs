//! Loading DAG files: every `*.yaml` / `*.yml` file (hidden files and folders skipped), each
//! parsed on its own so one broken file never takes other DAGs down. Like a failed Airflow
//! import, a file with any error contributes no DAG at all: half a file's DAGs appearing would
//! be more confusing than none. [`parse_source`] parses one file's text; walking and reading
//! the folder is [`super::folder`]'s.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::model::{Dag, DagId};
use super::read::{DagError, Source};
use super::validate::validate_document;
use super::yaml;

/// A DAG that loaded, with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedDag {
    pub dag: Dag,
    /// Path relative to the DAGs folder.
    pub fileloc: String,
    /// The whole file's text.
    pub source: String,
    /// sha256 (hex) of the DAG's validated spec as JSON.
    pub hash: String,
}

impl LoadedDag {
    /// A loaded DAG with its version hash ([`spec_hash`]).
    pub fn new(dag: Dag, fileloc: impl Into<String>, source: impl Into<String>) -> LoadedDag {
        LoadedDag {
            hash: spec_hash(&dag),
            dag,
            fileloc: fileloc.into(),
            source: source.into(),
        }
    }
}

/// Everything the DAGs folder holds right now.
#[derive(Clone, Debug, Default)]
pub struct DagBag {
    pub dags: BTreeMap<DagId, LoadedDag>,
    /// Import errors by file (relative path); a file with any error contributes no DAG.
    pub errors: BTreeMap<String, Vec<DagError>>,
    /// Warnings (e.g. a missing `$schema`), by file.
    pub warnings: BTreeMap<String, Vec<DagError>>,
}

/// What one file holds: its DAGs when it had no error, and every error and warning.
#[derive(Clone, Debug, Default)]
pub struct ParsedFile {
    pub dags: Vec<Dag>,
    pub errors: Vec<DagError>,
    pub warnings: Vec<DagError>,
}

/// Parses one file's text. `rel_path` is its path relative to the DAGs folder (used in
/// messages and to resolve `$f`); `loader` reads a `$f` file given its path relative to the
/// DAGs folder. No other I/O happens here.
pub fn parse_source(
    rel_path: &str,
    source: &str,
    loader: &dyn Fn(&str) -> std::io::Result<String>,
) -> ParsedFile {
    let label = |doc: usize| {
        if doc == 0 {
            rel_path.to_string()
        } else {
            format!("{rel_path}[doc {doc}]")
        }
    };
    let documents = yaml::parse(source);
    let mut out = ParsedFile::default();
    for e in documents.errors {
        out.errors.push(DagError {
            file: label(e.doc),
            line: Some(e.line),
            column: Some(e.column),
            dag_id: None,
            task_id: None,
            field: None,
            message: e.message,
        });
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (doc, root) in &documents.docs {
        let validated = validate_document(
            root,
            &Source {
                label: label(*doc),
                rel_path,
                loader,
            },
        );
        out.errors.extend(validated.errors);
        out.warnings.extend(validated.warnings);
        let Some(dag) = validated.dag else { continue };
        if let Some((_, first)) = seen.iter().find(|(id, _)| id == dag.dag_id.as_str()) {
            let at = root
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("dag_id")))
                .map(|(_, v)| v);
            out.errors.push(DagError {
                file: label(*doc),
                line: at.map(|n| n.line),
                column: at.map(|n| n.column),
                dag_id: Some(dag.dag_id.to_string()),
                task_id: None,
                field: Some("dag_id".into()),
                message: format!(
                    "dag_id `{}` is already defined by document {first} of this file; each document needs its own dag_id",
                    dag.dag_id
                ),
            });
            continue;
        }
        seen.push((dag.dag_id.to_string(), *doc));
        out.dags.push(dag);
    }
    if !out.errors.is_empty() {
        out.dags.clear();
    }
    out
}

/// sha256 (hex) of the DAG's JSON: the identity of a `dag_version`.
pub fn spec_hash(dag: &Dag) -> String {
    // Serializing plain data with string keys cannot fail; an empty input would still hash.
    let bytes = serde_json::to_vec(dag).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Watches `folder` recursively and sends `()` on every create, modify, delete or rename
/// below it (hidden files excepted). Sends never block: when the channel is full a reload is
/// already pending, so the caller should use a small channel, coalesce what arrives (wait a
/// few hundred milliseconds after the first signal, drain, then reload once) and reload the
/// whole folder. Keep the returned watcher alive for as long as events are wanted.
pub fn watch(
    folder: &Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use anyhow::Context;
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else {
            // A watcher error may mean missed events: ask for a reload to be safe.
            let _ = tx.try_send(());
            return;
        };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
        );
        let hidden = !event.paths.is_empty()
            && event.paths.iter().all(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            });
        if relevant && !hidden {
            let _ = tx.try_send(());
        }
    })
    .context("cannot start a file watcher")?;
    watcher
        .watch(folder, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch the DAGs folder {}", folder.display()))?;
    Ok(watcher)
}
