//! The record mapping of the `fetch` operator: a tiny, declarative language so a DAG can say
//! how each API result becomes a record, instead of the mapping being hard-coded for one API.
//!
//! Every entry of `fields:` maps an output key to one spec string:
//!
//! | spec | result |
//! | --- | --- |
//! | `name.first` | the value at that path, copied as is (a number stays a number) |
//! | `results.0.id` | a number segment indexes an array |
//! | `id.value?` | a trailing `?` makes the value optional: missing or `null` gives `null` |
//! | `{location.street.number} {location.street.name}` | a format string (any spec with `{`): each `{path}` is replaced by the scalar's text; `{{` and `}}` are literal braces |
//! | `$uuid` | a new random UUID v4, as a string |
//! | `$now` | the fetch time, RFC 3339 |
//! | `=text` | the literal string `text` |
//!
//! A required path that is missing or `null` (or, in a format string, not a scalar) makes that
//! one record invalid: the operator counts it, logs why, and skips it (or fails, if asked).
//! Output keys keep the order they are declared in.

use serde_json::{Map, Value};

/// One compiled field spec.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Path { path: Vec<String>, optional: bool },
    Format(Vec<Piece>),
    Uuid,
    Now,
    Literal(String),
}

/// A piece of a format string.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Path(Vec<String>),
}

/// A compiled mapping: output keys in declared order.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub fields: Vec<(String, Spec)>,
}

impl Spec {
    /// Parses one spec string; the error says what is wrong and how to write it.
    pub fn parse(spec: &str) -> Result<Spec, String> {
        let s = spec.trim();
        if s.is_empty() {
            return Err("empty field spec; write a path like `name.first`, a format like `{a} {b}`, `$uuid` or `=text`".into());
        }
        if let Some(lit) = s.strip_prefix('=') {
            return Ok(Spec::Literal(lit.to_string()));
        }
        if let Some(name) = s.strip_prefix('$') {
            return match name {
                "uuid" => Ok(Spec::Uuid),
                "now" => Ok(Spec::Now),
                _ => Err(format!("unknown generator `{s}`; use `$uuid` or `$now`")),
            };
        }
        if s.contains('{') || s.contains('}') {
            return parse_format(spec).map(Spec::Format);
        }
        let (body, optional) = match s.strip_suffix('?') {
            Some(b) => (b, true),
            None => (s, false),
        };
        Ok(Spec::Path {
            path: parse_path(body)?,
            optional,
        })
    }
}

fn parse_path(s: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = s.split('.').map(|p| p.trim().to_string()).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{s}` is not a valid path: segments are separated by single dots, like `location.street.name`"));
    }
    Ok(parts)
}

fn parse_format(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(format!(
                                "unclosed `{{` in format `{s}`; write `{{{{` for a literal brace"
                            ))
                        }
                        Some(ch) => inner.push(ch),
                    }
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Path(parse_path(inner.trim())?));
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in format `{s}`; write `}}}}` for a literal brace"
                ))
            }
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// Follows a path through objects and arrays.
pub fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Mapping {
    /// Compiles `fields:`; every bad spec is reported, named by its key.
    pub fn compile(fields: &[(String, String)]) -> Result<Mapping, Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (key, spec) in fields {
            match Spec::parse(spec) {
                Ok(s) => out.push((key.clone(), s)),
                Err(e) => errors.push((format!("with.fields.{key}"), e)),
            }
        }
        if fields.is_empty() {
            errors.push(("with.fields".into(), "declare at least one field".into()));
        }
        if errors.is_empty() {
            Ok(Mapping { fields: out })
        } else {
            Err(errors)
        }
    }

    /// Maps one API result to a record, or says why it cannot.
    pub fn apply(&self, item: &Value, now: &str) -> Result<Value, String> {
        if !item.is_object() {
            return Err(format!("result is not an object but {}", kind(item)));
        }
        let mut record = Map::with_capacity(self.fields.len());
        for (key, spec) in &self.fields {
            let value = match spec {
                Spec::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
                Spec::Now => Value::String(now.to_string()),
                Spec::Literal(s) => Value::String(s.clone()),
                Spec::Path { path, optional } => match lookup(item, path) {
                    Some(v) if !v.is_null() => v.clone(),
                    _ if *optional => Value::Null,
                    Some(_) => return Err(format!("field `{key}`: `{}` is null", path.join("."))),
                    None => return Err(format!("field `{key}`: `{}` is missing", path.join("."))),
                },
                Spec::Format(pieces) => {
                    let mut s = String::new();
                    for piece in pieces {
                        match piece {
                            Piece::Text(t) => s.push_str(t),
                            Piece::Path(path) => match lookup(item, path).and_then(scalar_text) {
                                Some(t) => s.push_str(&t),
                                None => {
                                    return Err(format!(
                                        "field `{key}`: `{}` is missing, null or not a scalar",
                                        path.join(".")
                                    ))
                                }
                            },
                        }
                    }
                    Value::String(s)
                }
            };
            record.insert(key.clone(), value);
        }
        Ok(Value::Object(record))
    }
}

/// A short name for a JSON value's type, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// DESIGN.md §6's record, as `dags/user_automation.yaml` declares it.
pub fn design_fields() -> serde_json::Value {
    serde_json::json!({
        "id": "$uuid",
        "first_name": "name.first",
        "last_name": "name.last",
        "gender": "gender",
        "address": "{location.street.number} {location.street.name}, {location.city}, {location.state}, {location.country}",
        "post_code": "location.postcode",
        "email": "email",
        "username": "login.username",
        "dob": "dob.date",
        "registered_date": "registered.date",
        "phone": "phone",
        "picture": "picture.medium"
    })
}
