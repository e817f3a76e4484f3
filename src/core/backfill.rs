//! What a backfill does with each logical date of its range: create a run, run an existing
//! one again, or leave it (with Airflow's reason). Pure; `db::backfills` stores the answer.

use super::{ReprocessBehavior, RunState};

/// The fate of one logical date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePlan {
    /// No run yet: create one of type `backfill`.
    Create,
    /// Clear this existing run (its primary key) so it runs again.
    Reprocess(i64),
    /// Leave the date alone; the reason is Airflow's `exception_reason`.
    Skip(&'static str),
}

impl DatePlan {
    /// Whether the date gets a run (new or again).
    pub fn runs(self) -> bool {
        !matches!(self, DatePlan::Skip(_))
    }
}

/// Decides a date given the run it already has (`(run_pk, state)`), as Airflow 3 does: a run
/// still queued or running is never touched ("in flight"); a finished one is run again only
/// if `behavior` asks for its outcome.
pub fn plan_date(existing: Option<(i64, RunState)>, behavior: ReprocessBehavior) -> DatePlan {
    let Some((run_pk, state)) = existing else {
        return DatePlan::Create;
    };
    if state.is_unfinished() {
        return DatePlan::Skip("in flight");
    }
    match (behavior, state) {
        (ReprocessBehavior::Completed, _) | (ReprocessBehavior::Failed, RunState::Failed) => {
            DatePlan::Reprocess(run_pk)
        }
        _ => DatePlan::Skip("already exists"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReprocessBehavior as B;

    #[test]
    fn each_behavior_against_each_existing_run() {
        assert_eq!(plan_date(None, B::None), DatePlan::Create);
        assert_eq!(
            plan_date(Some((1, RunState::Success)), B::None),
            DatePlan::Skip("already exists")
        );
        assert_eq!(
            plan_date(Some((1, RunState::Failed)), B::None),
            DatePlan::Skip("already exists")
        );
        assert_eq!(
            plan_date(Some((1, RunState::Failed)), B::Failed),
            DatePlan::Reprocess(1)
        );
        assert_eq!(
            plan_date(Some((1, RunState::Success)), B::Failed),
            DatePlan::Skip("already exists")
        );
        assert_eq!(
            plan_date(Some((2, RunState::Success)), B::Completed),
            DatePlan::Reprocess(2)
        );
        assert_eq!(
            plan_date(Some((2, RunState::Running)), B::Completed),
            DatePlan::Skip("in flight")
        );
        assert!(!DatePlan::Skip("in flight").runs());
    }
}
