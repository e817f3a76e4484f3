//! The bottom layer: updraft's vocabulary and the decisions that need no I/O. Every other
//! module depends on it; it depends on nothing of ours, reads no file, opens no socket and
//! asks no clock but the one it is given, so each rule here is a unit-tested pure function.
//!
//! - [`state`]: task and run states and run types, as Airflow names them.
//! - [`trigger`]: trigger rules and what upstream outcomes mean for a task.
//! - [`retry`]: when a failed try runs again.
//! - [`schedule`], [`cron`], [`planner`]: schedules, cron with croniter's rules, and the next run
//!   they call for.
//! - [`duration`]: durations as DAG files write them.
//! - [`log`]: task log lines and secret masking.
//! - [`connection`]: Airflow's connection model (URI and JSON forms) and sensitive names;
//!   [`pyurl`]: the Python URL quoting it reproduces.
//! - [`fernet`]: encryption of stored secrets, compatible with Airflow's `fernet_key`.
//! - [`transfer`]: the variables import/export file format.
//! - [`run_id`]: which run ids users may choose.

pub mod backfill;
pub mod connection;
pub mod cron;
pub mod duration;
pub mod fernet;
pub mod log;
pub mod planner;
pub mod pyurl;
pub mod retry;
pub mod run_id;
pub mod schedule;
pub mod state;
pub mod transfer;
pub mod trigger;

pub use duration::Duration;
pub use log::{LogLine, LogStream, Secrets};
pub use retry::RetryPolicy;
pub use schedule::{Schedule, Timetable};
pub use state::{ReprocessBehavior, RunState, RunType, TaskState};
pub use trigger::TriggerRule;
