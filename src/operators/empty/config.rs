use schemars::JsonSchema;
use serde::Deserialize;

/// `empty` takes no arguments.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {}
