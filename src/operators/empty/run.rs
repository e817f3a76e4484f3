use super::Config;
use crate::operators::{Outcome, TaskContext};

pub async fn run(_config: Config, _ctx: &TaskContext) -> anyhow::Result<Outcome> {
    Ok(Outcome::default())
}
