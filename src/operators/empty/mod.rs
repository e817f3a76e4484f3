//! `empty`: does nothing and succeeds; Airflow's `EmptyOperator`. Useful to join branches.

mod config;
mod run;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use run::run;
