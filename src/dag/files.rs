//! Reading files from the DAGs folder without trusting them. The DAG processor runs inside the
//! scheduler, so whoever can drop a file into the folder must not be able to hang it, exhaust
//! its memory or make it read elsewhere on the machine:
//!
//! - only regular files are read: a FIFO would block `read` forever, a device could stream
//!   without end. Files are opened with `O_NONBLOCK` (so opening a FIFO does not wait for a
//!   writer) and the *opened* file is checked, so swapping a file for a FIFO after a directory
//!   listing changes nothing;
//! - at most `max_bytes` (`core.dag_file_max_bytes`) are read; a bigger file is an error
//!   before anything is read;
//! - the path is resolved (symlinks included) and must stay inside the folder. Links within
//!   the folder are fine; a link to `/etc/passwd`, or `$f: ../../x` through a symlinked
//!   folder, is refused.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a file in the DAGs folder was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("it is {0}, not a regular file; only regular files are read")]
    NotRegular(&'static str),
    #[error("it is {size} bytes; DAG files may have at most {max} bytes (setting `core.dag_file_max_bytes`)")]
    TooLarge { size: u64, max: u64 },
    #[error("it resolves to {}, outside the DAGs folder; only files inside the folder are read (symlinks included)", .0.display())]
    Outside(PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<ReadError> for std::io::Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

/// What a file looked like when it was read: if it still looks the same, it is the same
/// (modification time and size; the content hash settles the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub modified: Option<SystemTime>,
    pub size: u64,
    /// Device and inode: a file replaced by another of the same size and time is still new.
    pub inode: (u64, u64),
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            modified: meta.modified().ok(),
            size: meta.len(),
            inode: (meta.dev(), meta.ino()),
        }
    }

    /// The stamp of `path` now (following symlinks), without opening it.
    pub fn now(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
    }
}

/// What kind of non-regular file this is, for messages.
pub fn kind_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// The DAGs folder, resolved once, with the size limit for files read from it.
#[derive(Clone, Debug)]
pub struct Confined {
    root: PathBuf,
    max_bytes: u64,
}

impl Confined {
    /// `folder` resolved to its real path (it may itself be a symlink; that is the user's choice).
    pub fn new(folder: &Path, max_bytes: u64) -> std::io::Result<Confined> {
        Ok(Confined {
            root: std::fs::canonicalize(folder)?,
            max_bytes,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` resolved; an error unless it is inside the folder.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, ReadError> {
        let real = std::fs::canonicalize(path)?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(ReadError::Outside(real))
        }
    }

    /// Reads a regular file inside the folder, within the size limit, as UTF-8 text; with the
    /// stamp of what was read.
    pub fn read(&self, path: &Path) -> Result<(String, Stamp), ReadError> {
        let real = self.resolve(path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            // A FIFO opens at once instead of waiting for a writer; reads of regular files are
            // not affected. The last component was resolved above, so it must not be a link now.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&real)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(ReadError::NotRegular(kind_name(meta.file_type())));
        }
        let max = self.max_bytes;
        if meta.len() > max {
            return Err(ReadError::TooLarge {
                size: meta.len(),
                max,
            });
        }
        // The file may grow between the check and the read: never take more than the limit.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(ReadError::TooLarge {
                size: bytes.len() as u64,
                max,
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })?;
        Ok((text, Stamp::of(&meta)))
    }
}

impl fmt::Display for Confined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn reads_regular_files_inside_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let c = Confined::new(dir.path(), 10).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "dag_id: a").unwrap();
        let (text, stamp) = c.read(&dir.path().join("a.yaml")).unwrap();
        assert_eq!((text.as_str(), stamp.size), ("dag_id: a", 9));
        std::fs::write(dir.path().join("big.yaml"), "x".repeat(11)).unwrap();
        let e = c.read(&dir.path().join("big.yaml")).unwrap_err();
        assert!(
            matches!(e, ReadError::TooLarge { size: 11, max: 10 }),
            "{e}"
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let c = Confined::new(dir.path(), 1 << 20).unwrap();
        let fifo = dir.path().join("x.yaml");
        mkfifo(&fifo);
        let e = c.read(&fifo).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let e = c.read(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, ReadError::Outside(_)), "{e}");
    }

    #[test]
    fn symlinks_out_of_the_folder_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "fine").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("out.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("in.txt"), dir.path().join("ok.yaml")).unwrap();
        let c = Confined::new(dir.path(), 1 << 20).unwrap();
        let e = c.read(&dir.path().join("out.yaml")).unwrap_err();
        assert!(e.to_string().contains("outside the DAGs folder"), "{e}");
        assert_eq!(c.read(&dir.path().join("ok.yaml")).unwrap().0, "fine");
        assert!(c.read(&dir.path().join("../x")).is_err());
    }
}
