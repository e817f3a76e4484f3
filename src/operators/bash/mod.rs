//! `bash`: runs a command with `bash -c`, Airflow's `BashOperator`. stdout and stderr go to the
//! task log line by line; the last stdout line is the XCom `return_value`; exit code 99 (or any
//! code in `skip_on_exit_code`) skips the task; any other non-zero code fails the try.

mod config;
pub mod process;
mod run;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use run::run;
