use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use serde_json::json;

use super::cassandra::{self, CqlWriter};
use super::config::{Config, Target};
use super::postgres::{self, PgWriter};
use super::record::{self, Message};
use crate::core::log::mask_uri;
use crate::operators::{Outcome, TaskContext};

/// The two targets; a closed set, so an enum rather than a trait object.
enum Writer {
    Postgres(PgWriter),
    Cassandra(Box<CqlWriter>),
}

/// A partition's offsets when the task started: the run's records lie below `end`.
#[derive(Clone, Copy, Debug)]
struct Bound {
    low: i64,
    end: i64,
}

/// How far one assigned partition has to go.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The partition's end offset when the task started (or, for a partition created since,
    /// when this task first saw it assigned).
    end: i64,
    /// The next offset this task will read (committed offset, or the start, at first).
    next: i64,
}

#[derive(Default)]
struct Counts {
    consumed: u64,
    rows: u64,
    dead: u64,
    batches: u64,
    commit_failures: u64,
}

pub async fn run(config: Config, ctx: &TaskContext) -> anyhow::Result<Outcome> {
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
        ],
    );
    let consumer: Arc<StreamConsumer> = Arc::new(
        cc.create()
            .map_err(|e| anyhow::anyhow!("could not create a Kafka consumer: {e}"))?,
    );
    // The brokers must answer and the topic must exist before anything else is set up.
    let (c, topic) = (consumer.clone(), config.topic.clone());
    let metadata = tokio::task::spawn_blocking(move || c.fetch_metadata(Some(&topic), timeout))
        .await?
        .map_err(|e| {
            anyhow::anyhow!(
                "could not reach Kafka at {} within {}: {e}",
                mask_uri(&servers),
                config.connect_timeout
            )
        })?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        ctx.log.info(format!(
            "Topic `{}` does not exist (yet): nothing to sink",
            config.topic
        ));
        close(consumer, ctx, timeout).await;
        return Ok(Outcome::returning(json!({
            "consumed": 0, "rows": 0, "dead_letters": 0, "stopped": "the topic does not exist",
        })));
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
            let dlq: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("log_level", "3")
                .create()?;
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

    // Where every partition ends now: the task is done when the group has read this far.
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == config.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let (c, topic) = (consumer.clone(), config.topic.clone());
    let bounds = tokio::task::spawn_blocking(move || -> anyhow::Result<HashMap<i32, Bound>> {
        let mut bounds = HashMap::new();
        for p in partitions {
            let (low, end) = c.fetch_watermarks(&topic, p, timeout)?;
            bounds.insert(p, Bound { low, end });
        }
        Ok(bounds)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("could not read the end offsets of `{}`: {e}", config.topic))?;

    consumer.subscribe(&[config.topic.as_str()])?;

    let result = consume(&config, ctx, &consumer, &writer, bounds).await;
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

/// What the rest of the group has done with the partitions this task does not hold.
struct Group {
    /// Partitions the group has committed up to their bound: read and written, by anyone.
    settled: HashSet<i32>,
    /// The group's committed offsets when last asked, to notice progress.
    seen: HashMap<i32, i64>,
    last_asked: Instant,
    last_moved: Instant,
    /// Whether the log already says this task is waiting for the group.
    told: bool,
}

async fn consume(
    config: &Config,
    ctx: &TaskContext,
    consumer: &Arc<StreamConsumer>,
    writer: &Writer,
    bounds: HashMap<i32, Bound>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let timeout = config.connect_timeout.std();
    let mut group = Group {
        // An empty partition (or one whose records have all expired) has nothing to read.
        settled: bounds
            .iter()
            .filter(|(_, b)| b.end <= b.low)
            .map(|(&p, _)| p)
            .collect(),
        seen: HashMap::new(),
        last_asked: started,
        last_moved: started,
        told: false,
    };
    let mut progress: HashMap<i32, Progress> = HashMap::new();
    // Per partition, the offset after the last message this task received.
    let mut read: HashMap<i32, i64> = HashMap::new();
    let mut batch: Vec<Message> = Vec::with_capacity(config.batch_size);
    let mut counts = Counts::default();
    let mut last_report = Instant::now();
    let mut recv_errors = 0u32;
    let mut last_assignment_check = Instant::now();
    let stop_reason = loop {
        if ctx.cancel.is_cancelled() {
            anyhow::bail!(
                "sink was cancelled; {} rows were written and committed",
                counts.rows
            );
        }
        if config
            .max_duration
            .is_some_and(|d| started.elapsed() >= d.std())
        {
            let behind = pending(&bounds, &progress, &group.settled);
            if !behind.is_empty() {
                ctx.log.info(format!(
                    "Partitions {} may not be read to the end yet (other members of the group hold them)",
                    list(&behind)
                ));
            }
            break "reached max_duration";
        }
        if config.max_records.is_some_and(|m| counts.consumed >= m) {
            break "reached max_records";
        }
        let received = tokio::select! {
            r = tokio::time::timeout(Duration::from_millis(200), consumer.recv()) => r,
            _ = ctx.cancel.cancelled() => continue,
        };
        match received {
            Ok(Ok(m)) => {
                recv_errors = 0;
                let msg = Message {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                };
                // Also for a partition not tracked yet: the assignment is looked at after
                // messages arrive, and the tracking must start past what was read.
                let read = read.entry(msg.partition).or_insert(msg.offset + 1);
                *read = (*read).max(msg.offset + 1);
                if let Some(p) = progress.get_mut(&msg.partition) {
                    p.next = p.next.max(msg.offset + 1);
                }
                counts.consumed += 1;
                // Reading below a bound is progress towards the goal (records published since
                // the start are not: they would hide a stuck member forever).
                if bounds
                    .get(&msg.partition)
                    .is_some_and(|b| msg.offset < b.end)
                {
                    group.last_moved = Instant::now();
                }
                batch.push(msg);
                if batch.len() >= config.batch_size {
                    flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
                }
            }
            Ok(Err(e)) => {
                recv_errors += 1;
                ctx.log.info(format!("Kafka consumer error: {e}"));
                if recv_errors >= 50 {
                    anyhow::bail!("the Kafka consumer failed 50 times in a row; last error: {e}");
                }
            }
            // Quiet for a moment: write what we have rather than hold it.
            Err(_) => flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?,
        }

        // Asking librdkafka for the assignment costs a lock and a list; at most every 100 ms.
        if last_assignment_check.elapsed() >= Duration::from_millis(100) || progress.is_empty() {
            last_assignment_check = Instant::now();
            track_assignment(config, consumer, &bounds, &read, &mut progress, timeout).await?;
        }
        if progress.values().all(|p| p.next >= p.end) {
            // This task's partitions are done; the others are held by other members of the
            // group (or are between owners in a rebalance). Their committed offsets say how
            // far the group has got; asked at most every 250 ms.
            let pending = pending(&bounds, &progress, &group.settled);
            if pending.is_empty() {
                // Confirm against a fresh assignment and flush, so nothing read is held back.
                track_assignment(config, consumer, &bounds, &read, &mut progress, timeout).await?;
                if progress.values().all(|p| p.next >= p.end) {
                    break if progress.len() == bounds.len() {
                        "caught up with the end offsets as of start"
                    } else {
                        "caught up with the end offsets as of start, with other members of the group"
                    };
                }
            } else if group.last_asked.elapsed() >= Duration::from_millis(250) {
                if !progress.is_empty() && !group.told {
                    group.told = true;
                    ctx.log.info(format!(
                        "Read this task's partitions to the end; waiting for other members of the group to read partitions {}",
                        list(&pending)
                    ));
                }
                flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
                ask_group(config, consumer, &bounds, &pending, &mut group, timeout).await?;
                if group.last_moved.elapsed() >= config.stall_timeout.std() {
                    anyhow::bail!(
                        "partitions {} of `{}` are held by other members of consumer group `{}`, which made no progress on them for {}; {} rows from this task's partitions are written and committed. Stop the stuck consumer (a retry resumes from the committed offsets), or raise `stall_timeout`",
                        list(&pending),
                        config.topic,
                        config.group_id(&ctx.dag_id, &ctx.task_id),
                        config.stall_timeout,
                        counts.rows
                    );
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            ctx.log.info(format!(
                "Progress: {} rows written, {} dead letters",
                counts.rows, counts.dead
            ));
        }
    };
    flush(config, ctx, consumer, writer, &mut batch, &mut counts).await?;
    if counts.commit_failures > 0 {
        // One last attempt covering everything consumed, so the next run does not replay it.
        match commit_progress(consumer, config, &progress).await {
            Ok(()) => {}
            Err(e) if handed_over(&e) => ctx.log.info(format!(
                "Offsets of partitions handed to another consumer were not committed ({e}); it replays those messages as upserts"
            )),
            Err(e) => anyhow::bail!(
                "the rows are written but the offsets could not be committed ({e}); a rerun replays them as upserts, without duplicates"
            ),
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    ctx.log.info(format!(
        "Stopped: {stop_reason}. Wrote {} rows in {} batches in {secs:.3}s ({:.0} rows/s); {} invalid messages kept as dead letters",
        counts.rows,
        counts.batches,
        counts.rows as f64 / secs,
        counts.dead
    ));
    Ok(Outcome::returning(json!({
        "consumed": counts.consumed,
        "rows": counts.rows,
        "dead_letters": counts.dead,
        "stopped": stop_reason,
    })))
}

/// Writes the batch, then commits its offsets: never the other way round.
async fn flush(
    config: &Config,
    ctx: &TaskContext,
    consumer: &Arc<StreamConsumer>,
    writer: &Writer,
    batch: &mut Vec<Message>,
    counts: &mut Counts,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let (rows, dead) = record::split(batch, &config.columns);
    for d in dead.iter().take(20) {
        ctx.log.info(format!(
            "Invalid message at partition {} offset {}: {}; kept as a dead letter",
            d.message.partition, d.message.offset, d.error
        ));
    }
    match writer {
        Writer::Postgres(w) => w.write(&config.topic, &rows, &dead).await?,
        Writer::Cassandra(w) => w.write(&rows, &dead).await?,
    }
    counts.rows += rows.len() as u64;
    counts.dead += dead.len() as u64;
    counts.batches += 1;

    let mut tpl = TopicPartitionList::new();
    for (partition, next) in record::commit_offsets(batch) {
        tpl.add_partition_offset(&config.topic, partition, Offset::Offset(next))?;
    }
    batch.clear();
    let c = consumer.clone();
    match tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await? {
        Ok(()) => {}
        Err(e) => {
            // The rows are safe; the offsets will be committed with the next batch, or replayed
            // (idempotently) by whoever owns the partition next.
            counts.commit_failures += 1;
            ctx.log.info(format!(
                "Committing offsets failed ({e}); the rows are written and a replay is harmless"
            ));
        }
    }
    Ok(())
}

/// A commit that failed because the group moved the partitions elsewhere: not an error of
/// this task, the new owner resumes from the last committed offset.
fn handed_over(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
        )
    )
}

/// Commits the next offset of every partition this task has read.
async fn commit_progress(
    consumer: &Arc<StreamConsumer>,
    config: &Config,
    progress: &HashMap<i32, Progress>,
) -> Result<(), KafkaError> {
    if progress.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, pr) in progress {
        tpl.add_partition_offset(&config.topic, p, Offset::Offset(pr.next))?;
    }
    let c = consumer.clone();
    let mut last = KafkaError::Canceled;
    for _ in 0..3 {
        let tpl = tpl.clone();
        let c = c.clone();
        match tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = KafkaError::Canceled,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

fn list(partitions: &[i32]) -> String {
    partitions
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Partitions neither held by this task nor known to be read by the group up to their bound.
fn pending(
    bounds: &HashMap<i32, Bound>,
    progress: &HashMap<i32, Progress>,
    settled: &HashSet<i32>,
) -> Vec<i32> {
    let mut pending: Vec<i32> = bounds
        .keys()
        .filter(|p| !progress.contains_key(p) && !settled.contains(p))
        .copied()
        .collect();
    pending.sort_unstable();
    pending
}

/// Reads the group's committed offsets of `pending` partitions: settles those committed up to
/// their bound, and notes whether anything moved since the last look.
async fn ask_group(
    config: &Config,
    consumer: &Arc<StreamConsumer>,
    bounds: &HashMap<i32, Bound>,
    pending: &[i32],
    group: &mut Group,
    timeout: Duration,
) -> anyhow::Result<()> {
    group.last_asked = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for &p in pending {
        tpl.add_partition(&config.topic, p);
    }
    let c = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || c.committed_offsets(tpl, timeout)).await?;
    let committed = match committed {
        Ok(c) => c,
        // Asked again in 250 ms; meanwhile nothing counts as progress.
        Err(_) => return Ok(()),
    };
    for &p in pending {
        let Some(Offset::Offset(offset)) = committed
            .find_partition(&config.topic, p)
            .map(|e| e.offset())
        else {
            continue;
        };
        if group.seen.insert(p, offset) != Some(offset) {
            group.last_moved = Instant::now();
        }
        if offset >= bounds[&p].end {
            group.settled.insert(p);
        }
    }
    Ok(())
}

/// Notices newly assigned (and revoked) partitions. For a new one, records its bound (the end
/// offset as of start) and where this group left off.
async fn track_assignment(
    config: &Config,
    consumer: &Arc<StreamConsumer>,
    bounds: &HashMap<i32, Bound>,
    read: &HashMap<i32, i64>,
    progress: &mut HashMap<i32, Progress>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let assigned: Vec<i32> = consumer
        .assignment()?
        .elements()
        .iter()
        .filter(|e| e.topic() == config.topic)
        .map(|e| e.partition())
        .collect();
    progress.retain(|p, _| assigned.contains(p));
    let new: Vec<i32> = assigned
        .into_iter()
        .filter(|p| !progress.contains_key(p))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let c = consumer.clone();
    let topic = config.topic.clone();
    let bounds = bounds.clone();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(i32, Progress)>> {
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            tpl.add_partition(&topic, p);
        }
        let committed = c.committed_offsets(tpl, timeout)?;
        let mut out = Vec::new();
        for p in new {
            let bound = match bounds.get(&p) {
                Some(&b) => b,
                // Created since the task started: its end now is the bound.
                None => {
                    let (low, end) = c.fetch_watermarks(&topic, p, timeout)?;
                    Bound { low, end }
                }
            };
            // Records below `low` are gone (retention), so a committed offset under it
            // leaves nothing to read there.
            let next = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(bound.low),
                _ => bound.low,
            };
            out.push((
                p,
                Progress {
                    end: bound.end,
                    next,
                },
            ));
        }
        Ok(out)
    })
    .await??;
    for (p, mut pr) in found {
        // Messages of this partition may have arrived (into the batch, written before the
        // task ends) before it was tracked.
        if let Some(&r) = read.get(&p) {
            pr.next = pr.next.max(r);
        }
        progress.insert(p, pr);
    }
    Ok(())
}
