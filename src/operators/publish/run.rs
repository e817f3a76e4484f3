use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use super::Config;
use crate::core::log::mask_uri;
use crate::operators::error::classify;
use crate::operators::kafka::producers;
use crate::operators::{OperatorError, Outcome, Reason, TaskContext};

/// Where to look when the brokers do not answer.
const BROKERS_HINT: &str =
    "are the brokers up, and do KAFKA_BOOTSTRAP_SERVERS / `bootstrap_servers` / the `kafka_conn_id` connection point at them?";

/// Permanent: bad arguments or properties, no brokers configured, a message the brokers
/// refuse (too large, not authorized). Transient: brokers that do not answer, deliveries not
/// acknowledged in time; librdkafka already retries those within `delivery_timeout`, so the
/// task's policy is the next level.
pub async fn run(config: Config, ctx: &TaskContext) -> Result<Outcome, OperatorError> {
    crate::operators::ensure_valid(config.validate())?;
    let servers = crate::operators::kafka::bootstrap_servers(
        config.bootstrap_servers.as_deref(),
        config.kafka_conn_id.as_deref(),
        &ctx.env,
    )?;
    let shown = mask_uri(&servers);
    let mut client_config = ClientConfig::new();
    for (k, v) in &config.properties {
        client_config.set(k, v);
    }
    client_config
        .set("bootstrap.servers", &servers)
        .set(
            "client.id",
            format!("updraft.{}.{}", ctx.dag_id, ctx.task_id),
        )
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            config.delivery_timeout.std().as_millis().to_string(),
        )
        .set(
            "socket.connection.setup.timeout.ms",
            config
                .connect_timeout
                .std()
                .as_millis()
                .max(1000)
                .to_string(),
        )
        .set("log_level", "3");
    crate::operators::kafka::set_defaults(
        &mut client_config,
        &config.properties,
        &[
            ("linger.ms", "5"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    );
    let pooled = producers::take(&client_config).map_err(|e| {
        classify::kafka_error(
            format_args!("could not create a Kafka producer for {shown}"),
            &e,
        )
        .hint("check the task's `properties`")
    })?;
    let producer = pooled.producer();

    let partitions = ensure_topic(producer, &client_config, &config, &shown, ctx).await?;
    ctx.log.info(format!(
        "Publishing {} records to topic `{}` ({} partitions) at {shown}{}",
        config.records.len(),
        config.topic,
        partitions
            .map(|p| p.to_string())
            .unwrap_or_else(|| "auto-created".into()),
        if pooled.reused {
            ", with this process's connected producer"
        } else {
            ""
        }
    ));

    // Records that break the contract go to the dead-letter topic, with the reason.
    let dead_letter_topic = config
        .dead_letter_topic
        .clone()
        .unwrap_or_else(|| format!("{}.dlq", config.topic));
    let verdicts: Vec<Option<String>> = config
        .records
        .iter()
        .map(|r| ctx.contract.as_ref().and_then(|c| c.check(r).err()))
        .collect();
    let dead = verdicts.iter().filter(|v| v.is_some()).count();
    for (i, reason) in verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((i, v.as_ref()?)))
        .take(20)
    {
        ctx.log.info(format!(
            "Record {i} {reason}; sent to `{dead_letter_topic}`"
        ));
    }
    if let Some(max) = config.max_dead_letters.filter(|&m| dead as u64 > m) {
        return Err(OperatorError::new(
            Reason::Schema,
            format!("{dead} records break the record schema, more than max_dead_letters ({max}); nothing was published"),
        ));
    }

    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut unkeyed = 0usize;
    for (record, reason) in config.records.iter().zip(&verdicts) {
        let payload = serde_json::to_vec(record).map_err(|e| {
            OperatorError::new(
                Reason::Schema,
                format!("a record cannot be serialized: {e}"),
            )
        })?;
        let key = config.key_field.as_deref().and_then(|f| key_of(record, f));
        if config.key_field.is_some() && key.is_none() {
            unkeyed += 1;
        }
        let topic = match reason {
            Some(_) => dead_letter_topic.as_str(),
            None => config.topic.as_str(),
        };
        let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic).payload(&payload);
        if let Some(k) = &key {
            message = message.key(k);
        }
        if let Some(r) = reason {
            message = message.headers(OwnedHeaders::new().insert(Header {
                key: "updraft.error",
                value: Some(r.as_bytes()),
            }));
        }
        // Enqueue without blocking; when librdkafka's queue is full, let deliveries drain.
        // Backpressure, not a retry of a failure (so not `operators::retry`): the queue
        // empties as messages are acknowledged or expire after `delivery_timeout`, and a
        // growing backoff would only slow a healthy publish down.
        loop {
            match producer.send_result(message) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(2)) => {}
                        _ = ctx.cancel.cancelled() => return Err(OperatorError::cancelled("publish")),
                    }
                }
                Err((e, _)) => {
                    return Err(classify::kafka_error(
                        format_args!("could not enqueue a message for topic `{}`", config.topic),
                        &e,
                    ))
                }
            }
        }
    }

    let total = pending.len();
    let mut acked = 0usize;
    let mut failed = 0usize;
    let mut first_error: Option<KafkaError> = None;
    loop {
        let next = tokio::select! {
            n = pending.next() => n,
            _ = ctx.cancel.cancelled() => return Err(OperatorError::new(
                Reason::Cancelled,
                format!("publish was cancelled with {acked} of {total} messages acknowledged"),
            )),
        };
        match next {
            None => break,
            Some(Ok(Ok(_))) => acked += 1,
            Some(Ok(Err((e, _)))) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Some(Err(_)) => {
                // The producer dropped the delivery report: it is closing.
                failed += 1;
                first_error.get_or_insert(KafkaError::Canceled);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    if unkeyed > 0 {
        ctx.log.info(format!(
            "{unkeyed} records had no `{}` field and were sent without a key",
            config.key_field.as_deref().unwrap_or_default()
        ));
    }
    if let (true, Some(e)) = (failed > 0, first_error) {
        let what = format!(
            "{failed} of {total} messages to topic `{}` were not acknowledged by Kafka at {shown} within {}",
            config.topic, config.delivery_timeout,
        );
        let error = match e {
            // Not a cancellation of this try: the delivery report was lost with the producer.
            KafkaError::Canceled => OperatorError::new(
                Reason::BrokerUnavailable,
                format!("{what}: the producer dropped the delivery report"),
            ),
            e => classify::kafka_error(what, &e),
        };
        return Err(error);
    }
    let dead_letters = if dead > 0 {
        format!(" (and {dead} dead letters to `{dead_letter_topic}`)")
    } else {
        String::new()
    };
    ctx.log.info(format!(
        "Published {} records to topic `{}`{dead_letters}, all acknowledged, in {secs:.3}s ({:.0} records/s)",
        acked - dead,
        config.topic,
        acked as f64 / secs
    ));
    pooled.keep();
    Ok(Outcome::returning(
        json!({"topic": config.topic, "published": acked - dead, "dead_letters": dead}),
    ))
}

/// The message key for a record: a string field as is, any other value as JSON text.
pub(crate) fn key_of(record: &Value, field: &str) -> Option<Vec<u8>> {
    match record.get(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// Checks the brokers answer and the topic exists, creating it if asked. Returns the
/// topic's partition count when known.
async fn ensure_topic(
    producer: &FutureProducer,
    client_config: &ClientConfig,
    config: &Config,
    shown: &str,
    ctx: &TaskContext,
) -> Result<Option<usize>, OperatorError> {
    let timeout = config.connect_timeout.std();
    let client = producer.clone();
    // All topics, not just ours: asking for one topic by name can auto-create it.
    let metadata =
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, timeout))
            .await
            .map_err(|e| OperatorError::internal("the metadata request's thread failed", e))?
            .map_err(|e| {
                classify::kafka_error(
                    format_args!(
                        "could not reach Kafka at {shown} within {}",
                        config.connect_timeout
                    ),
                    &e,
                )
                .hint(BROKERS_HINT)
            })?;
    if let Some(t) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == config.topic && t.error().is_none())
    {
        return Ok(Some(t.partitions().len()));
    }
    let servers = client_config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_string();
    let (topic, partitions) = (config.topic.clone(), config.partitions);
    // The mock cluster's API waits for its own thread: not on an async one.
    let embedded = match config.create_topic {
        true => tokio::task::spawn_blocking(move || {
            crate::operators::kafka::create_embedded_topic(&servers, &topic, partitions)
        })
        .await
        .map_err(|e| OperatorError::internal("the topic creation's thread failed", e))?,
        false => None,
    };
    if let Some(created) = embedded {
        created.map_err(|e| {
            // The mock cluster is in this process; when it refuses, it is shutting down.
            OperatorError::new(Reason::BrokerUnavailable, format!("{e:#}"))
        })?;
        ctx.log.info(format!(
            "Created topic `{}` with {} partitions on the embedded broker",
            config.topic, config.partitions
        ));
        return Ok(Some(config.partitions as usize));
    }
    if !config.create_topic {
        ctx.log.info(format!(
            "Topic `{}` does not exist; relying on the broker to auto-create it",
            config.topic
        ));
        return Ok(None);
    }
    let admin: AdminClient<DefaultClientContext> = client_config.create().map_err(|e| {
        classify::kafka_error(
            format_args!("could not create a Kafka admin client for {shown}"),
            &e,
        )
    })?;
    let topic = NewTopic::new(
        &config.topic,
        config.partitions,
        TopicReplication::Fixed(config.replication_factor),
    );
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    match admin.create_topics([&topic], &opts).await {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(_)) => {
                ctx.log.info(format!(
                    "Created topic `{}` with {} partitions",
                    config.topic, config.partitions
                ));
                Ok(Some(config.partitions as usize))
            }
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(None),
            Some(Err((_, code))) => fall_back(ctx, &config.topic, &code.to_string()),
            None => fall_back(ctx, &config.topic, "no result"),
        },
        Err(e) => fall_back(ctx, &config.topic, &e.to_string()),
    }
}

fn fall_back(ctx: &TaskContext, topic: &str, why: &str) -> Result<Option<usize>, OperatorError> {
    ctx.log.info(format!(
        "Could not create topic `{topic}` ({why}); relying on the broker to auto-create it on first write"
    ));
    Ok(None)
}
