//! Dates and times as Airflow's templates see them: `logical_date` and friends are pendulum
//! `DateTime`s in UTC (`str()` → `2024-03-05 06:07:08.123456+00:00`), `macros.datetime` and
//! `macros.timedelta` are Python's, and `end - start` of two pendulum datetimes is a pendulum
//! `Interval`. `strftime`/`strptime` follow Python (glibc) directives, `format()` pendulum's
//! tokens.

//!
//! # Layout
//! - this file: zones and the calendar helpers the others share;
//! - `text`: `strftime`, `strptime`, pendulum's `format()`, ISO 8601 parsing;
//! - `delta`: timedeltas and pendulum intervals;
//! - `date`: dates and times of day;
//! - `datetime`: datetimes, and `macros.datetime`/`macros.time`.

mod date;
mod datetime;
mod delta;
mod text;

use std::any::Any;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use minijinja::{Error, Value};

use super::value::{downcast, py_err, PyObject};

pub use date::PyDate;
pub use datetime::{datetime_ctor, gmtime, now_timestamp, PyDateTime};
pub use delta::{timedelta_ctor, PyTimedelta};
pub use text::{fromisoformat, strftime, strptime};

const MICROS_PER_DAY: i128 = 86_400_000_000;

/// A time zone as an offset east of UTC; `UTC` by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyTz {
    pub offset: i32,
}

impl PyTz {
    pub const UTC: PyTz = PyTz { offset: 0 };

    fn offset_text(self, colon: bool) -> String {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let a = self.offset.abs();
        let (h, m) = (a / 3600, (a % 3600) / 60);
        if colon {
            format!("{sign}{h:02}:{m:02}")
        } else {
            format!("{sign}{h:02}{m:02}")
        }
    }

    fn name(self) -> String {
        if self.offset == 0 {
            "UTC".into()
        } else {
            format!("UTC{}", self.offset_text(true))
        }
    }
}

impl PyObject for PyTz {
    fn class(&self) -> &'static str {
        "pendulum.tz.timezone.Timezone"
    }
    fn type_name(&self) -> &'static str {
        "Timezone"
    }
    fn str(&self) -> String {
        self.name()
    }
    fn repr(&self) -> String {
        format!("Timezone('{}')", self.name())
    }
    fn attr(&self, name: &str) -> Option<Value> {
        match name {
            "name" => Some(Value::from(self.name())),
            _ => None,
        }
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        downcast::<PyTz>(other).map(|o| o == self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn overflow() -> Error {
    py_err("OverflowError", "date value out of range")
}

fn micros_between(a: NaiveDateTime, b: NaiveDateTime) -> i128 {
    let d = b - a;
    d.num_seconds() as i128 * 1_000_000 + (d.subsec_nanos() / 1000) as i128
}

/// `HH:MM:SS[.ffffff]`, as Python prints a time.
fn time_text(t: NaiveTime) -> String {
    let micro = t.nanosecond() / 1000;
    if micro == 0 {
        t.format("%H:%M:%S").to_string()
    } else {
        format!("{}.{micro:06}", t.format("%H:%M:%S"))
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

fn add_months(t: NaiveDateTime, months: i64) -> Result<NaiveDateTime, Error> {
    let total = t.year() as i64 * 12 + (t.month() as i64 - 1) + months;
    let (y, m) = (total.div_euclid(12) as i32, total.rem_euclid(12) as u32 + 1);
    let d = t.day().min(days_in_month(y, m));
    NaiveDate::from_ymd_opt(y, m, d)
        .map(|date| date.and_time(t.time()))
        .ok_or_else(overflow)
}

/// A naive datetime from Python's fields, with Python's range errors.
pub fn build(
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    us: i64,
) -> Result<NaiveDateTime, Error> {
    let bad = |what: &str| py_err("ValueError", format!("{what} is out of range"));
    if !(1..=9999).contains(&y) {
        return Err(py_err("ValueError", format!("year {y} is out of range")));
    }
    if !(1..=12).contains(&mo) {
        return Err(py_err("ValueError", "month must be in 1..12"));
    }
    let date = NaiveDate::from_ymd_opt(y as i32, mo as u32, 1).ok_or_else(|| bad("date"))?;
    if d < 1 || d > days_in_month(date.year(), date.month()) as i64 {
        return Err(py_err("ValueError", "day is out of range for month"));
    }
    if !(0..24).contains(&h) {
        return Err(py_err("ValueError", "hour must be in 0..23"));
    }
    if !(0..60).contains(&mi) {
        return Err(py_err("ValueError", "minute must be in 0..59"));
    }
    if !(0..60).contains(&s) {
        return Err(py_err("ValueError", "second must be in 0..59"));
    }
    if !(0..1_000_000).contains(&us) {
        return Err(py_err("ValueError", "microsecond must be in 0..999999"));
    }
    NaiveDate::from_ymd_opt(y as i32, mo as u32, d as u32)
        .and_then(|date| date.and_hms_micro_opt(h as u32, mi as u32, s as u32, us as u32))
        .ok_or_else(|| bad("datetime"))
}

/// The zone a `tzinfo=` argument names: a zone object of ours, or `"UTC"`.
pub fn tz_of(v: &Value) -> Result<PyTz, Error> {
    if let Some(tz) = downcast::<PyTz>(v) {
        return Ok(*tz);
    }
    match v.as_str() {
        Some("UTC" | "utc" | "Etc/UTC" | "Z") => Ok(PyTz::UTC),
        _ => Err(py_err(
            "ValueError",
            format!(
                "unsupported time zone {}: updraft's templates know UTC (and the zones of the datetimes they get)",
                super::value::to_repr(v)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> PyDateTime {
        PyDateTime::utc(
            chrono::DateTime::parse_from_rfc3339("2024-03-05T06:07:08.123456Z")
                .unwrap()
                .to_utc(),
        )
    }

    #[test]
    fn datetimes_print_as_pendulum_does() {
        let t = at();
        assert_eq!(t.str(), "2024-03-05 06:07:08.123456+00:00");
        assert_eq!(t.isoformat("T"), "2024-03-05T06:07:08.123456+00:00");
        assert_eq!(
            strftime(t.local, t.tz, "%Y%m%d%H%M%S.%f %z %Z"),
            "20240305060708.123456 +0000 UTC"
        );
        assert_eq!(
            strftime(t.local, t.tz, "%a %A %b %B %d %j %U %w %y %I %p"),
            "Tue Tuesday Mar March 05 065 09 2 24 06 AM"
        );
        assert_eq!(
            text::pendulum_format(t.local, t.tz, "YYYY-MM-DD HH:mm"),
            "2024-03-05 06:07"
        );
    }

    #[test]
    fn timedeltas_print_as_python_does() {
        let s = |us: i128| PyTimedelta::micros(us).str();
        assert_eq!(s(86_400_000_000), "1 day, 0:00:00");
        assert_eq!(s(36 * 3_600_000_000), "1 day, 12:00:00");
        assert_eq!(s(-86_400_000_000), "-1 day, 0:00:00");
        assert_eq!(s(1_500_000), "0:00:01.500000");
        assert_eq!(s(300_000_000), "0:05:00");
        assert_eq!(
            PyTimedelta::micros(300_000_000).repr(),
            "datetime.timedelta(seconds=300)"
        );
    }

    #[test]
    fn strptime_reads_python_formats() {
        let t = PyDateTime::plain(strptime("2024-03-05", "%Y-%m-%d").unwrap());
        assert_eq!(t.str(), "2024-03-05 00:00:00");
        let err = strptime("not-a-date", "%Y-%m-%d").unwrap_err().to_string();
        assert!(
            err.contains("time data 'not-a-date' does not match format '%Y-%m-%d'"),
            "{err}"
        );
        let t = PyDateTime::plain(
            strptime("05 Mar 2024 01:02:03.5 PM", "%d %b %Y %I:%M:%S.%f %p").unwrap(),
        );
        assert_eq!(t.str(), "2024-03-05 13:02:03.500000");
    }
}
