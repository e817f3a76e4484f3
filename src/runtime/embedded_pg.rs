//! The database `standalone` uses when none is configured: `DATABASE_URL` if set; else a
//! local Postgres on 127.0.0.1:5432 if one answers (database `updraft`, created if
//! missing); else a private cluster from the Postgres binaries on this machine, in a data
//! directory updraft owns, stopped on exit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use tracing::info;

/// Where the database came from, for the start-up banner.
pub enum Choice {
    Configured(String),
    LocalServer(String),
    Private(PrivateCluster),
}

impl Choice {
    pub fn url(&self) -> &str {
        match self {
            Choice::Configured(u) | Choice::LocalServer(u) => u,
            Choice::Private(c) => &c.url,
        }
    }
}

pub async fn choose(database_url: Option<String>, home: &Path) -> anyhow::Result<Choice> {
    if let Some(url) = database_url {
        return Ok(Choice::Configured(url));
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "postgres".into());
    for admin in [
        "postgres://postgres@127.0.0.1:5432/postgres".to_string(),
        format!("postgres://{user}@127.0.0.1:5432/postgres"),
    ] {
        if let Ok(url) =
            crate::db::admin::ensure_database(&admin, "updraft", Duration::from_secs(2)).await
        {
            return Ok(Choice::LocalServer(url));
        }
    }
    let cluster = PrivateCluster::start(&home.join("pgdata")).await?;
    Ok(Choice::Private(cluster))
}

/// A Postgres cluster updraft started for itself; stopped when dropped.
pub struct PrivateCluster {
    pub url: String,
    pub data_dir: PathBuf,
    pub port: u16,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
}

impl PrivateCluster {
    pub async fn start(data_dir: &Path) -> anyhow::Result<PrivateCluster> {
        let bin_dir = find_bin_dir().context(
            "no DATABASE_URL, no Postgres answering on 127.0.0.1:5432, and no Postgres binaries (initdb, pg_ctl) found. \
             Install them (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL",
        )?;
        // Postgres refuses to run as root: use the unprivileged `postgres` system user.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(system_user("postgres").context(
                "updraft runs as root and Postgres refuses to: create a `postgres` system user \
                 (`useradd --system postgres`) or run updraft as a normal user, or set DATABASE_URL",
            )?)
        } else {
            None
        };
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        if let Some((uid, gid)) = run_as {
            chown_recursive(data_dir, uid, gid)?;
        }
        let mut cluster = PrivateCluster {
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            port: TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
            bin_dir,
            run_as,
        };
        if !data_dir.join("PG_VERSION").exists() {
            info!(data_dir = %data_dir.display(), "creating a private Postgres cluster (first start only)");
            cluster.run(
                "initdb",
                &[
                    "-D",
                    &path_str(data_dir)?,
                    "-U",
                    "updraft",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
            )?;
        }
        cluster.start_server()?;
        let port = cluster.port;
        let admin = format!("postgres://updraft@127.0.0.1:{port}/postgres");
        cluster.url =
            crate::db::admin::ensure_database(&admin, "updraft", Duration::from_secs(10)).await?;
        info!(port, data_dir = %data_dir.display(), "private Postgres cluster started");
        Ok(cluster)
    }

    /// Starts the server process on the cluster's port (again, after [`Self::stop_server`]).
    pub fn start_server(&self) -> anyhow::Result<()> {
        let dir = path_str(&self.data_dir)?;
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {dir}", self.port);
        let log = path_str(&self.data_dir.join("postgres.log"))?;
        self.run(
            "pg_ctl",
            &[
                "-D", &dir, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        )
    }

    /// Stops the server process (fast shutdown: connections are cut), keeping the data; for
    /// outage tests and the chaos command.
    pub fn stop_server(&self) -> anyhow::Result<()> {
        let dir = path_str(&self.data_dir)?;
        self.run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"])
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bin_dir.join(tool));
        cmd.args(args);
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
            cmd.current_dir("/");
        }
        let out = cmd
            .output()
            .with_context(|| format!("could not run {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Ok(dir) = path_str(&self.data_dir) {
            let _ = self.run("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]);
        }
    }
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_string)
        .context("the data directory path is not UTF-8")
}

/// The newest `/usr/lib/postgresql/<v>/bin`, or the directory of `initdb` on PATH.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").exists()))
}

fn system_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the ids at once.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn chown_recursive(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            chown_recursive(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    // The parent must be traversable by that user.
    Ok(())
}
