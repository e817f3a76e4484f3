//! updraft: a workflow orchestrator for YAML DAGs in Airflow 3.4's format.
//!
//! # Layout
//!
//! Modules form layers. A module uses only modules on layers below its own, never one
//! beside or above it, so the picture has no cycles and every arrow points down. The test
//! `layers::imports_point_down` reads every `use crate::` line and holds the code to this
//! order (top first):
//!
//! | layer | modules | what they are |
//! | --- | --- | --- |
//! | 1 | [`cli`] | the command line (clap): parses, loads [`settings`], calls the layers below |
//! | 2 | [`bench`] | `updraft bench`: engine, pipeline and web benchmarks |
//! | 3 | [`runtime`] | processes: roles wired together under one shutdown token, `standalone`, the private Postgres cluster |
//! | 4 | [`web`] | the web UI, the Airflow-shaped REST API, authentication, health and metrics |
//! | 5 | [`scheduler`], [`worker`] | the loops: DAG processor, run creation and start, retries, reaping, timeouts; claim, run under a lease, heartbeat, finish |
//! | 6 | [`db`] | every SQL statement; Postgres is the only shared state |
//! | 7 | [`dag`] | DAG files: YAML with positions, validation into a [`dag::Dag`], the graph (the only petgraph user), loading and watching the folder, the stored spec format |
//! | 8 | [`operators`] | the closed set of built-in operators, one folder each, and the Kafka plumbing they share |
//! | 9 | [`settings`] | one typed settings value: defaults < `updraft.toml` < environment < flags |
//! | 10 | [`core`] | no I/O: states, run types, trigger rules, retry policy, schedules and the planner, durations, log lines and secret masking |
//!
//! Why this order: interfaces (`cli`, `web`) sit on top and only translate; `runtime`
//! decides which loops a process runs; the loops decide *when* and call `db` for *what is
//! stored*; `dag` knows the file format, which includes each operator's `with:` schema, so
//! it sits on `operators`; everything shares the vocabulary in `core`.

pub mod bench;
pub mod cli;
pub mod core;
pub mod dag;
pub mod db;
pub mod operators;
pub mod runtime;
pub mod scheduler;
pub mod settings;
pub mod web;
pub mod worker;

/// The layer order of the table above, top first; the layering test reads it.
pub const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["bench"],
    &["runtime"],
    &["web"],
    &["scheduler", "worker"],
    &["db"],
    &["dag"],
    &["operators"],
    &["settings"],
    &["core"],
];

#[cfg(test)]
mod layers;
