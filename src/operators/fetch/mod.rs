//! `fetch`: GETs records from a JSON API (by default randomuser.me) and returns them as the
//! XCom `return_value`, a JSON array the `publish` task reads with `{$x: fetch_task}`.
//!
//! Why it looks like this: the API caps `results` at 5,000 per request, so larger counts are
//! split into pages fetched concurrently with a bound (order kept); every request has a
//! timeout and retries with exponential backoff on the failures that another try can fix
//! (connection errors, timeouts, 429 with `Retry-After`, 5xx, randomuser.me's
//! `{"error": ...}`), through [`crate::operators::retry`]; anything else (another 4xx, a body
//! that is not JSON or has no results list) fails the task at once as a permanent error,
//! with a message that says what came back.
//! The mapping from API result to record is declared in the DAG (see [`mapping`]), so the
//! operator is not tied to one API; a result the mapping cannot fill is skipped and counted,
//! never a panic.

mod config;
pub mod mapping;
mod run;
pub mod stub;
#[cfg(test)]
mod tests;

pub use config::{Config, Fields, OnInvalid, DEFAULT_URL, MAX_PAGE_SIZE};
pub use mapping::design_fields;
pub use run::run;
