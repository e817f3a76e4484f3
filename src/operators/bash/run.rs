use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::Config;
use crate::core::LogStream;
use crate::operators::{Outcome, TaskContext, TaskLog};

pub async fn run(config: Config, ctx: &TaskContext) -> anyhow::Result<Outcome> {
    let scratch = tempfile_dir()?;
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&config.bash_command);
    // The command starts from the worker's environment without updraft's own credentials
    // (`TaskEnv`); `env:` without `append_env` replaces even that, keeping only PATH (without
    // it even `echo` in a script fails; Airflow keeps PATH too).
    let replace = config.env.is_some() && !config.append_env;
    cmd.env_clear();
    match ctx.env.task_env.vars() {
        Some(vars) => {
            cmd.envs(
                vars.iter()
                    .filter(|(k, _)| !replace || k == "PATH")
                    .map(|(k, v)| (k, v)),
            );
        }
        // Settings built in code (tests): this process's environment, minus updraft's own.
        None => {
            let own: Vec<&str> = crate::settings::own_variables().collect();
            cmd.envs(std::env::vars().filter(|(k, _)| {
                if replace {
                    k == "PATH"
                } else {
                    !own.contains(&k.as_str())
                }
            }));
        }
    }
    if let Some(env) = &config.env {
        cmd.envs(env);
    }
    cmd.env("AIRFLOW_CTX_DAG_ID", &ctx.dag_id)
        .env("AIRFLOW_CTX_TASK_ID", &ctx.task_id)
        .env("AIRFLOW_CTX_DAG_RUN_ID", &ctx.run_id)
        .env("AIRFLOW_CTX_TRY_NUMBER", ctx.try_number.to_string())
        .env("AIRFLOW_CTX_LOGICAL_DATE", ctx.logical_date.to_rfc3339());
    match &config.cwd {
        Some(dir) => cmd.current_dir(dir),
        None => cmd.current_dir(scratch.path()),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group, so cancelling kills the command's children too.
        .process_group(0);

    ctx.log
        .info(format!("Running command: {}", config.bash_command));
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("could not start bash: {e}"))?;
    let pid = child.id();
    // Kills the whole process group if this future is dropped before the command ends
    // (kill_on_drop alone reaches only bash, not what it started).
    let mut guard = GroupGuard(pid);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_task = tokio::spawn(pump(stdout, ctx.log.clone(), LogStream::Stdout));
    let err_task = tokio::spawn(pump(stderr, ctx.log.clone(), LogStream::Stderr));

    let status = tokio::select! {
        status = child.wait() => status?,
        _ = ctx.cancel.cancelled() => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.wait().await;
            guard.0 = None; // killed and reaped: never signal that group id again
            anyhow::bail!("the command was cancelled");
        }
    };
    guard.0 = None; // the command ended by itself
    let last_line = out_task.await.unwrap_or_default();
    let _ = err_task.await;

    match status.code() {
        Some(0) => {
            ctx.log.info("Command exited with return code 0");
            match (config.do_xcom_push, last_line) {
                (true, Some(line)) => Ok(Outcome::returning(serde_json::Value::String(line))),
                _ => Ok(Outcome::default()),
            }
        }
        Some(code) if config.skip_on_exit_code.contains(&code) => {
            ctx.log.info(format!(
                "Command exited with return code {code}: skipping the task"
            ));
            Ok(Outcome::skipped())
        }
        Some(code) => {
            anyhow::bail!("Bash command failed. The command returned a non-zero exit code {code}.")
        }
        None => anyhow::bail!("Bash command was killed by a signal"),
    }
}

/// Copies a stream into the log line by line; returns the last non-empty line.
async fn pump(stream: impl AsyncRead + Unpin, log: TaskLog, which: LogStream) -> Option<String> {
    let mut lines = BufReader::new(stream).lines();
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.trim().is_empty() {
            // The XCom is shown like the log line it also is: secrets masked.
            last = Some(log.mask(&line).into_owned());
        }
        log.line(which, line);
    }
    last
}

struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_group(pid);
        }
    }
}

fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the child.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

/// A private working directory removed when the try ends.
fn tempfile_dir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!("updraft-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir(path))
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
