//! The DAGs folder as a whole: walk it, read each DAG file through [`Confined`] (regular files
//! inside the folder, within the size limit), and parse only what changed.
//!
//! The processor reloads the folder on every change and every 30 s; re-reading and re-parsing
//! every file each time would make one 20 MB file cost the scheduler a core. [`DagFolder`]
//! keeps, per file, its stamp (modification time, size, inode), a hash of its content, and
//! what parsing it gave, and for each `$f` file it read, that file's stamp:
//! - stamp and `$f` stamps unchanged → the file is not even opened;
//! - stamp changed but the content hash is the same (a `touch`) → read, not parsed;
//! - a stamp taken within [`RACY`] of its modification is not trusted (a write in the same
//!   clock tick keeps time and size), so such a file is read and hashed again next time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::files::{kind_name, Confined, ReadError, Stamp};
use super::load::{parse_source, DagBag, LoadedDag, ParsedFile};
use super::read::DagError;

/// Symlinked folders inside the DAGs folder are followed; this stops pathological nesting
/// (loops are caught by remembering the folders already walked).
const MAX_FOLDER_DEPTH: usize = 32;
/// A file modified this recently when its stamp was taken may change again without the stamp
/// changing.
const RACY: Duration = Duration::from_secs(2);

/// One file's last read.
struct Cached {
    stamp: Stamp,
    /// False when the stamp was taken within [`RACY`] of a modification (of the file or a `$f`
    /// file it read).
    trusted: bool,
    hash: [u8; 32],
    source: String,
    parsed: ParsedFile,
    /// The `$f` files parsing read, with their stamps (`None`: could not be read).
    deps: Vec<(PathBuf, Option<Stamp>)>,
}

impl Cached {
    fn deps_unchanged(&self) -> bool {
        self.deps.iter().all(|(p, s)| Stamp::now(p) == *s)
    }
}

/// The DAGs folder and what the last load found in it. Keep one across loads (the processor
/// does); [`DagBag::load`] is a fresh one each time.
pub struct DagFolder {
    folder: PathBuf,
    max_file_bytes: u64,
    cache: HashMap<String, Cached>,
    /// Files parsed by the last [`DagFolder::load`]; the others came from the cache.
    pub parsed_last: usize,
}

impl DagFolder {
    pub fn new(folder: &Path, max_file_bytes: u64) -> DagFolder {
        DagFolder {
            folder: folder.to_path_buf(),
            max_file_bytes,
            cache: HashMap::new(),
            parsed_last: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.folder
    }

    /// Loads every DAG file. Never fails as a whole: unreadable and broken files become
    /// entries in `errors`, skipped ones in `warnings`. A dag_id defined by two files is an
    /// error on the later file (by path), which then contributes nothing.
    pub fn load(&mut self) -> DagBag {
        self.parsed_last = 0;
        let mut bag = DagBag::default();
        let confined = match Confined::new(&self.folder, self.max_file_bytes) {
            Ok(c) => c,
            Err(e) => {
                bag.errors
                    .entry(String::new())
                    .or_default()
                    .push(file_error("", format!("cannot read the DAGs folder: {e}")));
                self.cache.clear();
                return bag;
            }
        };
        let mut walk = Walk {
            confined: &confined,
            top: &self.folder,
            visited: HashSet::from([confined.root().to_path_buf()]),
            files: Vec::new(),
            bag: &mut bag,
        };
        if let Err(e) = walk.dir(&self.folder, 0) {
            bag.errors
                .entry(String::new())
                .or_default()
                .push(file_error("", format!("cannot read the DAGs folder: {e}")));
            self.cache.clear();
            return bag;
        }
        let mut files = std::mem::take(&mut walk.files);
        files.sort();
        let mut present = HashSet::new();
        for (rel, path) in files {
            present.insert(rel.clone());
            let cached = match self.refresh(&confined, &rel, &path) {
                Ok(c) => c,
                Err(e) => {
                    bag.errors
                        .entry(rel.clone())
                        .or_default()
                        .push(file_error(&rel, format!("cannot read the file: {e}")));
                    continue;
                }
            };
            let mut errors = cached.parsed.errors.clone();
            for dag in &cached.parsed.dags {
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
            if !cached.parsed.warnings.is_empty() {
                bag.warnings
                    .entry(rel.clone())
                    .or_default()
                    .extend(cached.parsed.warnings.iter().cloned());
            }
            if !errors.is_empty() {
                bag.errors.insert(rel, errors);
                continue;
            }
            for dag in &cached.parsed.dags {
                bag.dags.insert(
                    dag.dag_id.clone(),
                    LoadedDag::new(dag.clone(), rel.clone(), cached.source.clone()),
                );
            }
        }
        self.cache.retain(|rel, _| present.contains(rel));
        bag
    }

    /// The file's parse, from the cache when nothing it depends on changed.
    fn refresh(
        &mut self,
        confined: &Confined,
        rel: &str,
        path: &Path,
    ) -> Result<&Cached, ReadError> {
        let unchanged = self
            .cache
            .get(rel)
            .is_some_and(|c| c.trusted && Stamp::now(path) == Some(c.stamp) && c.deps_unchanged());
        if unchanged {
            return Ok(&self.cache[rel]);
        }
        let (source, stamp) = match confined.read(path) {
            Ok(read) => read,
            Err(e) => {
                self.cache.remove(rel);
                return Err(e);
            }
        };
        let hash: [u8; 32] = Sha256::digest(source.as_bytes()).into();
        let now = SystemTime::now();
        // Same text: the parse is the same, unless a `$f` file changed (racily: unseen).
        let same_content = self.cache.get(rel).is_some_and(|c| {
            c.hash == hash && c.deps_unchanged() && (c.deps.is_empty() || c.trusted)
        });
        if let Some(c) = self.cache.get_mut(rel).filter(|_| same_content) {
            c.stamp = stamp;
            c.trusted = settled(&stamp, now);
            return Ok(&self.cache[rel]);
        }
        let deps = std::cell::RefCell::new(Vec::new());
        let parsed = {
            let folder = &self.folder;
            let loader = |p: &str| -> std::io::Result<String> {
                let full = folder.join(p);
                let read = confined.read(&full);
                deps.borrow_mut()
                    .push((full, read.as_ref().ok().map(|(_, s)| *s)));
                Ok(read?.0)
            };
            parse_source(rel, &source, &loader)
        };
        let deps = deps.into_inner();
        self.parsed_last += 1;
        let trusted = settled(&stamp, now)
            && deps
                .iter()
                .all(|(_, s)| s.as_ref().is_none_or(|s| settled(s, now)));
        let entry = Cached {
            stamp,
            trusted,
            hash,
            source,
            parsed,
            deps,
        };
        self.cache.insert(rel.to_string(), entry);
        Ok(&self.cache[rel])
    }
}

/// True when the file was last modified long enough before `now` that a later change must
/// show in its stamp.
fn settled(stamp: &Stamp, now: SystemTime) -> bool {
    stamp
        .modified
        .and_then(|m| now.duration_since(m).ok())
        .is_some_and(|age| age >= RACY)
}

impl DagBag {
    /// Loads every DAG file under `folder` once, with the default size limit. See
    /// [`DagFolder::load`]; keep a [`DagFolder`] to load repeatedly.
    pub fn load(folder: &Path) -> DagBag {
        let max = crate::settings::Core::default().dag_file_max_bytes;
        DagFolder::new(folder, max).load()
    }
}

pub(crate) fn file_error(rel: &str, message: String) -> DagError {
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

/// Collects the DAG files; files and folders that are refused become errors and warnings.
struct Walk<'a> {
    confined: &'a Confined,
    /// The folder as configured: relative paths are taken from it, so a file under a
    /// symlinked subfolder is shown under the link's name.
    top: &'a Path,
    /// Real paths of the folders walked so far (a symlink loop ends here).
    visited: HashSet<PathBuf>,
    files: Vec<(String, PathBuf)>,
    bag: &'a mut DagBag,
}

impl Walk<'_> {
    fn rel(&self, path: &Path) -> String {
        let rel = path.strip_prefix(self.top).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }

    fn warn(&mut self, rel: &str, message: String) {
        self.bag
            .warnings
            .entry(rel.to_string())
            .or_default()
            .push(file_error(rel, message));
    }

    fn error(&mut self, rel: &str, message: String) {
        self.bag
            .errors
            .entry(rel.to_string())
            .or_default()
            .push(file_error(rel, message));
    }

    fn dir(&mut self, dir: &Path, depth: usize) -> std::io::Result<()> {
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
            let is_dag = name.ends_with(".yaml") || name.ends_with(".yml");
            let path = entry.path();
            let rel = self.rel(&path);
            let Ok(real) = self.confined.resolve(&path) else {
                // Outside the folder, or a dangling link. Only a DAG file is worth an error;
                // a folder link is shown as a warning.
                match self.confined.resolve(&path) {
                    Err(ReadError::Outside(target)) if is_dag => self.error(
                        &rel,
                        format!("not read: it is a symlink to {}, outside the DAGs folder; only files inside the folder are read", target.display()),
                    ),
                    Err(ReadError::Outside(target)) => self.warn(
                        &rel,
                        format!("skipped: a symlink to {}, outside the DAGs folder", target.display()),
                    ),
                    Err(e) if is_dag => self.error(&rel, format!("cannot read the file: {e}")),
                    _ => {}
                }
                continue;
            };
            let Ok(meta) = std::fs::metadata(&real) else {
                continue;
            };
            if meta.is_dir() {
                if self.visited.insert(real) {
                    // An unreadable subfolder should not hide the rest of the folder.
                    let _ = self.dir(&path, depth + 1);
                }
            } else if is_dag {
                if meta.is_file() {
                    self.files.push((rel, path));
                } else {
                    let kind = kind_name(meta.file_type());
                    self.warn(
                        &rel,
                        format!("skipped: it is {kind}, not a regular file; only regular files are read"),
                    );
                }
            }
        }
        Ok(())
    }
}
