//! The stream failover scenario: a `@continuous` DAG whose sink streams a topic of the
//! embedded broker into Postgres, run by one scheduler and two worker processes, fed at a
//! steady rate by a producer in this process. Once rows flow, the worker holding the stream
//! is SIGKILLed (and not restarted): the figure is the time from the kill until the next row
//! is written, by the other worker once the lease has expired. At the end every record must
//! be in the table exactly once.

use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use sqlx::PgPool;

use super::scenarios::Setup;
use crate::db;
use crate::operators::kafka::EmbeddedKafka;

const DAG: &str = "chaos_stream";
const TOPIC: &str = "chaos_stream";

/// What the failover scenario measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Failover {
    pub lease: Duration,
    /// From the SIGKILL until the next row was written.
    pub failover: Duration,
    pub records: u64,
    pub rows: i64,
}

impl Failover {
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "== stream failover (worker holding the stream SIGKILLed, lease {:.0} s)",
                self.lease.as_secs_f64()
            ),
            format!(
                "rows flowing again after     {:.2} s ({:.2} x the lease; target under 2)",
                self.failover.as_secs_f64(),
                self.failover.as_secs_f64() / self.lease.as_secs_f64()
            ),
            format!(
                "records / rows               {} / {} ({})",
                self.records,
                self.rows,
                if self.rows == self.records as i64 {
                    "every record exactly once"
                } else {
                    "MISMATCH"
                }
            ),
        ]
    }
}

fn stream_dag(schema: &str) -> String {
    format!(
        "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json
dag_id: {DAG}
schedule: '@continuous'
max_active_runs: 1
start_date: 2026-01-01T00:00:00Z
is_paused_upon_creation: false
tasks:
  - id: stream
    uses: updraft.sink
    retries: 100
    retry_delay: 0s
    with:
      mode: continuous
      topic: {TOPIC}
      group_id: {schema}
      keyspace: {schema}
      columns: [sent_at]
"
    )
}

/// Runs the scenario at `rate` records a second; `lease` is the workers' lease.
pub async fn failover(
    setup: &Setup,
    pool: &PgPool,
    rate: u64,
    lease: Duration,
) -> anyhow::Result<Failover> {
    let kafka = EmbeddedKafka::start(3)?;
    kafka.create_topic(TOPIC, 3)?;
    let schema = format!("chaos_stream_{}", uuid::Uuid::new_v4().simple());
    db::admin::create_stream_bench_table(&setup.database_url, &schema).await?;
    setup.write_dag(DAG, &stream_dag(&schema))?;
    let mut with_kafka = setup.clone();
    with_kafka.schedulers = 1;
    with_kafka.workers = 2;
    with_kafka.env.extend([
        (
            "KAFKA_BOOTSTRAP_SERVERS".to_string(),
            kafka.bootstrap_servers(),
        ),
        ("SINK_POSTGRES_URL".to_string(), setup.database_url.clone()),
        (
            "UPDRAFT_LEASE_TTL".to_string(),
            format!("{}s", lease.as_secs()),
        ),
    ]);
    let mut fleet = with_kafka.fleet()?;

    let mut feed = Feed::new(&kafka.bootstrap_servers(), rate)?;

    // Rows flowing: the stream is up.
    let deadline = Instant::now() + setup.patience.min(Duration::from_secs(120));
    while db::admin::stream_bench_rows(&setup.database_url, &schema).await? == 0 {
        feed.offer(Duration::from_millis(200)).await?;
        anyhow::ensure!(Instant::now() < deadline, "the stream never wrote a row");
    }
    feed.offer(Duration::from_secs(3)).await?;

    let holder = db::reliability::stream_holder(pool, DAG)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no worker holds the stream"))?;
    let killed_at = Utc::now();
    anyhow::ensure!(
        fleet.kill_pid(holder as u32),
        "the stream's worker (pid {holder}) is not one of the fleet's"
    );

    // Keep offering records while the other worker takes over.
    let deadline = Instant::now() + lease * 10;
    let resumed = loop {
        feed.offer(Duration::from_millis(100)).await?;
        if let Some(at) =
            db::admin::first_write_after(&setup.database_url, &schema, killed_at).await?
        {
            break at;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no row was written within 10 leases of the kill"
        );
    };
    feed.offer(Duration::from_secs(2)).await?;
    let sent = feed.sent;

    // Every record lands, once: ids are unique per record and writes are upserts by id, so
    // the table holds as many rows as records were sent exactly when none is missing.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = db::admin::stream_bench_rows(&setup.database_url, &schema).await?;
        if rows >= sent as i64 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    db::dags::set_paused(pool, DAG, true).await?;
    fleet.stop(Duration::from_secs(20));
    db::admin::count_rows_and_drop_schema(&setup.database_url, &schema, "created_users").await?;
    Ok(Failover {
        lease,
        failover: (resumed - killed_at).to_std().unwrap_or_default(),
        records: sent,
        rows,
    })
}

/// The producer: `rate` records a second in 10 ms ticks, each carrying its send time.
struct Feed {
    producer: FutureProducer,
    rate: u64,
    sent: u64,
}

impl Feed {
    fn new(servers: &str, rate: u64) -> anyhow::Result<Feed> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("linger.ms", "1")
            .set("log_level", "3")
            .create()?;
        Ok(Feed {
            producer,
            rate,
            sent: 0,
        })
    }

    /// Offers records for `how_long`, then waits until the broker has them all.
    async fn offer(&mut self, how_long: Duration) -> anyhow::Result<()> {
        let per_tick = (self.rate / 100).max(1);
        let until = Instant::now() + how_long;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while Instant::now() < until {
            tick.tick().await;
            for _ in 0..per_tick {
                let id = uuid::Uuid::new_v4().to_string();
                let sent_at = crate::bench::stream::micros_now().to_string();
                let payload = json!({"id": id, "sent_at": sent_at}).to_string();
                self.producer
                    .send_result(FutureRecord::to(TOPIC).key(&id).payload(&payload))
                    .map_err(|(e, _)| e)?;
                self.sent += 1;
            }
        }
        self.producer.flush(Duration::from_secs(30))?;
        Ok(())
    }
}
