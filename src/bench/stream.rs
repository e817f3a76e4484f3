//! The stream bench: a continuous sink (`mode: continuous`, the shipped defaults: batches of
//! up to 1,000, `linger` 100 ms) on the embedded broker, fed by a producer at a fixed offered
//! rate; each row records its publish time and the database's clock at insert, so a row's
//! end-to-end latency is read back from the table. Also the bench process's resident memory
//! while streaming (broker, producer, sink and their buffers are all in this process).
//!
//! The rows go into a schema of their own (`bench_stream_<random>`), dropped at the end.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde_json::json;

use super::pct;
use crate::db::admin;
use crate::operators::kafka::EmbeddedKafka;
use crate::operators::{sink, OperatorEnv, TaskContext};

const TOPIC: &str = "bench_stream";

/// What one rate measured.
#[derive(Clone, Debug)]
pub struct StreamFigures {
    pub offered_per_sec: u64,
    pub records: u64,
    /// How long producing took (the achieved offered rate is `records / produce_secs`).
    pub produce_secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The bench process's largest VmRSS sampled while streaming, in MB.
    pub peak_rss_mb: f64,
    /// The largest VmRSS in the first and in the last minute (or half) of producing: a
    /// bounded stream holds level.
    pub early_rss_mb: f64,
    pub late_rss_mb: f64,
    /// The largest consumer lag (end offsets minus the group's commits), sampled each
    /// second, over the second half of producing.
    pub max_lag: i64,
}

impl StreamFigures {
    /// Whether the sink kept up: the producer offered at least 95 % of the rate and the lag
    /// stayed under one second's worth of records.
    pub fn kept_up(&self) -> bool {
        let achieved = self.records as f64 / self.produce_secs.max(1e-9);
        achieved >= 0.95 * self.offered_per_sec as f64 && self.max_lag < self.offered_per_sec as i64
    }
}

/// Runs the stream bench at each of `rates` records/s for `seconds` each and prints it;
/// with `ramp`, then doubles 20,000/s for 10 s at a time until the sink falls behind, to
/// find the rate at which the lag stays flat.
pub async fn run(
    database_url: &str,
    seconds: u64,
    rates: &[u64],
    ramp: bool,
) -> anyhow::Result<()> {
    println!(
        "\nstream bench: producer → embedded Kafka (3 partitions) → continuous sink (Postgres), {seconds} s per rate; latency = row insert time − publish time"
    );
    println!(
        "  bench process idle before streaming: VmRSS {:>6.1} MB",
        rss_mb()
    );
    for &rate in rates {
        let f = measure(database_url, rate, seconds).await?;
        print(&f);
        // The broker, producer and sink are gone; what the process holds now.
        tokio::time::sleep(Duration::from_secs(10)).await;
        println!(
            "    10 s after the stream stopped: VmRSS {:>6.1} MB",
            rss_mb()
        );
    }
    if ramp {
        println!(
            "  sustained rate (10 s each; kept up = lag under 1 s of records in the second half):"
        );
        let mut rate = 40_000;
        loop {
            // Falling behind is the answer here, not an error: the embedded broker keeps the
            // last 5 MB of each partition, so a sink far enough behind finds its records gone.
            match measure(database_url, rate, 10).await {
                Ok(f) => {
                    print(&f);
                    if !f.kept_up() || rate >= 640_000 {
                        break;
                    }
                }
                Err(e) => {
                    println!("  offered {rate:>6}/s: FELL BEHIND ({e:#})");
                    break;
                }
            }
            rate *= 2;
        }
    }
    Ok(())
}

fn print(f: &StreamFigures) {
    println!(
        "  offered {:>6}/s ({:>6.0}/s achieved, {} records)   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms   max lag {:>7}   {}",
        f.offered_per_sec,
        f.records as f64 / f.produce_secs.max(1e-9),
        f.records,
        f.p50_ms,
        f.p99_ms,
        f.max_ms,
        f.max_lag,
        if f.kept_up() { "kept up" } else { "FELL BEHIND" }
    );
    println!(
        "    VmRSS peak {:>6.1} MB; peak in the first / last minute of producing {:>6.1} / {:>6.1} MB",
        f.peak_rss_mb, f.early_rss_mb, f.late_rss_mb
    );
}

pub fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// This process's VmRSS in MB.
pub fn rss_mb() -> f64 {
    status_mb("self", "VmRSS:")
}

/// A memory field (`VmRSS:`, `VmHWM:`) of process `pid` (or `self`) in MB; NaN if unreadable.
pub fn status_mb(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Streams `rate * seconds` records at `rate` per second and reads every row's latency.
pub async fn measure(database_url: &str, rate: u64, seconds: u64) -> anyhow::Result<StreamFigures> {
    let kafka = EmbeddedKafka::start(3)?;
    kafka.create_topic(TOPIC, 3)?;
    let schema = format!("bench_stream_{}", uuid::Uuid::new_v4().simple());
    admin::create_stream_bench_table(database_url, &schema).await?;
    let result = stream(&kafka, database_url, &schema, rate, seconds).await;
    admin::count_rows_and_drop_schema(database_url, &schema, "created_users").await?;
    result
}

async fn stream(
    kafka: &EmbeddedKafka,
    database_url: &str,
    schema: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<StreamFigures> {
    let records = rate * seconds;
    let env = OperatorEnv {
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        sink_postgres_url: Some(database_url.to_string()),
        ..Default::default()
    };
    let (ctx, _log) = TaskContext::for_test(env);
    let config: sink::Config = serde_json::from_value(json!({
        "mode": "continuous", "topic": TOPIC, "group_id": schema, "keyspace": schema,
        "columns": ["sent_at"], "max_records": records + 1,
    }))?;
    let sink = tokio::spawn(async move { sink::run(config, &ctx).await });

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("linger.ms", "1")
        .set("log_level", "3")
        .create()?;
    let send = |sent_at: i64| {
        let id = uuid::Uuid::new_v4().to_string();
        let payload = json!({"id": id, "sent_at": sent_at.to_string()}).to_string();
        // Delivery is confirmed by the row arriving; the delivery future is not awaited.
        producer
            .send_result(FutureRecord::to(TOPIC).key(&id).payload(&payload))
            .map(drop)
            .map_err(|(e, _)| e)
    };
    // One record first, waited for: the sink has joined its group and the stream is live.
    let warm_up = micros_now();
    send(warm_up)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin::stream_bench_rows(database_url, schema).await? < 1 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sink never wrote the first record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each second: the lag and the process's memory, on a task of their own.
    let started = Instant::now();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample(
        kafka.bootstrap_servers(),
        schema.to_string(),
        started,
        sampling.clone(),
    ));

    // Offer `rate` records a second in 10 ms ticks, sampling memory as it goes.
    let per_tick = (rate / 100).max(1);
    let mut sent = 0u64;
    let mut peak_rss = rss_mb();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while sent < records {
        tick.tick().await;
        for _ in 0..per_tick.min(records - sent) {
            let mut at = micros_now();
            // A full local queue: wait for deliveries rather than drop the record.
            loop {
                match send(at) {
                    Ok(_) => break,
                    Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        at = micros_now();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            sent += 1;
        }
        if sent % (rate / 10).max(1) < per_tick {
            peak_rss = peak_rss.max(rss_mb());
        }
    }
    let produce_secs = started.elapsed().as_secs_f64();
    sampling.cancel();
    let samples = sampler.await?;
    producer.flush(Duration::from_secs(30))?;
    let out = tokio::time::timeout(Duration::from_secs(120), sink)
        .await
        .map_err(|_| anyhow::anyhow!("the sink did not catch up within 2 minutes"))???;
    peak_rss = peak_rss.max(rss_mb());
    let rows = out.xcom[0].1["rows"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        rows == records + 1,
        "the sink wrote {rows} rows, expected {}",
        records + 1
    );
    let mut lat = admin::stream_bench_latencies(database_url, schema, warm_up).await?;
    anyhow::ensure!(
        lat.len() as u64 == records,
        "{} latencies for {records} records",
        lat.len()
    );
    lat.sort_by(f64::total_cmp);
    Ok(StreamFigures {
        offered_per_sec: rate,
        records,
        produce_secs,
        p50_ms: pct(&lat, 50.0),
        p99_ms: pct(&lat, 99.0),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        peak_rss_mb: peak_rss,
        early_rss_mb: samples.rss_peak(0.0, window(produce_secs)),
        late_rss_mb: samples.rss_peak(produce_secs - window(produce_secs), produce_secs),
        max_lag: samples.lag_peak(produce_secs / 2.0, produce_secs),
    })
}

/// The first or last minute of producing, or half of it when it was shorter.
fn window(produce_secs: f64) -> f64 {
    (produce_secs / 2.0).min(60.0)
}

/// `(seconds since producing began, lag, VmRSS MB)`, once a second.
struct Samples(Vec<(f64, i64, f64)>);

impl Samples {
    fn in_window(&self, from: f64, to: f64) -> impl Iterator<Item = &(f64, i64, f64)> {
        self.0.iter().filter(move |s| s.0 >= from && s.0 <= to)
    }

    fn lag_peak(&self, from: f64, to: f64) -> i64 {
        self.in_window(from, to).map(|s| s.1).max().unwrap_or(0)
    }

    fn rss_peak(&self, from: f64, to: f64) -> f64 {
        self.in_window(from, to)
            .map(|s| s.2)
            .fold(f64::NAN, f64::max)
    }
}

async fn sample(
    servers: String,
    group: String,
    started: Instant,
    stop: tokio_util::sync::CancellationToken,
) -> Samples {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return Samples(out),
        }
        let groups = [group.clone()];
        let lag = crate::operators::kafka::monitor::topic_offsets(
            &servers,
            TOPIC,
            &groups,
            Duration::from_secs(5),
        )
        .await
        .ok()
        .and_then(|o| o.groups.into_iter().next())
        .map(|(_, parts)| parts.iter().map(|p| p.lag).sum::<i64>());
        if let Some(lag) = lag {
            out.push((started.elapsed().as_secs_f64(), lag, rss_mb()));
        }
    }
}
