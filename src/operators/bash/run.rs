use std::process::Stdio;

use super::config::OutputEncoding;
use super::{process, Config};
use crate::core::LogStream;
use crate::operators::{OperatorError, Outcome, Reason, TaskContext, TaskLog};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// A command that cannot be started is permanent (the same `cwd` or environment fails again);
/// a command that ran and failed is an ordinary task failure, retried per policy as in Airflow.
pub async fn run(config: Config, ctx: &TaskContext) -> Result<Outcome, OperatorError> {
    let scratch = process::Scratch::new()
        .map_err(|e| OperatorError::internal("could not create a working directory", e))?;
    let mut cmd = process::command(&config.bash_command);
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
    process::mark(&mut cmd)
        .map_err(|e| OperatorError::internal("could not create a working directory", e))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    ctx.log
        .info(format!("Running command: {}", config.bash_command));
    let mut child = cmd.spawn().map_err(|e| {
        let hint = match &config.cwd {
            Some(dir) => format!("check that `cwd` ({dir}) exists and that bash is installed"),
            None => "check that bash is installed and on the worker's PATH".to_string(),
        };
        OperatorError::new(Reason::CannotStart, format!("could not start bash: {e}")).hint(hint)
    })?;
    // Kills the whole process group if this future is dropped before the command ends
    // (kill_on_drop alone reaches only bash, not what it started).
    let mut group = process::Group::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let enc = config.output_encoding;
    let out_task = tokio::spawn(pump(stdout, ctx.log.clone(), LogStream::Stdout, enc));
    let err_task = tokio::spawn(pump(stderr, ctx.log.clone(), LogStream::Stderr, enc));

    let status = tokio::select! {
        status = child.wait() => status
            .map_err(|e| OperatorError::internal("waiting for the command failed", e))?,
        _ = ctx.cancel.cancelled() => {
            group.kill();
            let _ = child.wait().await;
            group.ended(); // killed and reaped: never signal that group id again
            return Err(OperatorError::cancelled("the command"));
        }
    };
    group.ended(); // the command ended by itself
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
        Some(code) => Err(OperatorError::new(
            Reason::TaskFailed,
            format!("Bash command failed. The command returned a non-zero exit code {code}."),
        )),
        None => Err(OperatorError::new(
            Reason::TaskFailed,
            "Bash command was killed by a signal",
        )),
    }
}

/// Copies a stream into the log line by line, decoded with `enc` (bytes that do not decode
/// never stop the copy); returns the last non-empty line, masked like the log line it is.
async fn pump(
    stream: impl AsyncRead + Unpin,
    log: TaskLog,
    which: LogStream,
    enc: OutputEncoding,
) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    let mut last = None;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = enc.decode(bytes);
        if !line.trim().is_empty() {
            // The XCom is shown like the log line it also is: secrets masked.
            last = Some(log.mask(&line).into_owned());
        }
        log.line(which, line);
    }
    last
}
