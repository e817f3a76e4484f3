//! One integration test binary against real components: a real Postgres (a fresh database per
//! test), real HTTP servers on port 0, librdkafka's mock cluster on loopback ports.

mod airflowctl;
mod api;
mod api_client;
mod api_compat;
mod browser;
mod browser_conns;
mod browser_standalone;
mod chaos;
mod cli;
mod compose;
mod conns;
mod conns_api;
mod conns_cli;
mod crash;
mod dag_files;
mod engine;
mod folder;
mod helpers;
mod hostile;
mod locks;
mod outage;
mod pipeline;
mod pipeline_e2e;
mod spec;
mod standalone;
mod streams;
mod streams_api;
mod templates;
mod web;
mod web_detail;
mod web_hardening;
mod web_support;
