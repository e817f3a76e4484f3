//! Task logs, written by one writer per worker: every try's lines are gathered and stored
//! every `LOG_FLUSH` in ONE statement for all tries (a worker with 32 busy slots writes ten
//! times a second, not 320), so log writing does not crowd out claims and finishes. Lines the
//! database refuses are kept and retried with backoff; when a try ends, whatever of it is not
//! yet stored goes back to the caller to be stored with the outcome, in the same transaction.

use std::collections::HashMap;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::core::{LogLine, LogStream};
use crate::db;

/// How long the caller waits for a try's last lines after the try ended.
pub(super) const LOG_END_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// While a try runs, its lines are written every `LOG_FLUSH` (so a live tail sees them).
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);
/// About how many lines a try holds while the database refuses them; past this the oldest
/// are dropped, and one line says how many.
const LOG_HOLD_MAX: usize = 100_000;

/// A try: (task instance id, try number).
type Key = (i64, i32);

enum Msg {
    Line(Key, LogLine),
    /// The try is over: send back its lines not yet stored.
    End(Key, oneshot::Sender<Vec<LogLine>>),
}

/// The worker's log writer; cheap to clone.
#[derive(Clone)]
pub(super) struct LogWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

impl LogWriter {
    /// Starts the writer; it runs until every handle is dropped, then stores what is left.
    pub(super) fn start(pool: PgPool) -> LogWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        LogWriter { tx }
    }
}

/// Forwards one try's lines to the writer until the try ends (`end`) or every log handle is
/// gone, then returns the lines not yet stored, for the caller to store with the outcome.
pub(super) async fn write_logs(
    writer: LogWriter,
    ti_id: i64,
    try_number: i32,
    mut rx: mpsc::UnboundedReceiver<LogLine>,
    mut end: oneshot::Receiver<()>,
) -> Vec<LogLine> {
    let key = (ti_id, try_number);
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    let _ = writer.tx.send(Msg::Line(key, line));
                }
                None => break,
            },
            _ = &mut end => break,
        }
    }
    // What was already queued belongs to this try too.
    while let Ok(line) = rx.try_recv() {
        let _ = writer.tx.send(Msg::Line(key, line));
    }
    let (reply, tail) = oneshot::channel();
    if writer.tx.send(Msg::End(key, reply)).is_err() {
        return Vec::new();
    }
    tail.await.unwrap_or_default()
}

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

    /// Everything held, taken out: a note on what was dropped, if anything, then the lines.
    fn take(&mut self) -> Vec<LogLine> {
        self.trim(LOG_HOLD_MAX);
        let lines = std::mem::take(&mut self.lines);
        match (std::mem::take(&mut self.dropped), lines.first()) {
            (0, _) | (_, None) => lines,
            (n, Some(first)) => {
                let mut all = Vec::with_capacity(lines.len() + 1);
                all.push(LogLine {
                    at: first.at,
                    stream: LogStream::System,
                    text: format!(
                        "{n} log lines were dropped while the database could not store them"
                    ),
                });
                all.extend(lines);
                all
            }
        }
    }
}

type Written = (Vec<(i64, i32, Vec<LogLine>)>, sqlx::Result<()>);

async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut held: HashMap<Key, Held> = HashMap::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut in_flight: Option<tokio::task::JoinHandle<Written>> = None;
    // Ends of tries whose lines are being written: answered when the write is done, so a
    // try's tail follows its stored lines and a failed write's lines join the tail.
    let mut waiting: Vec<(Key, oneshot::Sender<Vec<LogLine>>)> = Vec::new();
    let mut failures = 0u32;
    let mut open = true;
    while open || in_flight.is_some() || held.values().any(|h| !h.lines.is_empty()) {
        let writing = in_flight.is_some();
        let flush = async {
            match (flush_at, writing) {
                (Some(at), false) => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        let written = async {
            match &mut in_flight {
                Some(h) => h.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv(), if open => match msg {
                Some(Msg::Line(key, line)) => {
                    let h = held.entry(key).or_default();
                    h.lines.push(line);
                    if failures > 0 && h.lines.len() >= 2 * LOG_HOLD_MAX {
                        h.trim(LOG_HOLD_MAX);
                    }
                    flush_at.get_or_insert_with(|| tokio::time::Instant::now() + LOG_FLUSH);
                }
                Some(Msg::End(key, reply)) => {
                    if writing {
                        waiting.push((key, reply));
                    } else {
                        let tail = held.remove(&key).map(|mut h| h.take()).unwrap_or_default();
                        let _ = reply.send(tail);
                    }
                }
                None => {
                    // The worker is done: store what is left, then stop.
                    open = false;
                    flush_at = Some(tokio::time::Instant::now());
                }
            },
            _ = flush => {
                flush_at = None;
                let batch: Vec<(i64, i32, Vec<LogLine>)> = held
                    .iter_mut()
                    .filter(|(_, h)| !h.lines.is_empty() || h.dropped > 0)
                    .map(|((ti, tr), h)| (*ti, *tr, h.take()))
                    .collect();
                held.retain(|_, h| !h.lines.is_empty());
                if !batch.is_empty() {
                    let pool = pool.clone();
                    in_flight = Some(tokio::spawn(async move {
                        let r = db::logs::append_many(&pool, &batch).await;
                        (batch, r)
                    }));
                }
            }
            done = written => {
                in_flight = None;
                match done {
                    Ok((_, Ok(()))) => failures = 0,
                    Ok((batch, Err(e))) => {
                        failures += 1;
                        if failures == 1 {
                            warn!(error = %e, "could not store task log lines; keeping them and retrying");
                        }
                        // Back in front of anything that arrived meanwhile.
                        for (ti, tr, lines) in batch {
                            let h = held.entry((ti, tr)).or_default();
                            let newer = std::mem::replace(&mut h.lines, lines);
                            h.lines.extend(newer);
                            h.trim(LOG_HOLD_MAX);
                        }
                        if !open && failures > 8 {
                            warn!("giving up on task log lines the database keeps refusing at shutdown");
                            held.clear();
                        }
                    }
                    Err(e) => warn!(error = %e, "the log write task failed"),
                }
                for (key, reply) in waiting.drain(..) {
                    let tail = held.remove(&key).map(|mut h| h.take()).unwrap_or_default();
                    let _ = reply.send(tail);
                }
                if held.values().any(|h| !h.lines.is_empty()) {
                    let backoff = if failures == 0 {
                        LOG_FLUSH
                    } else {
                        LOG_FLUSH * 2u32.pow(failures.min(6))
                    };
                    flush_at = Some(tokio::time::Instant::now() + backoff);
                }
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
        // Two trims: the note counts both.
        held.lines.extend((11..=15).map(line));
        held.trim(10);
        held.lines.extend((16..=20).map(line));
        held.trim(10);
        let tail = held.take();
        let texts: Vec<&str> = tail.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 11);
        assert_eq!(
            texts[0],
            "10 log lines were dropped while the database could not store them"
        );
        assert_eq!(texts[1], "line 11");
        assert_eq!(texts[10], "line 20");
        assert!(held.take().is_empty(), "taking empties it");
    }
}
