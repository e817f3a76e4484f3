//! updraft: a workflow orchestrator for YAML DAGs in Airflow 3.4's format.
//!
//! # Layout
//! - [`dag`]: DAG files: YAML parsing with positions, validation into domain types, the task
//!   graph (the only place petgraph appears), loading and watching the DAGs folder.
//! - [`db`]: every SQL statement; Postgres is the only shared state.
//! - [`scheduler`]: the pure planner (cron intervals, catchup) and the scheduler loop
//!   (DAG sync, run creation, run start, retries, lease reaping, timeouts).
//! - [`worker`]: claim with `FOR UPDATE SKIP LOCKED`, run under a lease, heartbeat, finish.
//! - [`operators`]: the closed set of built-in operators, one folder each.
//! - [`kafka`]: where the brokers are, and the embedded (mock) Kafka broker standalone and tests use.
//! - [`bench_pipeline`]: the fetch → publish → sink throughput bench against local stand-ins.
//! - [`settings`]: configuration, passed explicitly; nothing below reads the environment.
//! - [`app`]: wiring roles together (`scheduler`, `worker`) with one shutdown token.
//! - [`standalone`], [`embedded_pg`]: everything in one process, on a database it finds or starts.
//! - [`web`]: the web UI, the Airflow-shaped REST API, authentication, health and metrics.
//! - [`cli`]: the command line; [`bench`]: the benchmark command; [`bench_web`]: the web benchmark.

pub mod app;
pub mod bench;
pub mod bench_pipeline;
pub mod bench_web;
pub mod cli;
mod cli_dags;
pub mod dag;
pub mod db;
pub mod embedded_pg;
pub mod kafka;
pub mod operators;
pub mod scheduler;
pub mod settings;
pub mod standalone;
pub mod web;
pub mod worker;
