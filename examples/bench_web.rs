//! Runs the web benchmark against `DATABASE_URL` (in a scratch schema it drops afterwards):
//! `cargo run --release --example bench_web`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    updraft::bench::web::run(&url).await
}
