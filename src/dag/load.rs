//! Loading the DAGs folder: every `*.yaml` / `*.yml` file (hidden files and folders skipped),
//! each parsed on its own so one broken file never takes other DAGs down. Like a failed
//! Airflow import, a file with any error contributes no DAG at all: half a file's DAGs
//! appearing would be more confusing than none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
#[derive(Debug, Default)]
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

impl DagBag {
    /// Loads every DAG file under `folder`. Never fails as a whole: unreadable and broken files
    /// become entries in `errors`. A dag_id defined by two files is an error on the later file
    /// (by path), which then contributes nothing.
    pub fn load(folder: &Path) -> DagBag {
        let mut bag = DagBag::default();
        let mut files = Vec::new();
        if let Err(e) = collect_files(folder, folder, 0, &mut files) {
            bag.errors
                .entry(String::new())
                .or_default()
                .push(file_error("", format!("cannot read the DAGs folder: {e}")));
            return bag;
        }
        files.sort();
        let loader = |p: &str| std::fs::read_to_string(folder.join(p));
        for (rel, path) in files {
            let source = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    bag.errors
                        .entry(rel.clone())
                        .or_default()
                        .push(file_error(&rel, format!("cannot read the file: {e}")));
                    continue;
                }
            };
            let parsed = parse_source(&rel, &source, &loader);
            let mut errors = parsed.errors;
            for dag in &parsed.dags {
                if let Some(other) = bag.dags.get(&dag.dag_id) {
                    let mut e = file_error(
                        &rel,
                        format!(
                            "dag_id `{}` is already defined in `{}`; dag ids must be unique in the DAGs folder",
                            dag.dag_id, other.fileloc
                        ),
                    );
                    e.dag_id = Some(dag.dag_id.to_string());
                    e.field = Some("dag_id".into());
                    errors.push(e);
                }
            }
            if !parsed.warnings.is_empty() {
                bag.warnings.insert(rel.clone(), parsed.warnings);
            }
            if !errors.is_empty() {
                bag.errors.insert(rel, errors);
                continue;
            }
            for dag in parsed.dags {
                let id = dag.dag_id.clone();
                bag.dags
                    .insert(id, LoadedDag::new(dag, rel.clone(), source.clone()));
            }
        }
        bag
    }
}

/// sha256 (hex) of the DAG's JSON: the identity of a `dag_version`.
pub fn spec_hash(dag: &Dag) -> String {
    // Serializing plain data with string keys cannot fail; an empty input would still hash.
    let bytes = serde_json::to_vec(dag).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

fn file_error(rel: &str, message: String) -> DagError {
    DagError {
        file: rel.to_string(),
        line: None,
        column: None,
        dag_id: None,
        task_id: None,
        field: None,
        message,
    }
}

/// Symlinked folders are followed, as Airflow does; the depth limit stops symlink loops.
const MAX_FOLDER_DEPTH: usize = 32;

fn collect_files(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    if depth > MAX_FOLDER_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            // An unreadable subfolder should not hide the rest of the folder.
            let _ = collect_files(root, &path, depth + 1, out);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((rel.join("/"), path));
        }
    }
    Ok(())
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
