//! `macros`: what Airflow's `airflow.sdk.execution_time.macros` offers templates: `ds_add`,
//! `ds_format`, `ds_format_locale` (English), `datetime`, `timedelta`, `time`, `uuid`,
//! `random`, `json` and `datetime_diff_for_humans`.

use chrono::{Datelike, Timelike, Utc};
use minijinja::{Error, State, Value};

use super::objects::{func, Member, PyModule, PyUuid};
use super::pyjson::{dumps, loads, Dump};
use super::time::{
    datetime_ctor, fromisoformat, gmtime, now_timestamp, strftime, strptime, timedelta_ctor,
    PyDateTime,
};
use super::value::{
    arg, as_float, as_int, downcast, only_kwargs, py_err, split_args, text, to_str, Py,
};

/// The `macros` object of a render; `now` is the render's clock.
pub fn macros(now: chrono::DateTime<Utc>) -> Value {
    Py::value(PyModule {
        class: "airflow.sdk.execution_time.context.MacrosAccessor",
        display: "<MacrosAccessor (dynamic access to macros)>".into(),
        call: None,
        members: vec![
            ("ds_add", func(|_, a| ds_add(a))),
            ("ds_format", func(|_, a| ds_format(a))),
            ("ds_format_locale", func(|_, a| ds_format_locale(a))),
            ("datetime", Member::Const(datetime_class(now))),
            ("timedelta", Member::Const(timedelta_class())),
            ("time", Member::Const(time_module(now))),
            ("uuid", Member::Const(uuid_module())),
            (
                "random",
                func(|_, _| Ok(Value::from(rand::random::<f64>()))),
            ),
            ("json", Member::Const(json_module())),
            (
                "datetime_diff_for_humans",
                func(move |_, a| diff_for_humans(a, now)),
            ),
        ],
    })
}

fn text_arg(args: &[Value], i: usize, name: &str, callee: &str) -> Result<String, Error> {
    let (pos, kwargs) = split_args(args)?;
    let v = arg(pos, &kwargs, i, name).ok_or_else(|| {
        py_err(
            "TypeError",
            format!("{callee}() missing required positional argument: '{name}'"),
        )
    })?;
    Ok(to_str(&v))
}

/// `ds_add('2024-01-01', 5)` → `'2024-01-06'`; with 0 days the text comes back unchanged.
fn ds_add(args: &[Value]) -> Result<Value, Error> {
    let ds = text_arg(args, 0, "ds", "ds_add")?;
    let (pos, kwargs) = split_args(args)?;
    let days = arg(pos, &kwargs, 1, "days")
        .and_then(|d| as_int(&d))
        .unwrap_or(0);
    if days == 0 {
        return Ok(Value::from(ds));
    }
    let t = PyDateTime::plain(strptime(&ds, "%Y-%m-%d")?);
    let t = t.add_micros(days * 86_400_000_000)?;
    Ok(Value::from(strftime(t.local, None, "%Y-%m-%d")))
}

fn ds_format(args: &[Value]) -> Result<Value, Error> {
    let ds = text_arg(args, 0, "ds", "ds_format")?;
    let input = text_arg(args, 1, "input_format", "ds_format")?;
    let output = text_arg(args, 2, "output_format", "ds_format")?;
    let (local, tz) = strptime(&ds, &input)?;
    Ok(Value::from(strftime(local, tz, &output)))
}

/// babel's CLDR patterns, English only (`EEEE d MMMM yyyy`).
fn ds_format_locale(args: &[Value]) -> Result<Value, Error> {
    let ds = text_arg(args, 0, "ds", "ds_format_locale")?;
    let input = text_arg(args, 1, "input_format", "ds_format_locale")?;
    let output = text_arg(args, 2, "output_format", "ds_format_locale")?;
    let (pos, kwargs) = split_args(args)?;
    if let Some(loc) = arg(pos, &kwargs, 3, "locale").filter(|l| !l.is_none()) {
        let loc = to_str(&loc);
        if !matches!(loc.as_str(), "en" | "en_US" | "en_GB" | "en-US") {
            return Err(py_err(
                "ValueError",
                format!("locale `{loc}`: updraft formats dates in English only"),
            ));
        }
    }
    let t = PyDateTime::plain(strptime(&ds, &input)?);
    Ok(Value::from(cldr_format(&t, &output)))
}

fn cldr_format(t: &PyDateTime, pattern: &str) -> String {
    let l = t.local;
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == '\'')
                .map_or(chars.len(), |p| i + 1 + p);
            out.extend(&chars[i + 1..end]);
            i = end + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let n = chars[i..].iter().take_while(|x| **x == c).count();
        let fmt = |spec: &str| strftime(l, t.tz, spec);
        out.push_str(&match (c, n) {
            ('y', 2) => format!("{:02}", l.year() % 100),
            ('y', _) => format!("{:0n$}", l.year()),
            ('M', 1) => l.month().to_string(),
            ('M', 2) => format!("{:02}", l.month()),
            ('M', 3) => fmt("%b"),
            ('M', _) => fmt("%B"),
            ('d', 1) => l.day().to_string(),
            ('d', _) => format!("{:02}", l.day()),
            ('E', 4) => fmt("%A"),
            ('E', _) => fmt("%a"),
            ('H', 1) => l.hour().to_string(),
            ('H', _) => format!("{:02}", l.hour()),
            ('h', 1) => ((l.hour() + 11) % 12 + 1).to_string(),
            ('h', _) => format!("{:02}", (l.hour() + 11) % 12 + 1),
            ('m', 1) => l.minute().to_string(),
            ('m', _) => format!("{:02}", l.minute()),
            ('s', 1) => l.second().to_string(),
            ('s', _) => format!("{:02}", l.second()),
            ('a', _) => fmt("%p"),
            _ => chars[i..i + n].iter().collect(),
        });
        i += n;
    }
    out
}

fn datetime_class(now: chrono::DateTime<Utc>) -> Value {
    Py::value(PyModule {
        class: "datetime.datetime",
        display: "<class 'datetime.datetime'>".into(),
        call: Some(std::sync::Arc::new(|_: &State, a: &[Value]| {
            datetime_ctor(a)
        })),
        members: vec![
            (
                "strptime",
                func(|_, a| {
                    let s = text_arg(a, 0, "date_string", "strptime")?;
                    let f = text_arg(a, 1, "format", "strptime")?;
                    Ok(Py::value(PyDateTime::plain(strptime(&s, &f)?)))
                }),
            ),
            (
                "fromisoformat",
                func(|_, a| {
                    let s = text_arg(a, 0, "date_string", "fromisoformat")?;
                    Ok(Py::value(PyDateTime::plain(fromisoformat(&s)?)))
                }),
            ),
            (
                "now",
                func(move |_, a| {
                    let (pos, kwargs) = split_args(a)?;
                    let tz = arg(pos, &kwargs, 0, "tz").filter(|t| !t.is_none());
                    Ok(Py::value(PyDateTime {
                        local: now.naive_utc(),
                        tz: tz.map(|t| super::time::tz_of(&t)).transpose()?,
                        pendulum: false,
                    }))
                }),
            ),
            (
                "utcnow",
                func(move |_, _| {
                    Ok(Py::value(PyDateTime {
                        local: now.naive_utc(),
                        tz: None,
                        pendulum: false,
                    }))
                }),
            ),
            (
                "fromtimestamp",
                func(|_, a| {
                    let (pos, kwargs) = split_args(a)?;
                    let secs = arg(pos, &kwargs, 0, "timestamp")
                        .and_then(|t| as_float(&t))
                        .unwrap_or(0.0);
                    let tz = arg(pos, &kwargs, 1, "tz").filter(|t| !t.is_none());
                    let t = chrono::DateTime::from_timestamp_micros((secs * 1e6).round() as i64)
                        .ok_or_else(|| py_err("OverflowError", "timestamp out of range"))?;
                    Ok(Py::value(PyDateTime {
                        local: t.naive_utc(),
                        tz: tz.map(|t| super::time::tz_of(&t)).transpose()?,
                        pendulum: false,
                    }))
                }),
            ),
        ],
    })
}

fn timedelta_class() -> Value {
    Py::value(PyModule {
        class: "datetime.timedelta",
        display: "<class 'datetime.timedelta'>".into(),
        call: Some(std::sync::Arc::new(|_: &State, a: &[Value]| {
            timedelta_ctor(a)
        })),
        members: vec![],
    })
}

fn time_module(now: chrono::DateTime<Utc>) -> Value {
    Py::value(PyModule {
        class: "module",
        display: "<module 'time' (built-in)>".into(),
        call: None,
        members: vec![
            ("time", func(move |_, _| Ok(now_timestamp(now)))),
            (
                "gmtime",
                func(move |_, a| {
                    let secs = a
                        .first()
                        .and_then(as_float)
                        .unwrap_or(now.timestamp() as f64);
                    gmtime(secs)
                }),
            ),
            (
                "localtime",
                func(move |_, a| {
                    let secs = a
                        .first()
                        .and_then(as_float)
                        .unwrap_or(now.timestamp() as f64);
                    gmtime(secs)
                }),
            ),
            (
                "strftime",
                func(move |_, a| {
                    let fmt = text(
                        a.first().unwrap_or(&Value::UNDEFINED),
                        "strftime() argument 1",
                    )?
                    .to_string();
                    let t = match a.get(1) {
                        Some(v) => *downcast::<PyDateTime>(v).ok_or_else(|| {
                            py_err("TypeError", "Tuple or struct_time argument required")
                        })?,
                        None => PyDateTime {
                            local: now.naive_utc(),
                            tz: None,
                            pendulum: false,
                        },
                    };
                    Ok(Value::from(strftime(t.local, t.tz, &fmt)))
                }),
            ),
        ],
    })
}

fn uuid_value(u: uuid::Uuid) -> Value {
    Py::value(PyUuid(u))
}

fn uuid_module() -> Value {
    let ns = |u: uuid::Uuid| Member::Const(uuid_value(u));
    Py::value(PyModule {
        class: "module",
        display: "<module 'uuid'>".into(),
        call: None,
        members: vec![
            ("uuid4", func(|_, _| Ok(uuid_value(uuid::Uuid::new_v4())))),
            (
                "uuid5",
                func(|_, a| {
                    let namespace = a
                        .first()
                        .and_then(|v| downcast::<PyUuid>(v))
                        .ok_or_else(|| py_err("TypeError", "uuid5() needs a UUID namespace"))?;
                    let name = text_arg(a, 1, "name", "uuid5")?;
                    Ok(uuid_value(uuid5(namespace.0, &name)))
                }),
            ),
            (
                "UUID",
                func(|_, a| {
                    let s = text_arg(a, 0, "hex", "UUID")?;
                    let u = uuid::Uuid::parse_str(s.trim_matches(['{', '}'])).map_err(|_| {
                        py_err("ValueError", "badly formed hexadecimal UUID string")
                    })?;
                    Ok(uuid_value(u))
                }),
            ),
            ("NAMESPACE_DNS", ns(uuid::Uuid::NAMESPACE_DNS)),
            ("NAMESPACE_URL", ns(uuid::Uuid::NAMESPACE_URL)),
            ("NAMESPACE_OID", ns(uuid::Uuid::NAMESPACE_OID)),
            ("NAMESPACE_X500", ns(uuid::Uuid::NAMESPACE_X500)),
        ],
    })
}

/// RFC 4122 version 5: SHA-1 of the namespace and the name.
fn uuid5(namespace: uuid::Uuid, name: &str) -> uuid::Uuid {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(namespace.as_bytes());
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

fn json_module() -> Value {
    Py::value(PyModule {
        class: "module",
        display: "<module 'json'>".into(),
        call: None,
        members: vec![
            (
                "dumps",
                func(|_, a| {
                    let (pos, kwargs) = split_args(a)?;
                    only_kwargs(
                        &kwargs,
                        &["sort_keys", "indent", "default", "ensure_ascii"],
                        "dumps",
                    )?;
                    let v = pos.first().cloned().unwrap_or_default();
                    let how = Dump {
                        sort_keys: arg(&[], &kwargs, 0, "sort_keys").is_some_and(|s| s.is_true()),
                        indent: arg(&[], &kwargs, 0, "indent")
                            .and_then(|i| as_int(&i))
                            .map(|i| i.clamp(0, 100) as usize),
                        html_safe: false,
                    };
                    Ok(Value::from(dumps(&v, how)?))
                }),
            ),
            ("loads", func(|_, a| loads(&text_arg(a, 0, "s", "loads")?))),
        ],
    })
}

/// pendulum's `diff_for_humans`: `1 day after`, `3 hours before`, `a few seconds after`.
fn diff_for_humans(args: &[Value], now: chrono::DateTime<Utc>) -> Result<Value, Error> {
    let (pos, kwargs) = split_args(args)?;
    let dt = arg(pos, &kwargs, 0, "dt").unwrap_or_default();
    let dt = *downcast::<PyDateTime>(&dt)
        .ok_or_else(|| py_err("TypeError", "datetime_diff_for_humans() needs a datetime"))?;
    let since = match arg(pos, &kwargs, 1, "since").filter(|s| !s.is_none()) {
        Some(s) => Some(*downcast::<PyDateTime>(&s).ok_or_else(|| {
            py_err(
                "TypeError",
                "datetime_diff_for_humans() needs a datetime for `since`",
            )
        })?),
        None => None,
    };
    let other = since.unwrap_or(PyDateTime::utc(now));
    let delta = dt.sub(&other)?;
    let secs = delta.micros / 1_000_000;
    let a = secs.unsigned_abs() as u64;
    let (count, unit) = if a >= 365 * 86_400 {
        (a / (365 * 86_400), "year")
    } else if a >= 30 * 86_400 {
        (a / (30 * 86_400), "month")
    } else if a >= 7 * 86_400 {
        (a / (7 * 86_400), "week")
    } else if a >= 86_400 {
        (a / 86_400, "day")
    } else if a >= 3600 {
        (a / 3600, "hour")
    } else if a >= 60 {
        (a / 60, "minute")
    } else {
        (a, "second")
    };
    let amount = if unit == "second" && count < 10 {
        "a few seconds".to_string()
    } else {
        format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
    };
    Ok(Value::from(match (since.is_none(), secs >= 0) {
        (true, true) => format!("in {amount}"),
        (true, false) => format!("{amount} ago"),
        (false, true) => format!("{amount} after"),
        (false, false) => format!("{amount} before"),
    }))
}
