use std::time::Duration;

use super::*;
use crate::core::LogStream;
use crate::operators::{ErrorKind, OperatorEnv, Reason, TaskContext};

fn config(cmd: &str) -> Config {
    serde_json::from_value(serde_json::json!({ "bash_command": cmd })).unwrap()
}

#[tokio::test]
async fn pushes_last_stdout_line_and_logs_both_streams() {
    let (ctx, mut log) = TaskContext::for_test(OperatorEnv::default());
    let out = run(config("echo one; echo oops >&2; echo two"), &ctx)
        .await
        .unwrap();
    assert_eq!(
        out.xcom,
        vec![("return_value".to_string(), serde_json::json!("two"))]
    );
    drop(ctx);
    let mut lines = Vec::new();
    while let Some(l) = log.recv().await {
        lines.push((l.stream, l.text));
    }
    assert!(lines.contains(&(LogStream::Stdout, "one".into())));
    assert!(lines.contains(&(LogStream::Stderr, "oops".into())));
}

#[tokio::test]
async fn exit_99_skips_and_other_codes_fail() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    assert!(run(config("exit 99"), &ctx).await.unwrap().skipped);
    let err = run(config("exit 3"), &ctx).await.unwrap_err().to_string();
    assert!(err.contains("exit code 3"), "{err}");
}

#[tokio::test]
async fn env_replaces_unless_appended_and_context_vars_are_set() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    std::env::set_var("UPDRAFT_TEST_OUTER", "outer");
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "bash_command": "echo ${FOO}-${UPDRAFT_TEST_OUTER:-none}-$AIRFLOW_CTX_DAG_ID",
        "env": {"FOO": "bar"}
    }))
    .unwrap();
    let out = run(cfg.clone(), &ctx).await.unwrap();
    assert_eq!(out.xcom[0].1, serde_json::json!("bar-none-test_dag"));
    let appended = Config {
        append_env: true,
        ..cfg
    };
    let out = run(appended, &ctx).await.unwrap();
    assert_eq!(out.xcom[0].1, serde_json::json!("bar-outer-test_dag"));
}

/// The command cannot see the metadata database's URL, and echoing its password prints `***`
/// in the log and in the XCom.
#[tokio::test]
async fn the_database_credentials_are_kept_from_the_command_and_masked() {
    let settings = crate::settings::Settings::load(crate::settings::Sources {
        env: vec![
            ("DATABASE_URL".into(), "postgres://u:hunter2@db/x".into()),
            ("TEAM".into(), "data".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let (ctx, mut log) = TaskContext::for_test(settings.operator_env());
    let out = run(
        config("echo \"url=${DATABASE_URL:-unset} team=$TEAM\"; echo pw=hunter2"),
        &ctx,
    )
    .await
    .unwrap();
    assert_eq!(out.xcom[0].1, serde_json::json!("pw=***"));
    drop(ctx);
    let mut lines = Vec::new();
    while let Some(l) = log.recv().await {
        lines.push(l.text);
    }
    assert!(
        lines.contains(&"url=unset team=data".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"pw=***".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("hunter2")), "{lines:?}");
}

#[tokio::test]
async fn cancellation_kills_the_process_group() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let err = run(config("sleep 30 & sleep 30; wait"), &ctx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cancelled"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn skip_code_accepts_one_or_many() {
    let c: Config =
        serde_json::from_value(serde_json::json!({"bash_command": "x", "skip_on_exit_code": 3}))
            .unwrap();
    assert_eq!(c.skip_on_exit_code, vec![3]);
    let c: Config = serde_json::from_value(
        serde_json::json!({"bash_command": "x", "skip_on_exit_code": [3, 4]}),
    )
    .unwrap();
    assert_eq!(c.skip_on_exit_code, vec![3, 4]);
    assert!(
        serde_json::from_value::<Config>(serde_json::json!({"bash_command": "x", "bogus": 1}))
            .is_err()
    );
}

#[tokio::test]
async fn a_failed_command_retries_but_one_that_cannot_start_does_not() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let err = run(config("exit 3"), &ctx).await.unwrap_err();
    assert_eq!(err.reason(), Reason::TaskFailed);
    assert!(err.is_transient());
    let mut missing_dir = config("true");
    missing_dir.cwd = Some("/nonexistent/updraft-test-dir".into());
    let err = run(missing_dir, &ctx).await.unwrap_err();
    assert_eq!(err.reason(), Reason::CannotStart);
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.to_string().contains("/nonexistent/updraft-test-dir"),
        "{err}"
    );
    // A `with:` that does not fit the operator fails before anything runs, permanently.
    let err = crate::operators::run(
        crate::operators::OperatorName::Bash,
        serde_json::json!({"bash_command": "true", "bogus": 1}),
        &ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), Reason::BadConfig);
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[tokio::test]
async fn output_encoding_decodes_and_never_stops_the_log() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let cfg = |enc: &str| -> Config {
        serde_json::from_value(serde_json::json!({
            "bash_command": "printf 'caf\\xe9\\nlast\\n'",
            "output_encoding": enc,
        }))
        .unwrap()
    };
    let mut lines = Vec::new();
    for enc in ["latin-1", "utf-8"] {
        let (ctx, mut log) = TaskContext::for_test(OperatorEnv::default());
        let out = run(cfg(enc), &ctx).await.unwrap();
        assert_eq!(out.xcom[0].1, serde_json::json!("last"), "{enc}");
        drop(ctx);
        while let Some(l) = log.recv().await {
            if l.stream == LogStream::Stdout {
                lines.push(l.text);
            }
        }
    }
    assert_eq!(lines, ["café", "last", "caf\\xe9", "last"]);
    let err = serde_json::from_value::<Config>(serde_json::json!({
        "bash_command": "true", "output_encoding": "klingon"
    }))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unsupported output_encoding `klingon`"),
        "{err}"
    );
    drop(ctx);
}
