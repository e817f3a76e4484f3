//! Turning Kafka messages into rows: the part of the sink that needs no server.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use crate::operators::contract::Contract;

/// A message as consumed, owned so a batch outlives the consumer's buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// One row to upsert: the id and one text value per configured column (`None` = NULL).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: Uuid,
    pub values: Vec<Option<String>>,
}

/// A message that is not a valid record, kept with the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub message: Message,
    pub error: String,
}

/// Parses one message into a row of `columns`, or says why it is not a valid record.
pub fn parse(message: &Message, columns: &[String]) -> Result<Row, String> {
    let payload = message
        .payload
        .as_deref()
        .ok_or("the message has no payload")?;
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    parse_value(&value, columns)
}

/// Like [`parse`], and the record must match the contract, if there is one.
pub fn parse_checked(
    message: &Message,
    columns: &[String],
    contract: Option<&Contract>,
) -> Result<Row, String> {
    let Some(contract) = contract else {
        return parse(message, columns);
    };
    let payload = message
        .payload
        .as_deref()
        .ok_or("the message has no payload")?;
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    contract.check(&value)?;
    parse_value(&value, columns)
}

/// A JSON record into a row of `columns`.
fn parse_value(value: &Value, columns: &[String]) -> Result<Row, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    let id = match object.get("id") {
        None | Some(Value::Null) => return Err("missing `id`".into()),
        Some(Value::String(s)) => {
            Uuid::parse_str(s).map_err(|e| format!("`id` is not a UUID: {e}"))?
        }
        Some(other) => return Err(format!("`id` is not a UUID string but {other}")),
    };
    let values = columns
        .iter()
        .map(|c| object.get(c).and_then(text))
        .collect();
    Ok(Row { id, values })
}

/// The text stored for a JSON value: strings as is, numbers and booleans as written, other
/// values as JSON; `null` is NULL.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Splits a batch into rows and dead letters. Rows are de-duplicated by id, the last message
/// winning, because one upsert statement may not touch a row twice; the result is the same
/// as writing the messages one by one in order.
pub fn split(
    messages: &[Message],
    columns: &[String],
    contract: Option<&Contract>,
) -> (Vec<Row>, Vec<DeadLetter>) {
    let mut rows: Vec<Row> = Vec::with_capacity(messages.len());
    let mut index: HashMap<Uuid, usize> = HashMap::with_capacity(messages.len());
    let mut dead = Vec::new();
    for m in messages {
        match parse_checked(m, columns, contract) {
            Ok(row) => match index.get(&row.id) {
                Some(&i) => rows[i] = row,
                None => {
                    index.insert(row.id, rows.len());
                    rows.push(row);
                }
            },
            Err(error) => dead.push(DeadLetter {
                message: m.clone(),
                error,
            }),
        }
    }
    (rows, dead)
}

/// The offsets to commit after a batch is written: per partition, one past the last message.
pub fn commit_offsets(messages: &[Message]) -> Vec<(i32, i64)> {
    let mut next: HashMap<i32, i64> = HashMap::new();
    for m in messages {
        let e = next.entry(m.partition).or_insert(m.offset + 1);
        *e = (*e).max(m.offset + 1);
    }
    let mut out: Vec<(i32, i64)> = next.into_iter().collect();
    out.sort_unstable();
    out
}
