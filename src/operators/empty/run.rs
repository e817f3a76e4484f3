use super::Config;
use crate::operators::{OperatorError, Outcome, TaskContext};

pub async fn run(_config: Config, _ctx: &TaskContext) -> Result<Outcome, OperatorError> {
    Ok(Outcome::default())
}
