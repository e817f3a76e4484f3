//! A fleet of real updraft processes (schedulers and workers) on one database, which the
//! chaos scenarios kill with SIGKILL and restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// What a fleet process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Scheduler,
    Worker,
}

impl Role {
    fn arg(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Worker => "worker",
        }
    }
}

/// How every process of a fleet is started.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// The updraft binary.
    pub binary: PathBuf,
    pub database_url: String,
    pub dags_folder: PathBuf,
    /// Where each process's stderr goes (one file per process start).
    pub logs: PathBuf,
    /// Extra environment, e.g. `UPDRAFT_LEASE_TTL`.
    pub env: Vec<(String, String)>,
}

struct Member {
    role: Role,
    child: Child,
}

/// The running processes.
pub struct Fleet {
    config: FleetConfig,
    members: Vec<Member>,
    started: usize,
    pub kills: usize,
    /// Every process id this fleet started.
    pub pids: Vec<u32>,
}

impl Fleet {
    pub fn start(config: FleetConfig, schedulers: usize, workers: usize) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(&config.logs)?;
        let mut fleet = Fleet {
            config,
            members: Vec::new(),
            started: 0,
            kills: 0,
            pids: Vec::new(),
        };
        for _ in 0..schedulers {
            let child = fleet.spawn(Role::Scheduler)?;
            fleet.members.push(Member {
                role: Role::Scheduler,
                child,
            });
        }
        for _ in 0..workers {
            let child = fleet.spawn(Role::Worker)?;
            fleet.members.push(Member {
                role: Role::Worker,
                child,
            });
        }
        Ok(fleet)
    }

    fn spawn(&mut self, role: Role) -> anyhow::Result<Child> {
        self.started += 1;
        let log = std::fs::File::create(self.config.logs.join(format!(
            "{}-{:04}.log",
            role.arg(),
            self.started
        )))?;
        let child = Command::new(&self.config.binary)
            .arg(role.arg())
            .env("DATABASE_URL", &self.config.database_url)
            .env("UPDRAFT_DAGS_FOLDER", &self.config.dags_folder)
            .env("UPDRAFT_LOG", "warn")
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.pids.push(child.id());
        Ok(child)
    }

    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    /// SIGKILLs member `index` and starts a new process in its role.
    pub fn kill_and_restart(&mut self, index: usize) -> anyhow::Result<Role> {
        let role = self.members[index].role;
        kill(&mut self.members[index].child, libc::SIGKILL);
        self.kills += 1;
        let child = self.spawn(role)?;
        self.members[index] = Member { role, child };
        Ok(role)
    }

    /// SIGKILLs the member with process id `pid`, without a replacement; `false` if no
    /// member has that id.
    pub fn kill_pid(&mut self, pid: u32) -> bool {
        let Some(i) = self.members.iter().position(|m| m.child.id() == pid) else {
            return false;
        };
        let mut m = self.members.remove(i);
        kill(&mut m.child, libc::SIGKILL);
        self.kills += 1;
        true
    }

    /// Stops every process gracefully (SIGTERM, then SIGKILL after `grace`); returns the ids
    /// of every process the fleet ever started.
    pub fn stop(mut self, grace: std::time::Duration) -> Vec<u32> {
        for m in &mut self.members {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(m.child.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + grace;
        for m in &mut self.members {
            loop {
                match m.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() > deadline => {
                        kill(&mut m.child, libc::SIGKILL);
                        break;
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        }
        self.members.clear();
        std::mem::take(&mut self.pids)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for m in &mut self.members {
            kill(&mut m.child, libc::SIGKILL);
        }
    }
}

fn kill(child: &mut Child, signal: i32) {
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let _ = child.wait();
}
