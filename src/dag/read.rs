//! Reading YAML nodes into values while collecting every problem: the [`Report`] each
//! document's errors and warnings go into, the [`DagError`] they become, and the readers for
//! scalars (`boolean`, `count`, `duration`, `datetime`, ...) that the top-level keys, tasks
//! and `with:` values share.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::Serialize;

use super::yaml::{Node, NodeKind};
use crate::core::Duration;

/// One problem in a DAG file, with where it is and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DagError {
    /// The file as shown to users, relative to the DAGs folder; later documents are `file[doc N]`.
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for DagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(task) = &self.task_id {
            write!(f, "task `{task}`: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Reads the content of a `$f` file, given its path relative to the DAGs folder.
pub type Loader<'a> = &'a dyn Fn(&str) -> std::io::Result<String>;

/// Where a document comes from.
pub struct Source<'a> {
    /// The file as users see it: the relative path, `path[doc N]` for later documents.
    pub label: String,
    /// The file's path relative to the DAGs folder (for `$f`).
    pub rel_path: &'a str,
    pub loader: Loader<'a>,
}

/// Collects errors and warnings for one document. `task` is the task being validated, if any,
/// and is stamped on every entry pushed meanwhile.
pub(crate) struct Report {
    pub label: String,
    pub task: Option<String>,
    pub errors: Vec<DagError>,
    pub warnings: Vec<DagError>,
}

impl Report {
    pub fn new(label: String) -> Self {
        Report {
            label,
            task: None,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn entry(&self, node: Option<&Node>, field: &str, message: String) -> DagError {
        DagError {
            file: self.label.clone(),
            line: node.map(|n| n.line),
            column: node.map(|n| n.column),
            dag_id: None,
            task_id: self.task.clone(),
            field: (!field.is_empty()).then(|| field.to_string()),
            message,
        }
    }

    /// An error at `node` about `field` (empty for none).
    pub fn error(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        let e = self.entry(Some(node), field, message.into());
        self.errors.push(e);
    }

    pub fn warning(&mut self, node: Option<&Node>, field: &str, message: impl Into<String>) {
        let w = self.entry(node, field, message.into());
        self.warnings.push(w);
    }
}

pub(crate) fn is_callback(k: &str) -> bool {
    (k.starts_with("on_") && k.ends_with("_callback")) || k == "sla_miss_callback"
}

/// A mapping key as text; a non-string key is an error (a hint for YAML 1.1 booleans).
pub(crate) fn key_str<'n>(r: &mut Report, key: &'n Node) -> Option<&'n str> {
    if let Some(s) = key.as_str() {
        return Some(s);
    }
    let text = key.scalar_text().unwrap_or_default();
    let hint = if matches!(key.kind, NodeKind::Bool(_)) {
        " (YAML 1.1 reads unquoted yes/no/on/off as booleans)"
    } else {
        ""
    };
    r.error(
        key,
        "",
        format!(
            "key `{text}` is {}{hint}; write it as a quoted string",
            key.type_name()
        ),
    );
    None
}

/// `None` for a null value, otherwise what `f` makes of it.
pub(crate) fn opt<T>(node: &Node, f: impl FnOnce(&Node) -> Option<T>) -> Option<T> {
    if node.is_null() {
        None
    } else {
        f(node)
    }
}

pub(crate) fn string(r: &mut Report, node: &Node, field: &str) -> Option<String> {
    match node.as_str() {
        Some(s) => Some(s.to_string()),
        None => {
            r.error(
                node,
                field,
                format!(
                    "`{field}` must be a string, got {}; quote it",
                    node.type_name()
                ),
            );
            None
        }
    }
}

pub(crate) fn boolean(r: &mut Report, node: &Node, field: &str) -> Option<bool> {
    match node.kind {
        NodeKind::Bool(b) => Some(b),
        _ => {
            r.error(
                node,
                field,
                format!("`{field}` must be true or false, got {}", node.type_name()),
            );
            None
        }
    }
}

/// Airflow 3's `retry_exponential_backoff`: `true` (doubling, 2.0), `false` (0, off), or a
/// non-negative multiplier.
pub(crate) fn backoff_multiplier(r: &mut Report, node: &Node, field: &str) -> Option<f64> {
    match node.kind {
        NodeKind::Bool(b) => Some(if b { 2.0 } else { 0.0 }),
        NodeKind::Int(i) if i >= 0 => Some(i as f64),
        NodeKind::Float(f) if (0.0..=1e6).contains(&f) => Some(f),
        _ => {
            r.error(
                node,
                field,
                format!(
                    "`{field}` must be true, false or a multiplier between 0 and 1000000 (2.0 doubles the delay each try), got {}",
                    node.scalar_text().unwrap_or_else(|| node.type_name().into())
                ),
            );
            None
        }
    }
}

/// The ranges numbers in a DAG file must lie in. Without them a value that YAML reads fine
/// breaks later, far from the file: `max_active_tasks: 3000000000` wraps to a negative number in
/// Postgres and the DAG never runs, `max_active_tasks: 0` never runs either, a timeout of
/// 10^20 seconds is out of range for a Postgres interval. Checked at validation, so the mistake
/// is reported with its file, line and column like any other.
pub mod limits {
    use std::ops::RangeInclusive;

    /// `max_active_runs` and `max_active_tasks`: 0 would mean "never run".
    pub const MAX_ACTIVE: RangeInclusive<i64> = 1..=100_000;
    /// `retries`.
    pub const RETRIES: RangeInclusive<i64> = 0..=10_000;
    /// `pool_slots`: at least one slot; a pool larger than this is unheard of.
    pub const POOL_SLOTS: RangeInclusive<i64> = 1..=1_000_000;
    /// Years of `start_date` and `end_date`: Python's `datetime` range, so every date Airflow
    /// accepts is accepted, and date arithmetic cannot overflow.
    pub const YEARS: RangeInclusive<i32> = 1..=9999;
}

/// A whole number in `range`.
pub(crate) fn int_in(
    r: &mut Report,
    node: &Node,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Option<u32> {
    match node.kind {
        NodeKind::Int(i) if range.contains(&i) => u32::try_from(i).ok(),
        _ => {
            let got = node
                .scalar_text()
                .unwrap_or_else(|| node.type_name().to_string());
            r.error(
                node,
                field,
                format!(
                    "`{field}` must be a whole number from {} to {}; got `{got}`",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// A duration (at most [`Duration::MAX`]); with `positive`, longer than zero.
pub(crate) fn duration_in(
    r: &mut Report,
    node: &Node,
    field: &str,
    positive: bool,
) -> Option<Duration> {
    let d = duration(r, node, field)?;
    if positive && d == Duration::ZERO {
        r.error(
            node,
            field,
            format!("`{field}` must be longer than zero (leave it out for no limit)"),
        );
        return None;
    }
    Some(d)
}

pub(crate) fn duration(r: &mut Report, node: &Node, field: &str) -> Option<Duration> {
    let parsed = match &node.kind {
        NodeKind::Int(i) => Duration::from_secs_f64(*i as f64),
        NodeKind::Float(f) => Duration::from_secs_f64(*f),
        NodeKind::Str(s) => s.parse(),
        _ => Err(format!(
            "expected a duration like `30s`, `5m`, `1h30m`, `1d`, `PT5M` or a number of seconds, got {}",
            node.type_name()
        )),
    };
    parsed
        .map_err(|e| r.error(node, field, format!("`{field}`: {e}")))
        .ok()
}

/// A date (midnight UTC) or a timestamp; naive timestamps are UTC, as Airflow's default
/// timezone is.
pub(crate) fn datetime(r: &mut Report, node: &Node, field: &str) -> Option<DateTime<Utc>> {
    let parsed = match &node.kind {
        NodeKind::Date(s) | NodeKind::DateTime(s) | NodeKind::Str(s) => parse_datetime(s),
        _ => None,
    };
    if let Some(d) = parsed.filter(|d| !limits::YEARS.contains(&chrono::Datelike::year(d))) {
        r.error(
            node,
            field,
            format!(
                "`{field}` must be a date between the years {} and {}; got {}",
                limits::YEARS.start(),
                limits::YEARS.end(),
                d.to_rfc3339()
            ),
        );
        return None;
    }
    if parsed.is_none() {
        let got = node
            .scalar_text()
            .unwrap_or_else(|| node.type_name().to_string());
        r.error(
            node,
            field,
            format!("`{field}` must be a date like `2024-01-01` or a timestamp like `2024-01-01T10:00:00Z`; got `{got}`"),
        );
    }
    parsed
}

/// The YAML 1.1 timestamp forms (`2024-1-1 10:00:00.5 +2`), plus RFC 3339.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    let split = s.find(['T', 't', ' ', '\t'])?;
    let (date, rest) = (&s[..split], s[split + 1..].trim_start());
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    // The offset starts at `Z`, `+` or `-` after the time of day.
    let tz_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, tz) = (rest[..tz_at].trim_end(), &rest[tz_at..]);
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?;
    let naive = NaiveDateTime::new(date, time);
    let offset_secs: i64 = match tz {
        "" | "Z" => 0,
        _ => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let (h, m) = tz[1..].split_once(':').unwrap_or((&tz[1..], "0"));
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    Some(Utc.from_utc_datetime(&(naive - chrono::Duration::seconds(offset_secs))))
}
