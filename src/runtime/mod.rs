//! Processes: which loops a process runs and how they stop. [`app`] wires the scheduler and
//! worker roles together under one shutdown token; [`standalone`] runs everything in one
//! process on a database it finds or starts ([`embedded_pg`]).

pub mod app;
pub mod embedded_pg;
pub mod standalone;

pub use app::{run_engine, shutdown_on_signals, InProcess, Roles};
