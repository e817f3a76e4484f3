//! `datetime.timedelta`, and pendulum's `Interval` (the difference of two pendulum
//! datetimes: a timedelta that prints its ends).

use std::any::Any;
use std::cmp::Ordering;

use minijinja::{Error, ErrorKind, State, Value};

use super::MICROS_PER_DAY;
use crate::worker::render::value::{
    arg, as_float, as_int, downcast, int_value, only_kwargs, py_err, split_args, to_str, Py,
    PyObject,
};

/// A `datetime.timedelta`, or a pendulum `Interval` when it is the difference of two
/// pendulum datetimes (same arithmetic, another `str`).
#[derive(Debug, Clone, PartialEq)]
pub struct PyTimedelta {
    pub micros: i128,
    /// The pendulum datetimes an `Interval` runs between.
    pub interval: Option<(Value, Value)>,
}

impl PyTimedelta {
    pub fn micros(micros: i128) -> PyTimedelta {
        PyTimedelta {
            micros,
            interval: None,
        }
    }

    pub fn seconds(secs: f64) -> PyTimedelta {
        PyTimedelta::micros((secs * 1e6).round() as i128)
    }

    fn parts(&self) -> (i128, i128, i128) {
        let days = self.micros.div_euclid(MICROS_PER_DAY);
        let rest = self.micros.rem_euclid(MICROS_PER_DAY);
        (days, rest / 1_000_000, rest % 1_000_000)
    }

    pub fn total_seconds(&self) -> f64 {
        self.micros as f64 / 1e6
    }

    pub fn repr(&self) -> String {
        if let Some((a, b)) = &self.interval {
            return format!("<Interval [{} -> {}]>", to_str(a), to_str(b));
        }
        let (d, s, us) = self.parts();
        let mut parts = Vec::new();
        if d != 0 {
            parts.push(format!("days={d}"));
        }
        if s != 0 {
            parts.push(format!("seconds={s}"));
        }
        if us != 0 {
            parts.push(format!("microseconds={us}"));
        }
        if parts.is_empty() {
            return "datetime.timedelta(0)".into();
        }
        format!("datetime.timedelta({})", parts.join(", "))
    }
}

impl PyObject for PyTimedelta {
    fn class(&self) -> &'static str {
        if self.interval.is_some() {
            "pendulum.interval.Interval"
        } else {
            "datetime.timedelta"
        }
    }
    fn type_name(&self) -> &'static str {
        if self.interval.is_some() {
            "Interval"
        } else {
            "datetime.timedelta"
        }
    }
    fn str(&self) -> String {
        if self.interval.is_some() {
            return PyTimedelta::repr(self);
        }
        let (d, s, us) = self.parts();
        let mut out = String::new();
        if d != 0 {
            let plural = if d.abs() != 1 { "s" } else { "" };
            out.push_str(&format!("{d} day{plural}, "));
        }
        out.push_str(&format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60));
        if us != 0 {
            out.push_str(&format!(".{us:06}"));
        }
        out
    }
    fn repr(&self) -> String {
        PyTimedelta::repr(self)
    }
    fn attr(&self, name: &str) -> Option<Value> {
        let (d, s, us) = self.parts();
        Some(match name {
            "days" => int_value(d),
            "seconds" => int_value(s),
            "microseconds" => int_value(us),
            "start" => self.interval.as_ref()?.0.clone(),
            "end" => self.interval.as_ref()?.1.clone(),
            _ => return None,
        })
    }
    fn call_method(&self, _state: &State, name: &str, _args: &[Value]) -> Result<Value, Error> {
        let whole = |unit: i128| int_value(self.micros / unit);
        Ok(match name {
            "total_seconds" => Value::from(self.total_seconds()),
            "in_seconds" => whole(1_000_000),
            "in_minutes" => whole(60_000_000),
            "in_hours" => whole(3_600_000_000),
            "in_days" => whole(MICROS_PER_DAY),
            "in_weeks" => whole(7 * MICROS_PER_DAY),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        })
    }
    fn truthy(&self) -> bool {
        self.micros != 0
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        downcast::<PyTimedelta>(other).map(|o| o.micros == self.micros)
    }
    fn cmp(&self, other: &Value) -> Option<Ordering> {
        downcast::<PyTimedelta>(other).map(|o| self.micros.cmp(&o.micros))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `macros.timedelta(days=0, seconds=0, microseconds=0, milliseconds=0, minutes=0, hours=0,
/// weeks=0)`, floats allowed.
pub fn timedelta_ctor(args: &[Value]) -> Result<Value, Error> {
    let (pos, kwargs) = split_args(args)?;
    const NAMES: [(&str, f64); 7] = [
        ("days", 86_400e6),
        ("seconds", 1e6),
        ("microseconds", 1.0),
        ("milliseconds", 1e3),
        ("minutes", 60e6),
        ("hours", 3_600e6),
        ("weeks", 7.0 * 86_400e6),
    ];
    only_kwargs(&kwargs, &NAMES.map(|(n, _)| n), "timedelta")?;
    let mut total: f64 = 0.0;
    let mut exact: i128 = 0;
    for (i, (name, unit)) in NAMES.iter().enumerate() {
        if let Some(v) = arg(pos, &kwargs, i, name) {
            match as_int(&v) {
                Some(n) => exact += n * *unit as i128,
                None => {
                    total += as_float(&v).ok_or_else(|| {
                        py_err(
                            "TypeError",
                            format!(
                                "unsupported type for timedelta {name} component: {}",
                                crate::worker::render::value::type_name(&v)
                            ),
                        )
                    })? * unit
                }
            }
        }
    }
    Ok(Py::value(PyTimedelta::micros(
        exact + total.round() as i128,
    )))
}
