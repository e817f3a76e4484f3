//! `publish`: sends each record as one JSON message to a Kafka topic and succeeds only when
//! every message is acknowledged.
//!
//! Why it looks like this: the producer is idempotent with `acks=all`, so librdkafka's own
//! retries never duplicate or reorder a message within a partition; the try waits for every
//! delivery report, so "success" means the records are in Kafka. A broker that cannot be
//! reached fails the try after `connect_timeout` (a message that cannot be delivered, after
//! `delivery_timeout`) with a message naming the brokers, and the task's retry policy takes
//! over. Topics are created when missing (on the embedded mock cluster, which has no
//! CreateTopics, through its own API); brokers that refuse fall back to auto-creation.
//! Producers are kept between clean tries (`producers`), so their connection and producer id
//! are paid once per process.

mod config;

mod run;
#[cfg(test)]
mod tests;

pub use config::{default_topic, valid_topic, Config};
pub use run::run;
