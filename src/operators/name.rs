//! The names of the built-in operators: which `uses:` strings select which operator.

use serde::{Deserialize, Serialize};

/// The operators updraft implements. A closed set, dispatched by one `match` in
/// [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorName {
    Bash,
    Empty,
    Http,
    Fetch,
    Publish,
    Sink,
}

impl OperatorName {
    /// Whether a try runs a command in processes of its own (which a worker's process slots
    /// bound), rather than as a task inside the worker.
    pub fn runs_processes(self) -> bool {
        self == OperatorName::Bash
    }

    /// Every `uses:` name updraft accepts, with the operator it selects. updraft's own names
    /// first, then the Airflow class paths it implements natively.
    pub const USES: [(&'static str, OperatorName); 12] = [
        ("updraft.bash", OperatorName::Bash),
        ("updraft.empty", OperatorName::Empty),
        ("updraft.http", OperatorName::Http),
        ("updraft.fetch", OperatorName::Fetch),
        ("updraft.publish", OperatorName::Publish),
        ("updraft.sink", OperatorName::Sink),
        (
            "airflow.providers.standard.operators.bash.BashOperator",
            OperatorName::Bash,
        ),
        ("airflow.operators.bash.BashOperator", OperatorName::Bash),
        (
            "airflow.providers.standard.operators.empty.EmptyOperator",
            OperatorName::Empty,
        ),
        ("airflow.operators.empty.EmptyOperator", OperatorName::Empty),
        (
            "airflow.providers.http.operators.http.HttpOperator",
            OperatorName::Http,
        ),
        (
            "airflow.providers.http.operators.http.SimpleHttpOperator",
            OperatorName::Http,
        ),
    ];

    pub fn from_uses(uses: &str) -> Option<Self> {
        Self::USES.iter().find(|(n, _)| *n == uses).map(|(_, o)| *o)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorName::Bash => "bash",
            OperatorName::Empty => "empty",
            OperatorName::Http => "http",
            OperatorName::Fetch => "fetch",
            OperatorName::Publish => "publish",
            OperatorName::Sink => "sink",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        assert_eq!(
            OperatorName::from_uses("airflow.providers.standard.operators.bash.BashOperator"),
            Some(OperatorName::Bash)
        );
        assert_eq!(
            OperatorName::from_uses("updraft.fetch"),
            Some(OperatorName::Fetch)
        );
        assert_eq!(
            OperatorName::from_uses("airflow.providers.amazon.S3Operator"),
            None
        );
    }
}
