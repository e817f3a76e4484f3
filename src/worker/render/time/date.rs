//! Dates (`logical_date.date()`) and times of day (`logical_date.time()`).

use std::any::Any;
use std::cmp::Ordering;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use minijinja::{Error, ErrorKind, State, Value};

use super::text::{pendulum_format, strftime};
use super::time_text;
use crate::worker::render::value::{arg, downcast, split_args, text, PyObject};

/// A date (`logical_date.date()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyDate {
    pub date: NaiveDate,
    pub pendulum: bool,
}

impl PyObject for PyDate {
    fn class(&self) -> &'static str {
        if self.pendulum {
            "pendulum.date.Date"
        } else {
            "datetime.date"
        }
    }
    fn type_name(&self) -> &'static str {
        if self.pendulum {
            "Date"
        } else {
            "datetime.date"
        }
    }
    fn str(&self) -> String {
        self.date.format("%Y-%m-%d").to_string()
    }
    fn repr(&self) -> String {
        let d = self.date;
        let name = if self.pendulum {
            "Date"
        } else {
            "datetime.date"
        };
        format!("{name}({}, {}, {})", d.year(), d.month(), d.day())
    }
    fn attr(&self, name: &str) -> Option<Value> {
        Some(match name {
            "year" => self.date.year().into(),
            "month" => self.date.month().into(),
            "day" => self.date.day().into(),
            _ => return None,
        })
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        let (pos, kwargs) = split_args(args)?;
        let midnight = self.date.and_time(NaiveTime::MIN);
        Ok(match name {
            "isoformat" => Value::from(self.str()),
            "strftime" => {
                let f = arg(pos, &kwargs, 0, "format").unwrap_or_default();
                Value::from(strftime(midnight, None, text(&f, "strftime() argument 1")?))
            }
            "weekday" => self.date.weekday().num_days_from_monday().into(),
            "isoweekday" => self.date.weekday().number_from_monday().into(),
            "format" if self.pendulum => {
                let f = arg(pos, &kwargs, 0, "fmt").unwrap_or_default();
                Value::from(pendulum_format(midnight, None, text(&f, "format")?))
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        })
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        downcast::<PyDate>(other).map(|o| o.date == self.date)
    }
    fn cmp(&self, other: &Value) -> Option<Ordering> {
        downcast::<PyDate>(other).map(|o| self.date.cmp(&o.date))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A time of day (`logical_date.time()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyTime {
    pub time: NaiveTime,
}

impl PyObject for PyTime {
    fn class(&self) -> &'static str {
        "datetime.time"
    }
    fn str(&self) -> String {
        time_text(self.time)
    }
    fn repr(&self) -> String {
        let t = self.time;
        format!(
            "datetime.time({}, {}, {}, {})",
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond() / 1000
        )
    }
    fn attr(&self, name: &str) -> Option<Value> {
        Some(match name {
            "hour" => self.time.hour().into(),
            "minute" => self.time.minute().into(),
            "second" => self.time.second().into(),
            "microsecond" => (self.time.nanosecond() / 1000).into(),
            _ => return None,
        })
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        let (pos, kwargs) = split_args(args)?;
        Ok(match name {
            "isoformat" => Value::from(self.str()),
            "strftime" => {
                let f = arg(pos, &kwargs, 0, "format").unwrap_or_default();
                let dt = NaiveDate::from_ymd_opt(1900, 1, 1)
                    .unwrap_or_default()
                    .and_time(self.time);
                Value::from(strftime(dt, None, text(&f, "strftime() argument 1")?))
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        })
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        downcast::<PyTime>(other).map(|o| o.time == self.time)
    }
    fn cmp(&self, other: &Value) -> Option<Ordering> {
        downcast::<PyTime>(other).map(|o| self.time.cmp(&o.time))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
