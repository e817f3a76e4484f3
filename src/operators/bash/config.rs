use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of the `bash` operator (Airflow's `BashOperator`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The command, run with `bash -c`. Literal unless wrapped in `$t`.
    pub bash_command: String,
    /// Environment variables for the command. Without `append_env` they replace the worker's
    /// environment, as in Airflow.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Add `env` to the worker's environment instead of replacing it.
    #[serde(default)]
    pub append_env: bool,
    /// Working directory; a temporary directory when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Exit codes that mark the task skipped instead of failed (Airflow's default: 99).
    #[serde(default = "default_skip_codes", deserialize_with = "one_or_many")]
    pub skip_on_exit_code: Vec<i32>,
    /// Push the last line of stdout as the XCom `return_value`.
    #[serde(default = "yes")]
    pub do_xcom_push: bool,
}

fn default_skip_codes() -> Vec<i32> {
    vec![99]
}

fn yes() -> bool {
    true
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(i32),
        Many(Vec<i32>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(c) => vec![c],
        Raw::Many(v) => v,
    })
}
