//! Setting a sink try up: brokers and target resolved, the consumer created and subscribed,
//! the writer connected, the end offsets read; then [`consume`] does the work and the
//! consumer leaves its group.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::metadata::Metadata;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::json;

use super::cassandra::{self, CqlWriter};
use super::config::{Config, Mode, Target};
use super::consume::consume;
use super::postgres::{self, PgWriter};
use super::progress;
use super::stream;
use super::write::Writer;
use crate::core::log::mask_uri;
use crate::operators::error::classify;
use crate::operators::{OperatorError, Outcome, Reason, TaskContext};

/// Where to look when the brokers do not answer.
const BROKERS_HINT: &str =
    "are the brokers up, and do KAFKA_BOOTSTRAP_SERVERS / `bootstrap_servers` / the `kafka_conn_id` connection point at them?";

/// Permanent: bad arguments or properties, a target or broker list nobody configured, a table
/// of another shape, credentials the target refuses. Transient: brokers or the target not
/// answering, commits that failed, a group member that holds partitions without progress.
pub async fn run(config: Config, ctx: &TaskContext) -> Result<Outcome, OperatorError> {
    crate::operators::ensure_valid(config.validate())?;
    let servers = crate::operators::kafka::bootstrap_servers(
        config.bootstrap_servers.as_deref(),
        config.kafka_conn_id.as_deref(),
        &ctx.env,
    )?;
    let target = Target::resolve(config.conn_id.as_deref(), &ctx.env)?;
    let group = config.group_id(&ctx.dag_id, &ctx.task_id);
    let timeout = config.connect_timeout.std();
    ctx.log.info(format!(
        "Sinking topic `{}` (group `{group}`) from Kafka at {} into {}.{} on {}",
        config.topic,
        mask_uri(&servers),
        config.keyspace,
        config.table,
        target.describe()
    ));

    let mut cc = ClientConfig::new();
    for (k, v) in &config.properties {
        cc.set(k, v);
    }
    cc.set("bootstrap.servers", &servers)
        .set("group.id", &group)
        .set(
            "client.id",
            format!("updraft.{}.{}", ctx.dag_id, ctx.task_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "socket.connection.setup.timeout.ms",
            timeout.as_millis().max(1000).to_string(),
        )
        .set("log_level", "3");
    // Defaults a DAG may override. A short session timeout is safe (librdkafka heartbeats
    // from a background thread, so slow batches do not expire it) and lets a group recover
    // quickly from a sink that died. The embedded broker, unlike a real one, keeps a group
    // whose last member left in rebalance for the session timeout less one second, so with
    // 6 s every run's sink waited 5 s to join; against it the session timeout is 1.2 s (the
    // broker and the heartbeats live in this process; real brokers refuse less than 6 s by
    // default).
    let (session, heartbeat) = if crate::operators::kafka::is_embedded(&servers) {
        ("1200", "100")
    } else {
        ("6000", "1000")
    };
    crate::operators::kafka::set_defaults(
        &mut cc,
        &config.properties,
        &[
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", session),
            ("heartbeat.interval.ms", heartbeat),
            // Bounded memory: librdkafka prefetches up to 64 MB by default; 16 MB keeps a
            // fast stream fed (a batch is at most `batch_size` records) at a quarter.
            ("queued.max.messages.kbytes", "16384"),
        ],
    );
    if config.mode == Mode::Continuous {
        // A stream's latency: brokers answer a fetch when data arrives, but librdkafka's mock
        // cluster holds it for `fetch.wait.max.ms` (default 500 ms) whatever comes meanwhile.
        crate::operators::kafka::set_defaults(
            &mut cc,
            &config.properties,
            &[("fetch.wait.max.ms", "50")],
        );
    }
    let consumer: Arc<StreamConsumer> = Arc::new(cc.create().map_err(|e| {
        classify::kafka_error("could not create a Kafka consumer", &e)
            .hint("check the task's `properties`")
    })?);
    // The brokers must answer and the topic must exist before anything else is set up.
    let fetch = || {
        let (c, topic) = (consumer.clone(), config.topic.clone());
        let servers = &servers;
        async move {
            tokio::task::spawn_blocking(move || c.fetch_metadata(Some(&topic), timeout))
                .await
                .map_err(|e| OperatorError::internal("the metadata request's thread failed", e))?
                .map_err(|e| {
                    classify::kafka_error(
                        format_args!(
                            "could not reach Kafka at {} within {}",
                            mask_uri(servers),
                            config.connect_timeout
                        ),
                        &e,
                    )
                    .hint(BROKERS_HINT)
                })
        }
    };
    let exists = |m: &Metadata| {
        m.topics()
            .iter()
            .any(|t| t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty())
    };
    let mut metadata = fetch().await?;
    if !exists(&metadata) && config.mode == Mode::Batch {
        ctx.log.info(format!(
            "Topic `{}` does not exist (yet): nothing to sink",
            config.topic
        ));
        close(consumer, ctx, timeout).await;
        return Ok(Outcome::returning(json!({
            "consumed": 0, "rows": 0, "dead_letters": 0, "stopped": "the topic does not exist",
        })));
    }
    if !exists(&metadata) {
        ctx.log.info(format!(
            "Topic `{}` does not exist yet; waiting for it",
            config.topic
        ));
        while !exists(&metadata) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = ctx.stop.cancelled() => {
                    close(consumer, ctx, timeout).await;
                    return Ok(stream::stopped_before_start());
                }
                _ = ctx.cancel.cancelled() => {
                    close(consumer, ctx, timeout).await;
                    return Err(OperatorError::new(Reason::Cancelled, "sink was cancelled while waiting for its topic"));
                }
            }
            metadata = fetch().await?;
        }
    }

    let writer = match &target {
        Target::Postgres { url } => {
            let stmts = postgres::Statements::new(&config.keyspace, &config.table, &config.columns);
            Writer::Postgres(PgWriter::connect(url, stmts, config.columns.len(), timeout).await?)
        }
        Target::Cassandra {
            contact_points,
            user,
        } => {
            let stmts =
                cassandra::Statements::new(&config.keyspace, &config.table, &config.columns);
            let dlq: FutureProducer = crate::operators::kafka::idempotent_producer(&servers)
                .create()
                .map_err(|e| {
                    classify::kafka_error("could not create the dead-letter producer", &e)
                })?;
            let topic = config.dead_letter_topic();
            Writer::Cassandra(Box::new(
                CqlWriter::connect(
                    contact_points,
                    user.as_ref(),
                    &stmts,
                    config.concurrency,
                    timeout,
                    dlq,
                    topic,
                )
                .await?,
            ))
        }
    };

    // Where every partition ends now: a batch sink is done when the group has read this far.
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == config.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let bounds = match config.mode {
        Mode::Batch => Some(progress::bounds(&consumer, &config.topic, partitions, timeout).await?),
        Mode::Continuous => None,
    };

    consumer.subscribe(&[config.topic.as_str()]).map_err(|e| {
        classify::kafka_error(
            format_args!("could not subscribe to `{}`", config.topic),
            &e,
        )
    })?;

    let result = match bounds {
        Some(bounds) => consume(&config, ctx, &consumer, &writer, bounds).await,
        None => stream::stream(&config, ctx, &consumer, &writer).await,
    };
    close(consumer, ctx, timeout).await;
    result
}

/// Leaves the consumer group, waiting at most `timeout`. Closing blocks until librdkafka has
/// left the group, and can hang in a rebalance (rust-rdkafka #509, librdkafka #4884); the rows
/// and offsets are already safe by now, so a stuck close must not hold the task (or, on a
/// blocking-pool thread, the runtime's shutdown). It runs on a detached thread instead.
async fn close(consumer: Arc<StreamConsumer>, ctx: &TaskContext, timeout: Duration) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("updraft-sink-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done_tx.send(());
        });
    if spawned.is_err() {
        ctx.log.info("Could not start a thread to close the Kafka consumer; it closes when the process exits");
        return;
    }
    if tokio::time::timeout(timeout, done_rx).await.is_err() {
        ctx.log.info(format!(
            "The Kafka consumer did not leave its group within {}s; the group's session timeout will remove it",
            timeout.as_secs()
        ));
    }
}
