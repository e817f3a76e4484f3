//! Datetimes: Airflow's own are pendulum `DateTime`s in UTC; `macros.datetime(...)` makes
//! Python's. Also `macros.time`'s `gmtime` and `time`.

use std::any::Any;
use std::cmp::Ordering;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use minijinja::value::Kwargs;
use minijinja::{Error, ErrorKind, State, Value};

use super::date::{PyDate, PyTime};
use super::delta::PyTimedelta;
use super::text::{pendulum_format, strftime};
use super::{add_months, build, days_in_month, micros_between, overflow, time_text, tz_of, PyTz};
use crate::worker::render::value::{
    arg, as_float, as_int, downcast, int_value, kw, only_kwargs, py_err, split_args, text, Py,
    PyObject,
};

/// A datetime: wall-clock time and, when aware, its zone. `pendulum` marks Airflow's own
/// datetimes (pendulum's methods and reprs); `macros.datetime(...)` makes plain ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyDateTime {
    pub local: NaiveDateTime,
    pub tz: Option<PyTz>,
    pub pendulum: bool,
}

impl PyDateTime {
    /// A pendulum UTC datetime, as Airflow's context holds them.
    pub fn utc(t: DateTime<Utc>) -> PyDateTime {
        PyDateTime {
            local: t.naive_utc(),
            tz: Some(PyTz::UTC),
            pendulum: true,
        }
    }

    pub fn value(t: DateTime<Utc>) -> Value {
        Py::value(PyDateTime::utc(t))
    }

    /// A Python (not pendulum) datetime.
    pub fn plain((local, tz): (NaiveDateTime, Option<PyTz>)) -> PyDateTime {
        PyDateTime {
            local,
            tz,
            pendulum: false,
        }
    }

    /// The instant, for aware datetimes; the wall clock itself for naive ones.
    fn instant(&self) -> NaiveDateTime {
        match self.tz {
            Some(tz) => self.local - Duration::seconds(tz.offset as i64),
            None => self.local,
        }
    }

    pub fn isoformat(&self, sep: &str) -> String {
        let mut s = format!(
            "{}{sep}{}",
            self.local.format("%Y-%m-%d"),
            time_text(self.local.time())
        );
        if let Some(tz) = self.tz {
            s.push_str(&tz.offset_text(true));
        }
        s
    }

    pub fn repr(&self) -> String {
        let l = &self.local;
        let micro = l.nanosecond() / 1000;
        if self.pendulum {
            let mut s = format!(
                "DateTime({}, {}, {}, {}, {}, {}",
                l.year(),
                l.month(),
                l.day(),
                l.hour(),
                l.minute(),
                l.second()
            );
            if micro != 0 {
                s.push_str(&format!(", {micro}"));
            }
            if let Some(tz) = self.tz {
                s.push_str(&format!(", tzinfo={}", tz.repr()));
            }
            s.push(')');
            return s;
        }
        let mut s = format!(
            "datetime.datetime({}, {}, {}, {}, {}",
            l.year(),
            l.month(),
            l.day(),
            l.hour(),
            l.minute()
        );
        if l.second() != 0 || micro != 0 {
            s.push_str(&format!(", {}", l.second()));
        }
        if micro != 0 {
            s.push_str(&format!(", {micro}"));
        }
        if let Some(tz) = self.tz {
            if tz.offset == 0 {
                s.push_str(", tzinfo=datetime.timezone.utc");
            } else {
                s.push_str(&format!(
                    ", tzinfo=datetime.timezone(datetime.timedelta(seconds={}))",
                    tz.offset
                ));
            }
        }
        s.push(')');
        s
    }

    pub fn add_micros(&self, micros: i128) -> Result<PyDateTime, Error> {
        let d = Duration::microseconds(i64::try_from(micros).map_err(|_| overflow())?);
        let local = self.local.checked_add_signed(d).ok_or_else(overflow)?;
        Ok(PyDateTime { local, ..*self })
    }

    /// `self - other`: a timedelta, or a pendulum `Interval` between pendulum datetimes.
    pub fn sub(&self, other: &PyDateTime) -> Result<PyTimedelta, Error> {
        if self.tz.is_some() != other.tz.is_some() {
            return Err(py_err(
                "TypeError",
                "can't subtract offset-naive and offset-aware datetimes",
            ));
        }
        let micros = micros_between(other.instant(), self.instant());
        Ok(PyTimedelta {
            micros,
            interval: (self.pendulum && other.pendulum)
                .then(|| (Py::value(*other), Py::value(*self))),
        })
    }

    pub fn compare(&self, other: &PyDateTime) -> Result<Ordering, Error> {
        if self.tz.is_some() != other.tz.is_some() {
            return Err(py_err(
                "TypeError",
                "can't compare offset-naive and offset-aware datetimes",
            ));
        }
        Ok(self.instant().cmp(&other.instant()))
    }

    fn timestamp_micros(&self) -> i128 {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
            .unwrap_or_default()
            .and_time(NaiveTime::MIN);
        micros_between(epoch, self.instant())
    }

    fn replace(&self, kwargs: &Option<Kwargs>) -> Result<PyDateTime, Error> {
        only_kwargs(
            kwargs,
            &[
                "year",
                "month",
                "day",
                "hour",
                "minute",
                "second",
                "microsecond",
                "tzinfo",
            ],
            "replace",
        )?;
        let l = self.local;
        let get = |name: &str, cur: i64| -> Result<i64, Error> {
            match kw(kwargs, name) {
                Some(v) => as_int(&v)
                    .map(|i| i as i64)
                    .ok_or_else(|| py_err("TypeError", format!("{name} must be an int"))),
                None => Ok(cur),
            }
        };
        let local = build(
            get("year", l.year() as i64)?,
            get("month", l.month() as i64)?,
            get("day", l.day() as i64)?,
            get("hour", l.hour() as i64)?,
            get("minute", l.minute() as i64)?,
            get("second", l.second() as i64)?,
            get("microsecond", (l.nanosecond() / 1000) as i64)?,
        )?;
        let tz = match kw(kwargs, "tzinfo") {
            Some(v) if v.is_none() => None,
            Some(v) => Some(tz_of(&v)?),
            None => self.tz,
        };
        Ok(PyDateTime { local, tz, ..*self })
    }

    /// pendulum's `add(years=, months=, weeks=, days=, hours=, minutes=, seconds=,
    /// microseconds=)`; `sign` -1 for `subtract`.
    fn shift(&self, kwargs: &Option<Kwargs>, sign: i64, callee: &str) -> Result<PyDateTime, Error> {
        only_kwargs(
            kwargs,
            &[
                "years",
                "months",
                "weeks",
                "days",
                "hours",
                "minutes",
                "seconds",
                "microseconds",
            ],
            callee,
        )?;
        let n = |name: &str| -> Result<f64, Error> {
            kw(kwargs, name).map_or(Ok(0.0), |v| {
                as_float(&v).ok_or_else(|| py_err("TypeError", format!("{name} must be a number")))
            })
        };
        let months = (n("years")? as i64 * 12 + n("months")? as i64) * sign;
        let mut local = self.local;
        if months != 0 {
            local = add_months(local, months)?;
        }
        let micros = (n("weeks")? * 7.0 * 86_400e6
            + n("days")? * 86_400e6
            + n("hours")? * 3_600e6
            + n("minutes")? * 60e6
            + n("seconds")? * 1e6
            + n("microseconds")?)
        .round() as i128
            * sign as i128;
        PyDateTime { local, ..*self }.add_micros(micros)
    }

    fn start_or_end_of(&self, unit: &str, end: bool) -> Result<PyDateTime, Error> {
        let l = self.local;
        let day = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        let start = match unit {
            "second" => l.with_nanosecond(0).unwrap_or(l),
            "minute" => day(l.date()) + Duration::minutes(l.hour() as i64 * 60 + l.minute() as i64),
            "hour" => day(l.date()) + Duration::hours(l.hour() as i64),
            "day" => day(l.date()),
            "week" => day(l.date() - Duration::days(l.weekday().num_days_from_monday() as i64)),
            "month" => day(l.date().with_day(1).unwrap_or(l.date())),
            "year" => day(NaiveDate::from_ymd_opt(l.year(), 1, 1).unwrap_or(l.date())),
            "decade" => {
                day(NaiveDate::from_ymd_opt(l.year() - l.year() % 10, 1, 1).unwrap_or(l.date()))
            }
            "century" => day(
                NaiveDate::from_ymd_opt(l.year() - (l.year() - 1) % 100, 1, 1).unwrap_or(l.date()),
            ),
            other => {
                return Err(py_err(
                    "ValueError",
                    format!("Invalid unit \"{other}\" for start_of()"),
                ))
            }
        };
        if !end {
            return Ok(PyDateTime {
                local: start,
                ..*self
            });
        }
        let next = match unit {
            "second" => start + Duration::seconds(1),
            "minute" => start + Duration::minutes(1),
            "hour" => start + Duration::hours(1),
            "day" => start + Duration::days(1),
            "week" => start + Duration::days(7),
            "month" => add_months(start, 1)?,
            "year" => add_months(start, 12)?,
            "decade" => add_months(start, 120)?,
            _ => add_months(start, 1200)?,
        };
        Ok(PyDateTime {
            local: next - Duration::microseconds(1),
            ..*self
        })
    }
}

impl PyObject for PyDateTime {
    fn class(&self) -> &'static str {
        if self.pendulum {
            "pendulum.datetime.DateTime"
        } else {
            "datetime.datetime"
        }
    }
    fn type_name(&self) -> &'static str {
        if self.pendulum {
            "DateTime"
        } else {
            "datetime.datetime"
        }
    }
    fn str(&self) -> String {
        self.isoformat(" ")
    }
    fn repr(&self) -> String {
        PyDateTime::repr(self)
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let l = &self.local;
        Some(match name {
            "year" => l.year().into(),
            "month" => l.month().into(),
            "day" => l.day().into(),
            "hour" => l.hour().into(),
            "minute" => l.minute().into(),
            "second" => l.second().into(),
            "microsecond" => (l.nanosecond() / 1000).into(),
            "tzinfo" | "tz" | "timezone" => match self.tz {
                Some(tz) => Py::value(tz),
                None => Value::from(()),
            },
            "fold" => 0.into(),
            "int_timestamp" if self.pendulum => {
                int_value(self.timestamp_micros().div_euclid(1_000_000))
            }
            "float_timestamp" if self.pendulum => Value::from(self.timestamp_micros() as f64 / 1e6),
            "day_of_year" if self.pendulum => l.ordinal().into(),
            "days_in_month" if self.pendulum => days_in_month(l.year(), l.month()).into(),
            "week_of_year" if self.pendulum => l.iso_week().week().into(),
            "quarter" if self.pendulum => ((l.month() - 1) / 3 + 1).into(),
            "timezone_name" if self.pendulum => Value::from(self.tz.map(PyTz::name)),
            "offset" if self.pendulum => Value::from(self.tz.map(|t| t.offset)),
            _ => return None,
        })
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        let (pos, kwargs) = split_args(args)?;
        let l = self.local;
        Ok(match name {
            "isoformat" => {
                let sep = arg(pos, &kwargs, 0, "sep");
                let sep = sep.as_ref().and_then(|s| s.as_str().map(str::to_string));
                Value::from(self.isoformat(sep.as_deref().unwrap_or("T")))
            }
            "strftime" => {
                let f = arg(pos, &kwargs, 0, "format").unwrap_or_default();
                Value::from(strftime(l, self.tz, text(&f, "strftime() argument 1")?))
            }
            "date" => Py::value(PyDate {
                date: l.date(),
                pendulum: self.pendulum,
            }),
            "time" => Py::value(PyTime { time: l.time() }),
            "timestamp" => Value::from(self.timestamp_micros() as f64 / 1e6),
            "weekday" => l.weekday().num_days_from_monday().into(),
            "isoweekday" => l.weekday().number_from_monday().into(),
            "replace" => Py::value(self.replace(&kwargs)?),
            "utcoffset" => match self.tz {
                Some(tz) => Py::value(PyTimedelta::micros(tz.offset as i128 * 1_000_000)),
                None => Value::from(()),
            },
            "tzname" => Value::from(self.tz.map(PyTz::name)),
            "ctime" => Value::from(strftime(l, self.tz, "%c")),
            "add" if self.pendulum => Py::value(self.shift(&kwargs, 1, "add")?),
            "subtract" if self.pendulum => Py::value(self.shift(&kwargs, -1, "subtract")?),
            "start_of" | "end_of" if self.pendulum => {
                let unit = arg(pos, &kwargs, 0, "unit").unwrap_or_default();
                Py::value(self.start_or_end_of(text(&unit, name)?, name == "end_of")?)
            }
            "format" if self.pendulum => {
                let f = arg(pos, &kwargs, 0, "fmt").unwrap_or_default();
                Value::from(pendulum_format(self.local, self.tz, text(&f, "format")?))
            }
            "to_date_string" if self.pendulum => Value::from(l.format("%Y-%m-%d").to_string()),
            "to_time_string" if self.pendulum => Value::from(l.format("%H:%M:%S").to_string()),
            "to_datetime_string" if self.pendulum => {
                Value::from(l.format("%Y-%m-%d %H:%M:%S").to_string())
            }
            "to_iso8601_string" if self.pendulum => {
                let s = self.isoformat("T");
                Value::from(match self.tz {
                    Some(PyTz { offset: 0 }) => format!("{}Z", &s[..s.len() - 6]),
                    _ => s,
                })
            }
            "naive" if self.pendulum => Py::value(PyDateTime {
                local: self.instant(),
                tz: None,
                pendulum: true,
            }),
            "in_timezone" | "in_tz" if self.pendulum => {
                let z = arg(pos, &kwargs, 0, "tz").unwrap_or_default();
                let tz = tz_of(&z)?;
                Py::value(PyDateTime {
                    local: self.instant() + Duration::seconds(tz.offset as i64),
                    tz: Some(tz),
                    pendulum: true,
                })
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        })
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        let o = downcast::<PyDateTime>(other)?;
        Some(self.tz.is_some() == o.tz.is_some() && self.instant() == o.instant())
    }
    fn cmp(&self, other: &Value) -> Option<Ordering> {
        self.compare(downcast::<PyDateTime>(other)?).ok()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `macros.datetime(year, month, day, hour=0, minute=0, second=0, microsecond=0, tzinfo=None)`.
pub fn datetime_ctor(args: &[Value]) -> Result<Value, Error> {
    let (pos, kwargs) = split_args(args)?;
    const NAMES: [&str; 7] = [
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "microsecond",
    ];
    only_kwargs(&kwargs, &[&NAMES[..], &["tzinfo"]].concat(), "datetime")?;
    let mut f = [0i64; 7];
    for (i, name) in NAMES.iter().enumerate() {
        match arg(pos, &kwargs, i, name) {
            Some(v) => {
                f[i] = as_int(&v).map(|i| i as i64).ok_or_else(|| {
                    py_err(
                        "TypeError",
                        format!(
                            "'{}' object cannot be interpreted as an integer",
                            crate::worker::render::value::type_name(&v)
                        ),
                    )
                })?
            }
            None if i < 3 => {
                return Err(py_err(
                    "TypeError",
                    format!(
                        "function missing required argument '{name}' (pos {})",
                        i + 1
                    ),
                ))
            }
            None => {}
        }
    }
    let local = build(f[0], f[1], f[2], f[3], f[4], f[5], f[6])?;
    let tz = match arg(pos, &kwargs, 7, "tzinfo") {
        Some(v) if !v.is_none() => Some(tz_of(&v)?),
        _ => None,
    };
    Ok(Py::value(PyDateTime {
        local,
        tz,
        pendulum: false,
    }))
}

/// Python's `time` module functions templates use (`macros.time`).
pub fn gmtime(secs: f64) -> Result<Value, Error> {
    let t = DateTime::from_timestamp(secs.floor() as i64, 0).ok_or_else(overflow)?;
    Ok(Py::value(PyDateTime {
        local: t.naive_utc(),
        tz: None,
        pendulum: false,
    }))
}

/// A float timestamp for `time.time()`.
pub fn now_timestamp(now: DateTime<Utc>) -> Value {
    Value::from(now.timestamp_micros() as f64 / 1e6)
}
