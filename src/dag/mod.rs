//! DAG files in Airflow 3.4's YAML format: read (YAML with line and column, PyYAML's scalar
//! rules) → validate (pure, every error at once) → build the graph (petgraph, only in
//! `graph`). The format itself is described in `YAML_FORMAT.md`.
//!
//! # Layout
//! - [`yaml`]: the YAML reader: spanned nodes, anchors, merge keys, duplicate keys.
//! - [`validate`]: one document → [`Dag`]; top-level keys. Tasks and templates live in
//!   `task`, `with:` values and markers in `args`, cron strings in [`schedule`].
//! - [`graph`]: cycles, downstream sets, topological order; the only petgraph user.
//! - [`load`]: [`parse_source`] for one file's text, [`watch`]; [`folder`]: walking and
//!   loading the folder ([`DagBag::load`], [`DagFolder`] which re-parses only what changed);
//!   [`files`]: reading untrusted files (regular files inside the folder, within a size limit).
//! - [`schema`]: the JSON Schema for editors, generated from the same tables.
//! - [`model`], [`duration`]: the domain types a validated DAG is made of.

mod args;
pub mod contracts;
pub mod files;
pub mod folder;
pub mod graph;
pub mod load;
pub mod model;
mod pools;
pub mod read;
pub mod schedule;
pub mod schema;
pub mod schema_change;
pub mod spec;
pub mod streams;
mod task;
pub mod template;
pub mod validate;
pub mod yaml;

pub use crate::core::{Duration, Schedule, TriggerRule};
pub use crate::operators::OperatorName;
pub use folder::DagFolder;
pub use load::{parse_source, watch, DagBag, LoadedDag, ParsedFile};
pub use model::*;
pub use read::DagError;
pub use schema::json_schema;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod folder_tests;
