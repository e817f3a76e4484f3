//! The topic monitor's message browser: the latest messages of one partition, a page at a
//! time, paged back by offset. Read by a consumer that is assigned the partition and seeks
//! to the page's first offset: it joins no group and commits nothing, so browsing never
//! disturbs a sink's group or its offsets.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::monitor::OffsetReader;
use crate::operators::error::classify;
use crate::operators::OperatorError;

/// The group id the browser's consumer names (and never joins).
const BROWSE_GROUP: &str = "updraft-topic-monitor";
/// The most messages one page holds.
pub const MAX_PAGE: usize = 100;
/// A payload shown beyond this many bytes is cut (and marked so).
pub const MAX_SHOWN_BYTES: usize = 64 * 1024;

/// How a payload reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Valid JSON, shown pretty-printed.
    Json,
    /// UTF-8 text that is not JSON.
    Text,
    /// Neither: shown with invalid bytes replaced.
    Binary,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Binary => "binary",
        }
    }
}

/// A key or value as people read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shown {
    pub format: Format,
    /// Pretty-printed JSON, the text, or the bytes decoded lossily. Not HTML-escaped: the
    /// templates escape it.
    pub text: String,
    /// The payload's size in bytes.
    pub size: usize,
    /// The payload was longer than [`MAX_SHOWN_BYTES`]; `text` is its start.
    pub truncated: bool,
}

impl Shown {
    /// Reads `bytes` as JSON if it is, else as text, else lossily.
    pub fn of(bytes: &[u8]) -> Shown {
        let size = bytes.len();
        if size > MAX_SHOWN_BYTES {
            let head = &bytes[..MAX_SHOWN_BYTES];
            let format = match std::str::from_utf8(head) {
                // A cut may split a character: up to 3 bytes short of valid is still text.
                Ok(_) => Format::Text,
                Err(e) if e.error_len().is_none() => Format::Text,
                Err(_) => Format::Binary,
            };
            return Shown {
                format,
                text: String::from_utf8_lossy(head).into_owned(),
                size,
                truncated: true,
            };
        }
        let (format, text) = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => (
                Format::Json,
                serde_json::to_string_pretty(&v).unwrap_or_default(),
            ),
            Err(_) => match std::str::from_utf8(bytes) {
                Ok(s) => (Format::Text, s.to_string()),
                Err(_) => (Format::Binary, String::from_utf8_lossy(bytes).into_owned()),
            },
        };
        Shown {
            format,
            text,
            size,
            truncated: false,
        }
    }
}

/// One message of a page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<Shown>,
    /// `None`: a tombstone (no value).
    pub value: Option<Shown>,
}

/// A page of one partition's messages, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page {
    pub topic: String,
    pub partition: i32,
    /// The partition's oldest offset and end (the next message's offset) when read.
    pub low: i64,
    pub end: i64,
    /// The page holds offsets from `first` up to, not including, `before`.
    pub first: i64,
    pub before: i64,
    pub messages: Vec<Record>,
}

impl Page {
    /// `before` of the next older page, if the partition holds older messages.
    pub fn older(&self) -> Option<i64> {
        (self.first > self.low).then_some(self.first)
    }

    /// Whether newer messages than this page's exist.
    pub fn has_newer(&self) -> bool {
        self.before < self.end
    }
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error("topic `{0}` does not exist")]
    NoTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    NoPartition { topic: String, partition: i32 },
    #[error(transparent)]
    Kafka(#[from] OperatorError),
}

/// What page to read.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub servers: String,
    pub topic: String,
    pub partition: i32,
    /// Messages before this offset; `None`: the latest.
    pub before: Option<i64>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// For the whole read.
    pub timeout: Duration,
}

/// Reads the page `req` asks for.
pub async fn page(req: PageRequest) -> Result<Page, BrowseError> {
    tokio::task::spawn_blocking(move || read_page(&req))
        .await
        .map_err(|e| OperatorError::internal("the browser's thread failed", e))?
}

fn read_page(req: &PageRequest) -> Result<Page, BrowseError> {
    let kafka = |what: &str, e: &KafkaError| classify::kafka_error(what, e);
    let deadline = Instant::now() + req.timeout;
    let partitions = OffsetReader::new(&req.servers)?.partitions(&req.topic, req.timeout)?;
    if partitions.is_empty() {
        return Err(BrowseError::NoTopic(req.topic.clone()));
    }
    let p = partitions
        .iter()
        .find(|p| p.partition == req.partition)
        .ok_or_else(|| BrowseError::NoPartition {
            topic: req.topic.clone(),
            partition: req.partition,
        })?;
    let before = req.before.unwrap_or(p.end).clamp(p.low, p.end);
    let limit = req.limit.clamp(1, MAX_PAGE) as i64;
    let first = (before - limit).max(p.low);
    let mut page = Page {
        topic: req.topic.clone(),
        partition: p.partition,
        low: p.low,
        end: p.end,
        first,
        before,
        messages: Vec::new(),
    };
    if first >= before {
        return Ok(page);
    }
    // librdkafka wants a group id even to assign; an assigned (not subscribed) consumer
    // never joins it, and with auto-commit off it commits nothing there either.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &req.servers)
        .set("group.id", BROWSE_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("log_level", "3")
        .create()
        .map_err(|e| kafka("could not create a Kafka client", &e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&req.topic, p.partition, Offset::Offset(first))
        .map_err(|e| kafka("could not list the partition", &e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| kafka("could not assign the partition", &e))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OperatorError::new(
                crate::operators::Reason::Timeout,
                format!(
                    "read {} of the messages {first}..{before} of `{}` partition {} within {:?}",
                    page.messages.len(),
                    req.topic,
                    p.partition,
                    req.timeout
                ),
            )
            .into());
        }
        let Some(got) = consumer.poll(left.min(Duration::from_millis(200))) else {
            continue;
        };
        let msg = match got {
            Ok(m) => m,
            // The end of the partition: nothing more to read (compaction may leave gaps).
            Err(KafkaError::PartitionEOF(_)) => break,
            // librdkafka's transient reports (a broker connection swapped): it retries.
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) => continue,
            Err(e) => return Err(kafka("could not read the partition", &e).into()),
        };
        if msg.offset() >= before {
            break;
        }
        page.messages.push(Record {
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis),
            key: msg.key().map(Shown::of),
            value: msg.payload().map(Shown::of),
        });
        if msg.offset() + 1 >= before {
            break;
        }
    }
    page.messages.reverse();
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_as_json_text_or_bytes() {
        let j = Shown::of(br#"{"id":"a","n":[1,2]}"#);
        assert_eq!(j.format, Format::Json);
        assert_eq!(
            j.text,
            "{\n  \"id\": \"a\",\n  \"n\": [\n    1,\n    2\n  ]\n}"
        );
        let t = Shown::of(b"<b>not json</b>");
        assert_eq!(
            (t.format, t.text.as_str()),
            (Format::Text, "<b>not json</b>")
        );
        let b = Shown::of(&[0xff, 0xfe, b'a']);
        assert_eq!(b.format, Format::Binary);
        assert_eq!(b.text, "\u{fffd}\u{fffd}a");
        assert!(!b.truncated && b.size == 3);
    }

    #[test]
    fn long_payloads_are_cut() {
        let long = vec![b'x'; MAX_SHOWN_BYTES + 10];
        let s = Shown::of(&long);
        assert!(s.truncated);
        assert_eq!(
            (s.format, s.size, s.text.len()),
            (Format::Text, MAX_SHOWN_BYTES + 10, MAX_SHOWN_BYTES)
        );
    }

    #[test]
    fn pages_link_to_older_and_newer_messages() {
        let page = |first, before| Page {
            topic: "t".into(),
            partition: 0,
            low: 5,
            end: 50,
            first,
            before,
            messages: vec![],
        };
        assert_eq!(page(30, 50).older(), Some(30));
        assert!(!page(30, 50).has_newer());
        assert_eq!(page(5, 25).older(), None);
        assert!(page(5, 25).has_newer());
    }
}
