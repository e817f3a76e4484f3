//! Commands die with their worker. A command runs in a process group of its own, led by a
//! small supervising bash that the kernel signals when the worker dies (`PR_SET_PDEATHSIG`,
//! even for SIGKILL) and that then kills the whole group; cancelling a try kills the group
//! directly. Each worker process keeps its scratch directories and a note of each running
//! group under one run directory (`$TMPDIR/updraft-run-<pid>-<start time>`), so a worker
//! starting on the same machine removes what a dead predecessor left behind and kills any
//! group of its that survived (a command that detached itself, say).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tokio::process::Command;

/// The environment variable that marks a command's processes with their worker's run
/// directory, so a later worker kills only what is provably ours.
const MARK: &str = "UPDRAFT_RUN_DIR";
const PREFIX: &str = "updraft-run-";

/// This process's start time in clock ticks since boot (`/proc/self/stat` field 22): with the
/// pid it names this process even after the pid is reused.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This worker process's run directory, created on first use.
pub fn run_dir() -> std::io::Result<&'static Path> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(d) = DIR.get() {
        return Ok(d);
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!(
        "{PREFIX}{pid}-{}",
        start_time(pid).unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(DIR.get_or_init(|| dir))
}

/// A private working directory for one try, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> std::io::Result<Scratch> {
        let path = run_dir()?.join(format!("task-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bash -c <command>` under a supervising bash that leads its own process group and, when
/// the worker dies (it gets SIGTERM from the kernel then), kills the group. The command's
/// exit code comes through unchanged.
///
/// The death signal is set by util-linux's `setpriv --pdeathsig` when it is installed, so
/// that the command is started with `posix_spawn` (a vfork: nothing of the worker's memory
/// is copied); otherwise by `prctl` between fork and exec, which copies the worker's page
/// tables at every start. Either way the supervisor checks that its parent is still the
/// worker, since a worker that died before the signal was set would never send it.
pub fn command(bash_command: &str) -> Command {
    // `wait` returns at once when a trapped signal arrives; the trap kills the group (0 =
    // our own group), the supervisor included.
    const SUPERVISOR: &str = "trap 'trap - TERM; kill -KILL 0' TERM; \
         [ \"$PPID\" = \"$2\" ] || exit 255; bash -c \"$1\" & wait $!; exit $?";
    let parent = std::process::id();
    let mut cmd = match setpriv() {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "TERM", "--", "bash"]);
            cmd
        }
        None => {
            let mut cmd = Command::new("bash");
            // SAFETY: only an async-signal-safe call (prctl) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd
        }
    };
    cmd.arg("-c")
        .arg(SUPERVISOR)
        .arg("bash")
        .arg(bash_command)
        .arg(parent.to_string())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// util-linux's `setpriv`, if this machine has it (looked up once).
fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
                .map(|d| d.join("setpriv"))
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// Marks a command with this worker's run directory (set after the caller's own
/// environment, which may clear everything else).
pub fn mark(cmd: &mut Command) -> std::io::Result<()> {
    cmd.env(MARK, run_dir()?);
    Ok(())
}

/// A running command's process group, noted in the run directory; dropping it kills the
/// group (unless [`Group::ended`] said it is gone) and removes the note.
pub struct Group {
    pgid: Option<u32>,
    note: Option<PathBuf>,
}

impl Group {
    pub fn new(pgid: Option<u32>) -> Group {
        let note = pgid.and_then(|p| {
            let path = run_dir().ok()?.join(format!("pgid-{p}"));
            std::fs::write(&path, b"").ok()?;
            Some(path)
        });
        Group { pgid, note }
    }

    /// Kills every process of the group now.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            kill_group(pgid);
        }
    }

    /// The group's leader has been reaped: never signal that id again.
    pub fn ended(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        if let Some(note) = self.note.take() {
            let _ = std::fs::remove_file(note);
        }
    }
}

fn kill_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created.
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
    }
}

/// Removes this process's run directory when no command of it is running any more (a worker
/// that stops cleanly leaves nothing behind). Keeps it, notes and all, otherwise.
pub fn remove_run_dir() {
    let Ok(dir) = run_dir() else {
        return;
    };
    let running = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("pgid-"));
    if !running {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Run directories on this machine whose worker process is gone (what a starting worker
/// would clean up), among those of the given process ids.
pub fn dead_run_dirs(of: &[u32]) -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let (pid, started) = name.strip_prefix(PREFIX)?.split_once('-')?;
            let (pid, started) = (pid.parse::<u32>().ok()?, started.parse::<u64>().ok()?);
            (of.contains(&pid) && start_time(pid) != Some(started)).then_some(())
        })
        .count()
}

/// What [`reap_orphans`] cleaned up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub run_dirs: usize,
    pub processes: usize,
}

/// Removes the run directories of dead worker processes on this machine, killing first any
/// process still alive in a group they noted (and only those carrying the dead worker's
/// mark). Called when a worker starts.
pub fn reap_orphans() -> Reaped {
    reap_orphans_in(&std::env::temp_dir())
}

fn reap_orphans_in(tmp: &Path) -> Reaped {
    let mut reaped = Reaped::default();
    let me = run_dir().ok().map(Path::to_path_buf);
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return reaped;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((pid, started)) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(p, s)| Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?)))
        else {
            continue;
        };
        if Some(&dir) == me.as_ref() || start_time(pid) == Some(started) {
            continue; // ours, or a live worker's
        }
        for note in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let pgid = note
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("pgid-"))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pgid) = pgid {
                reaped.processes += kill_marked(pgid, &dir);
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            reaped.run_dirs += 1;
        }
    }
    reaped
}

/// Kills the processes of group `pgid` that carry `dir` as their mark; returns how many.
fn kill_marked(pgid: u32, dir: &Path) -> usize {
    let mark = format!("{MARK}={}", dir.display());
    let mut killed = 0;
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let in_group = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 2..];
                rest.split_whitespace().nth(2)?.parse::<u32>().ok()
            })
            == Some(pgid);
        if !in_group {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let marked = environ.split(|b| *b == 0).any(|var| var == mark.as_bytes());
        if marked {
            // SAFETY: signalling a process we verified is one of the dead worker's commands.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry: look at its state.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 2..];
                rest.split_whitespace().next().map(|st| st != "Z")
            })
            .unwrap_or(false)
    }

    /// A dead worker's run directory (pid 1 with a start time it never had) with one live
    /// marked group: a starting worker kills the group and removes the directory, and leaves
    /// an unmarked process of another group alone.
    #[tokio::test]
    async fn a_starting_worker_cleans_up_after_a_dead_one() {
        use std::os::unix::process::CommandExt;
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join(format!("{PREFIX}1-999999999"));
        std::fs::create_dir_all(dead.join("task-x")).unwrap();
        let mut orphan = std::process::Command::new("sleep")
            .arg("300")
            .env(MARK, &dead)
            .process_group(0)
            .spawn()
            .unwrap();
        std::fs::write(dead.join(format!("pgid-{}", orphan.id())), b"").unwrap();
        let mut bystander = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let reaped = reap_orphans_in(tmp.path());
        assert_eq!(
            reaped,
            Reaped {
                run_dirs: 1,
                processes: 1
            }
        );
        assert!(!dead.exists());
        let _ = orphan.wait();
        assert!(!alive(orphan.id()));
        assert!(
            alive(bystander.id()),
            "an unmarked process is not ours to kill"
        );
        let _ = bystander.kill();
        let _ = bystander.wait();
    }

    #[test]
    fn a_live_process_keeps_its_run_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let live = tmp
            .path()
            .join(format!("{PREFIX}{pid}-{}", start_time(pid).unwrap()));
        std::fs::create_dir_all(&live).unwrap();
        assert_eq!(reap_orphans_in(tmp.path()), Reaped::default());
        assert!(live.exists());
    }
}
