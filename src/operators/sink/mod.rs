//! `sink`: consumes a Kafka topic with a consumer group and writes the records as rows to
//! Cassandra (scylla driver) or Postgres, chosen by the target connection.
//!
//! Why it looks like this: delivery is at-least-once and writes are idempotent, which
//! together give exactly-once rows. Offsets are committed only after a batch's rows are
//! written (auto-commit is off), so a crash replays at most the batches it had not committed;
//! every write is an upsert by `id`, so a replay rewrites the same rows instead of adding
//! copies. The task stops when it has read up to the end offsets its partitions had when it
//! first saw them (or after `max_records` / `max_duration`), so it fits a DAG run; sink
//! tasks sharing a group split the partitions. A message that is not a valid record (not
//! JSON, no `id`, `id` not a UUID) is logged, counted and kept as a dead letter: a
//! `<table>_dead_letter` table for Postgres, a `<topic>.dlq` topic for Cassandra.
//!
//! The files: `run` sets a try up (consumer, writer, end offsets) and tears it down;
//! `consume` is the loop; `progress` knows when the group is done; `write` writes a batch
//! and commits its offsets; `postgres` and `cassandra` are the targets; `record` turns
//! messages into rows.

pub mod cassandra;
mod config;
mod consume;
pub mod dead_letters;
pub mod postgres;
mod progress;
pub mod record;
pub mod replay;
mod run;
mod stream;
#[cfg(test)]
mod tests;
mod write;

pub use config::{
    default_columns, split_hosts, valid_identifier, Config, Mode, Target, DEFAULT_CONN_ID,
};
pub use run::run;
