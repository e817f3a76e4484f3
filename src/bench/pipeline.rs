//! The pipeline bench: 50,000 users from a local randomuser.me stand-in (5,000 per response)
//! through fetch → publish (the embedded mock Kafka) → sink (Postgres), calling the operators'
//! run functions directly, as a worker would. Prints records per second for each stage and end
//! to end. Local stand-ins keep the figures about updraft, not the network: the stub answers
//! from memory and the mock broker keeps messages in memory.
//!
//! The sink writes into a schema of its own (`bench_<random>`), dropped at the end, so the
//! bench can point at any database without touching its tables.

use std::time::Instant;

use serde_json::{json, Value};

use crate::operators::fetch::stub::RandomUserStub;
use crate::operators::kafka::EmbeddedKafka;
use crate::operators::{fetch, publish, sink, OperatorEnv, Outcome, TaskContext};

/// How many users the bench moves.
pub const USERS: u32 = 50_000;

/// One stage's figure.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: &'static str,
    pub records: u64,
    pub seconds: f64,
}

/// What the bench measured.
pub struct Figures {
    /// fetch, publish, sink, end to end; publish with the producer already connected.
    pub stages: Vec<Stage>,
    /// A process's first publish (one record): connecting its producer and getting a
    /// producer id from the brokers.
    pub cold_start: std::time::Duration,
}

impl Stage {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// Runs the bench and prints the figures.
pub async fn run(database_url: &str) -> anyhow::Result<()> {
    let figures = measure(database_url, USERS).await?;
    println!(
        "pipeline bench: {USERS} users, stub → fetch → publish (mock Kafka) → sink (Postgres)"
    );
    for s in &figures.stages {
        println!(
            "  {:<11} {:>7} records in {:>7.3}s = {:>9.0} records/s",
            s.name,
            s.records,
            s.seconds,
            s.per_second()
        );
    }
    println!(
        "  a process's first publish (connect + producer id, 1 record): {:.0} ms; later ones reuse its producer",
        figures.cold_start.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Moves `users` users and returns the figures: fetch, publish, sink, end to end.
pub async fn measure(database_url: &str, users: u32) -> anyhow::Result<Figures> {
    let sample: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/randomuser_sample.json"))?;
    let stub = RandomUserStub::start(&sample).await?;
    let kafka = EmbeddedKafka::start(6)?;
    let env = OperatorEnv {
        datasource_url: Some(stub.url()),
        kafka_bootstrap_servers: Some(kafka.bootstrap_servers()),
        sink_postgres_url: Some(database_url.to_string()),
        ..Default::default()
    };
    let (ctx, mut log) = TaskContext::for_test(env);
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());

    // A worker's first publish connects its producer and waits for a producer id; later ones
    // reuse it. Paid here, once, and reported on its own.
    let t = Instant::now();
    let warm_up: publish::Config = serde_json::from_value(json!({
        "records": [{"id": uuid::Uuid::new_v4().to_string()}], "topic": "bench_warm_up"
    }))?;
    publish::run(warm_up, &ctx).await?;
    let cold_start = t.elapsed();
    while log.try_recv().is_ok() {}

    let start = Instant::now();
    let fetch_config: fetch::Config = serde_json::from_value(json!({
        "results": users, "page_size": 5000, "concurrency": 4, "fields": fetch::design_fields()
    }))?;
    let records = return_value(fetch::run(fetch_config, &ctx).await?)?;
    let fetched = start.elapsed().as_secs_f64();
    let n = records.as_array().map(Vec::len).unwrap_or(0) as u64;
    if n != u64::from(users) {
        anyhow::bail!("fetch returned {n} records, expected {users}");
    }

    let t = Instant::now();
    // As a worker does: the XCom value moves into the arguments (`json!` would copy it).
    let mut args = serde_json::Map::new();
    args.insert("records".into(), records);
    args.insert("topic".into(), json!("users_created"));
    args.insert("key_field".into(), json!("id"));
    let publish_config: publish::Config = serde_json::from_value(Value::Object(args))?;
    let published = return_value(publish::run(publish_config, &ctx).await?)?;
    let publish_secs = t.elapsed().as_secs_f64();
    if published["published"] != json!(users) {
        anyhow::bail!(
            "publish acknowledged {}, expected {users}",
            published["published"]
        );
    }

    let t = Instant::now();
    let sink_config: sink::Config = serde_json::from_value(json!({
        "topic": "users_created", "group_id": schema, "keyspace": schema, "batch_size": 5000
    }))?;
    let sunk = sink::run(sink_config, &ctx).await;
    let sink_secs = t.elapsed().as_secs_f64();
    let total = start.elapsed().as_secs_f64();

    // Count what landed, then drop the bench's schema whatever happened.
    let rows =
        crate::db::admin::count_rows_and_drop_schema(database_url, &schema, "created_users").await;
    let sunk = return_value(sunk?)?;
    if rows? != i64::from(users) || sunk["rows"] != json!(users) {
        anyhow::bail!("the sink wrote {} rows, expected {users}", sunk["rows"]);
    }

    // The operators' own figures (they exclude client start-up: connecting, joining the group).
    while let Ok(line) = log.try_recv() {
        if line.text.contains("/s") {
            println!("  log: {}", line.text);
        }
    }
    let all = u64::from(users);
    let stages = vec![
        Stage {
            name: "fetch",
            records: all,
            seconds: fetched,
        },
        Stage {
            name: "publish",
            records: all,
            seconds: publish_secs,
        },
        Stage {
            name: "sink",
            records: all,
            seconds: sink_secs,
        },
        Stage {
            name: "end-to-end",
            records: all,
            seconds: total,
        },
    ];
    Ok(Figures { stages, cold_start })
}

fn return_value(out: Outcome) -> anyhow::Result<Value> {
    out.xcom
        .into_iter()
        .find(|(k, _)| k == "return_value")
        .map(|(_, v)| v)
        .ok_or_else(|| anyhow::anyhow!("the operator returned no value"))
}
