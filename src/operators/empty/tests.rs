use super::*;
use crate::dag::{Arg, OperatorName};
use crate::operators::{check_with, OperatorEnv, TaskContext};

#[tokio::test]
async fn succeeds_without_xcom() {
    let (ctx, _log) = TaskContext::for_test(OperatorEnv::default());
    let out = run(Config::default(), &ctx).await.unwrap();
    assert!(out.xcom.is_empty());
    assert!(!out.skipped);
}

#[test]
fn rejects_any_argument() {
    let args = Arg::Map(vec![("foo".into(), Arg::Value(1.into()))]);
    let errors = check_with(OperatorName::Empty, &args);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("takes no arguments"), "{:?}", errors);
}
