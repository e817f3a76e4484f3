//! LISTEN: wake-ups when another process changed something. A wake-up, never a delivery:
//! every listener also polls, and a lost connection is re-established.

use std::sync::Arc;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// LISTEN on `channel` and wake `wake` for every notification, until `stop`.
pub async fn listen_channel(
    pool: PgPool,
    channel: &'static str,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, channel, "LISTEN connection failed; polling until it is back");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        if let Err(e) = listener.listen(channel).await {
            warn!(error = %e, channel, "LISTEN failed; polling until it works");
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                _ = stop.cancelled() => return,
            }
        }
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(e) => { warn!(error = %e, channel, "LISTEN connection lost"); break; }
                },
                _ = stop.cancelled() => return,
            }
        }
    }
}
