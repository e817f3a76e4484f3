//! Operating runs by hand: clear task instances so they run again, mark them (or a whole
//! run) success, failed or skipped, delete a run. Airflow's `clear`, `mark` and `delete`.
//!
//! Every change to a run is one transaction in the lock order of [`super::tasks`]: the run
//! row first, then its task instances by `task_id`. Under those locks [`settle::settle`]
//! (pure) recomputes what the engine's finishing transaction keeps incrementally: each
//! task's upstream counters, the trigger-rule decisions they imply, the run's unfinished
//! count and state. So a clear or a mark leaves the run exactly as if its tasks had ended
//! that way, and the scheduler and workers carry on from there.
//!
//! A running task that is cleared or marked loses its lease (`lease_owner` is reset and its
//! state is no longer `running`): its worker sees the try taken away at its next lease check
//! and kills the command, and the worker's late outcome is refused by the finish fence.

pub mod apply;
pub mod clear;
pub mod mark;
pub mod notes;
pub mod settle;

pub use apply::{apply, Applied, Target};
pub use clear::{clear, ClearRequest, Cleared, RunFilter, Tasks};
pub use mark::{delete_run, mark_run, mark_tasks, MarkRequest, RunMark, MARKABLE};
pub use notes::{set_run_note, set_ti_notes};
pub use settle::Change;
