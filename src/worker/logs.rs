//! A try's log writer: lines are stored every `LOG_FLUSH` while the try runs (so a live tail
//! sees them), kept and retried when the database refuses them, and whatever is left when
//! the try ends goes back to the caller to be stored with the outcome.

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::core::{LogLine, LogStream};
use crate::db;

/// How long the log writer gets to hand back the last lines after the try ended.
pub(super) const LOG_END_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// While a try runs, its lines are written every `LOG_FLUSH` (so a live tail sees them);
/// whatever is left when the try ends is returned, to be stored with the outcome.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

/// About how many lines a try's log writer holds while the database refuses them; past this
/// the oldest are dropped, and one line says how many.
const LOG_HOLD_MAX: usize = 100_000;
/// How long the writer lets a write in flight finish once the try has ended (the caller waits
/// `LOG_END_WAIT` for it).
const LOG_INFLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// Lines not yet stored, and how many older ones had to be dropped.
#[derive(Default)]
struct Held {
    lines: Vec<LogLine>,
    dropped: usize,
}

impl Held {
    /// Drops the oldest lines beyond `max`, counting them.
    fn trim(&mut self, max: usize) {
        if self.lines.len() > max {
            let excess = self.lines.len() - max;
            self.lines.drain(..excess);
            self.dropped += excess;
        }
    }

    /// The lines to store: a note on what was dropped, if anything, then the lines.
    fn batch(&self) -> std::borrow::Cow<'_, [LogLine]> {
        match (self.dropped, self.lines.first()) {
            (0, _) | (_, None) => std::borrow::Cow::Borrowed(&self.lines),
            (n, Some(first)) => {
                let mut all = Vec::with_capacity(self.lines.len() + 1);
                all.push(LogLine {
                    at: first.at,
                    stream: LogStream::System,
                    text: format!(
                        "{n} log lines were dropped while the database could not store them"
                    ),
                });
                all.extend(self.lines.iter().cloned());
                std::borrow::Cow::Owned(all)
            }
        }
    }

    /// Everything left, for the caller to store with the outcome.
    fn into_tail(mut self) -> Vec<LogLine> {
        self.trim(LOG_HOLD_MAX);
        self.batch().into_owned()
    }
}

pub(super) async fn write_logs(
    pool: PgPool,
    ti_id: i64,
    try_number: i32,
    mut rx: mpsc::UnboundedReceiver<LogLine>,
    mut end: oneshot::Receiver<()>,
) -> Vec<LogLine> {
    let mut held = Held::default();
    let mut flush_at: Option<tokio::time::Instant> = None;
    // Failed writes in a row: lines are kept and retried with backoff, not dropped for it.
    let mut failures = 0u32;
    loop {
        let flush = async {
            match flush_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    held.lines.push(line);
                    if failures > 0 && held.lines.len() >= 2 * LOG_HOLD_MAX {
                        held.trim(LOG_HOLD_MAX);
                    }
                    flush_at.get_or_insert_with(|| tokio::time::Instant::now() + LOG_FLUSH);
                }
                None => return held.into_tail(), // every handle is gone: the caller stores these
            },
            _ = flush => {
                let (written, ended) = {
                    let batch = held.batch();
                    let append = db::logs::append(&pool, ti_id, try_number, &batch);
                    tokio::pin!(append);
                    tokio::select! {
                        r = &mut append => (r, false),
                        _ = &mut end => {
                            // A write that finishes in time is not repeated by the caller; one
                            // stuck on an unreachable database (waiting for a connection, so
                            // nothing was sent) gives way, and its lines go back to the caller.
                            let r = tokio::time::timeout(LOG_INFLIGHT_WAIT, &mut append)
                                .await
                                .unwrap_or(Err(sqlx::Error::PoolTimedOut));
                            (r, true)
                        }
                    }
                };
                match written {
                    Ok(()) => {
                        held = Held::default();
                        failures = 0;
                        flush_at = None;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            warn!(error = %e, lines = held.lines.len(), "could not store task log lines; keeping them and retrying");
                        }
                        held.trim(LOG_HOLD_MAX);
                        let backoff = LOG_FLUSH * 2u32.pow(failures.min(6));
                        flush_at = Some(tokio::time::Instant::now() + backoff);
                    }
                }
                if ended {
                    while let Ok(line) = rx.try_recv() {
                        held.lines.push(line);
                    }
                    return held.into_tail();
                }
            }
            _ = &mut end => {
                // The try is over: take what is already queued and hand it all back.
                while let Ok(line) = rx.try_recv() {
                    held.lines.push(line);
                }
                return held.into_tail();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> LogLine {
        LogLine {
            at: chrono::Utc::now(),
            stream: LogStream::Stdout,
            text: format!("line {i}"),
        }
    }

    #[test]
    fn held_lines_keep_the_newest_and_count_every_dropped_one() {
        let mut held = Held {
            lines: (1..=10).map(line).collect(),
            dropped: 0,
        };
        held.trim(10);
        assert_eq!(held.lines.len(), 10, "at the limit nothing goes");
        assert!(matches!(held.batch(), std::borrow::Cow::Borrowed(_)));
        // Two trims: the note counts both.
        held.lines.extend((11..=15).map(line));
        held.trim(10);
        held.lines.extend((16..=20).map(line));
        held.trim(10);
        let tail = held.into_tail();
        let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 11);
        assert_eq!(
            texts[0],
            "10 log lines were dropped while the database could not store them"
        );
        assert_eq!(texts[1], "line 11");
        assert_eq!(texts[10], "line 20");
    }
}
