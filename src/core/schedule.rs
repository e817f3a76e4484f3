//! Schedules: when a DAG runs on its own, and the planner's view of a DAG (its
//! [`Timetable`]: schedule, start and end dates, catchup).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// When a DAG runs on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// `schedule: null` or absent: only manual, API and CLI triggers.
    Manual,
    /// `@once`: a single run at `start_date` (or as soon as the DAG is seen, if later).
    Once,
    /// A 5-field cron expression as Airflow writes it, or a preset (`@daily`, ...).
    /// `expr` is what the file says; `cron` is the translated 6-field expression for the
    /// `cron` crate (seconds first, weekdays counted 1..7 from Sunday).
    Cron { expr: String, cron: String },
    /// `@continuous`: a new run as soon as the previous one ends (Airflow's
    /// `ContinuousTimetable`); the DAG must allow one active run only. For streams: a run
    /// holds a task that keeps consuming until it is stopped.
    Continuous,
}

impl Schedule {
    /// What the UI and API show: `null` for manual, otherwise the expression as written.
    pub fn display(&self) -> Option<String> {
        match self {
            Schedule::Manual => None,
            Schedule::Once => Some("@once".into()),
            Schedule::Cron { expr, .. } => Some(expr.clone()),
            Schedule::Continuous => Some("@continuous".into()),
        }
    }

    /// The most runs this schedule allows at once, as Airflow's timetables say
    /// (`active_runs_limit`): one for `@continuous`, no limit of its own otherwise.
    pub fn active_runs_limit(&self) -> Option<u32> {
        match self {
            Schedule::Continuous => Some(1),
            _ => None,
        }
    }
}

/// What the planner needs of a DAG to say when it runs next.
#[derive(Clone, Copy, Debug)]
pub struct Timetable<'a> {
    pub schedule: &'a Schedule,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
}
