//! `http`: Airflow's `HttpOperator` for plain GET and POST calls, so Airflow DAGs that use it
//! run unchanged. The base URL (and basic-auth credentials) come from a named connection,
//! never from the DAG; the response body is the XCom `return_value`; a non-2xx status fails
//! the try, as Airflow's default `check_response` does. Python-callable arguments
//! (`response_check`, `response_filter`) are rejected at load time rather than ignored.
//!
//! A failed call says whether another try can help: a 5xx, 408, 429, timeout or refused
//! connection is transient and the task's `retries` apply; any other 4xx, a missing
//! connection or a bad argument is permanent and fails the task at once. That is a
//! deliberate difference from Airflow, which retries every failure, a 404 included.
//!
//! Another deliberate difference: Airflow builds the base URL from a connection's `schema` field
//! (defaulting to `http`), so `AIRFLOW_CONN_X=https://host` calls `http://host` there; updraft
//! uses the URI's own scheme and path, which is what people mean.

mod config;
mod run;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use run::{base_url, build_url, run};
