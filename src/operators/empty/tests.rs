use super::*;
use crate::operators::{check_with, OperatorEnv, OperatorName, TaskContext, WithArgs};

#[tokio::test]
async fn succeeds_without_xcom() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let out = run(Config::default(), &ctx).await.unwrap();
    assert!(out.xcom.is_empty());
    assert!(!out.skipped);
}

#[test]
fn rejects_any_argument() {
    let literal = serde_json::json!({"foo": 1});
    let args = WithArgs {
        keys: &["foo"],
        literal: Some(&literal),
    };
    let errors = check_with(OperatorName::Empty, args);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("takes no arguments"), "{:?}", errors);
}
