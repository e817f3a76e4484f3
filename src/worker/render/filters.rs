//! Filters: Airflow's own (`ds`, `ds_nodash`, `ts`, `ts_nodash`, `ts_nodash_with_tz`) and
//! the Jinja filters whose minijinja versions print or round differently from Jinja's
//! (`round` rounds half to even, `int('3.9')` is 3, `items` gives tuples, `tojson` sorts keys
//! and escapes for HTML, `string`/`join` use Python's `str()`...). Filters minijinja already
//! has with Jinja's behaviour (`length`, `map`, `select`, `batch`, ...) are left to it.

use minijinja::value::ValueKind;
use minijinja::{Error, State, Value};

use super::objects::{PyNoneProxy, PySeq};
use super::ops::{add, Budget};
use super::pyjson::{dumps, Dump};
use super::textfilters::{
    capitalize_filter, center, escape, filesizeformat, format, indent, lower, parse_float, replace,
    strict, title, trim, truncate, upper, urlencode, wordcount,
};
use super::time::{strftime, PyDate, PyDateTime};
use super::value::{
    arg, as_float, as_int, downcast, int_value, is_float, items_of, py, py_err, split_args,
    to_repr, to_str, type_name, undefined_because,
};

/// A filter: the state, the filtered value and the filter's arguments (keywords last).
pub type FilterFn = fn(&State, &Value, &[Value], &dyn Budget) -> Result<Value, Error>;

/// Every filter this module defines, by name.
pub const FILTERS: &[(&str, FilterFn)] = &[
    ("ds", ds),
    ("ds_nodash", ds_nodash),
    ("ts", ts),
    ("ts_nodash", ts_nodash),
    ("ts_nodash_with_tz", ts_nodash_with_tz),
    ("string", string),
    ("join", join),
    ("int", int),
    ("float", float),
    ("round", round),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("capitalize", capitalize_filter),
    ("replace", replace),
    ("trim", trim),
    ("center", center),
    ("indent", indent),
    ("wordcount", wordcount),
    ("truncate", truncate),
    ("urlencode", urlencode),
    ("filesizeformat", filesizeformat),
    ("escape", escape),
    ("e", escape),
    ("list", list),
    ("items", items),
    ("dictsort", dictsort),
    ("first", first),
    ("last", last),
    ("sum", sum),
    ("reverse", reverse),
    ("tojson", tojson),
    ("pprint", pprint),
    ("format", format),
];

/// `value.strftime(fmt)` as Airflow's filters call it (`None` stays `None`).
fn date_format(v: &Value, fmt: &str) -> Result<Value, Error> {
    strict(v)?;
    if v.is_none() {
        return Ok(Value::from(()));
    }
    if let Some(d) = downcast::<PyDateTime>(v) {
        return Ok(Value::from(strftime(d.local, d.tz, fmt)));
    }
    if let Some(d) = downcast::<PyDate>(v) {
        return Ok(Value::from(strftime(
            d.date.and_time(chrono::NaiveTime::MIN),
            None,
            fmt,
        )));
    }
    Err(no_strftime(v, "strftime"))
}

fn no_strftime(v: &Value, attr: &str) -> Error {
    let ty = if downcast::<PyNoneProxy>(v).is_some() {
        "NoneType".to_string()
    } else {
        type_name(v)
    };
    py_err(
        "AttributeError",
        format!("'{ty}' object has no attribute '{attr}'"),
    )
}

fn isoformat(v: &Value) -> Result<Option<String>, Error> {
    strict(v)?;
    if v.is_none() {
        return Ok(None);
    }
    if let Some(d) = downcast::<PyDateTime>(v) {
        return Ok(Some(d.isoformat("T")));
    }
    if let Some(d) = downcast::<PyDate>(v) {
        return Ok(Some(d.date.format("%Y-%m-%d").to_string()));
    }
    Err(no_strftime(v, "isoformat"))
}

fn ds(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    date_format(v, "%Y-%m-%d")
}

fn ds_nodash(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    date_format(v, "%Y%m%d")
}

fn ts(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    Ok(Value::from(isoformat(v)?))
}

fn ts_nodash(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    date_format(v, "%Y%m%dT%H%M%S")
}

fn ts_nodash_with_tz(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    Ok(Value::from(
        isoformat(v)?.map(|s| s.replace(['-', ':'], "")),
    ))
}

fn string(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    Ok(Value::from(to_str(v)))
}

fn join(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let sep = arg(pos, &kwargs, 0, "d")
        .map(|s| to_str(&s))
        .unwrap_or_default();
    let attribute = arg(pos, &kwargs, 1, "attribute");
    let items = match v.as_str() {
        Some(s) => s.chars().map(Value::from).collect(),
        None => items_of(v).ok_or_else(|| {
            py_err(
                "TypeError",
                format!("'{}' object is not iterable", type_name(v)),
            )
        })?,
    };
    let parts: Vec<String> = items
        .iter()
        .map(|i| match &attribute {
            Some(a) => to_str(&i.get_item(a).unwrap_or_default()),
            None => to_str(i),
        })
        .collect();
    let out = parts.join(&sep);
    budget.check(out.len())?;
    Ok(Value::from(out))
}

/// Python's `int(text, base)`, with `0x`/`0o`/`0b` prefixes and `_` separators.
fn parse_int(s: &str, base: u32) -> Option<i128> {
    let t = s.trim().replace('_', "");
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, t.trim_start_matches('+').to_string()),
    };
    let lower = t.to_ascii_lowercase();
    let digits = match base {
        16 => lower.strip_prefix("0x").unwrap_or(&lower),
        8 => lower.strip_prefix("0o").unwrap_or(&lower),
        2 => lower.strip_prefix("0b").unwrap_or(&lower),
        _ => &lower,
    };
    let n = i128::from_str_radix(digits, base).ok()?;
    Some(if neg { -n } else { n })
}

fn int(_: &State, v: &Value, args: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let default = arg(pos, &kwargs, 0, "default").unwrap_or(Value::from(0));
    let base = arg(pos, &kwargs, 1, "base")
        .and_then(|b| as_int(&b))
        .unwrap_or(10) as u32;
    if let Some(s) = v.as_str() {
        if let Some(i) = parse_int(s, base) {
            return Ok(int_value(i));
        }
        return Ok(match parse_float(s).filter(|f| f.is_finite()) {
            Some(f) => int_value(f.trunc() as i128),
            None => default,
        });
    }
    if let Some(i) = as_int(v).filter(|_| !is_float(v)) {
        return Ok(int_value(i));
    }
    Ok(match as_float(v).filter(|f| f.is_finite()) {
        Some(f) => int_value(f.trunc() as i128),
        None => default,
    })
}

fn float(_: &State, v: &Value, args: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let default = arg(pos, &kwargs, 0, "default").unwrap_or(Value::from(0.0));
    Ok(match v.as_str() {
        Some(s) => parse_float(s).map(Value::from).unwrap_or(default),
        None => as_float(v).map(Value::from).unwrap_or(default),
    })
}

/// Python's `round(x, n)`: half to even on the exact binary value (which is what Rust's
/// fixed-precision formatting does too).
fn py_round(x: f64, n: i64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if n >= 0 {
        let s = format!("{x:.*}", n.min(300) as usize);
        s.parse().unwrap_or(x)
    } else {
        let p = 10f64.powi((-n) as i32);
        let q = x / p;
        let r = format!("{q:.0}").parse::<f64>().unwrap_or(q);
        r * p
    }
}

fn round(_: &State, v: &Value, args: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let precision = arg(pos, &kwargs, 0, "precision")
        .and_then(|p| as_int(&p))
        .unwrap_or(0) as i64;
    let method = arg(pos, &kwargs, 1, "method")
        .map(|m| to_str(&m))
        .unwrap_or("common".into());
    let x = as_float(v).ok_or_else(|| {
        py_err(
            "TypeError",
            format!("type {} doesn't define __round__ method", type_name(v)),
        )
    })?;
    let p = 10f64.powi(precision as i32);
    let r = match method.as_str() {
        "common" => py_round(x, precision),
        "ceil" => (x * p).ceil() / p,
        "floor" => (x * p).floor() / p,
        _ => {
            return Err(py_err(
                "FilterArgumentError",
                "method must be common, ceil or floor",
            ))
        }
    };
    Ok(Value::from(r))
}

fn list(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    if let Some(s) = v.as_str() {
        return Ok(Value::from(s.chars().map(Value::from).collect::<Vec<_>>()));
    }
    if v.kind() == ValueKind::Map && py(v).is_none() {
        return Ok(Value::from(v.try_iter()?.collect::<Vec<_>>()));
    }
    items_of(v).map(Value::from).ok_or_else(|| {
        py_err(
            "TypeError",
            format!("'{}' object is not iterable", type_name(v)),
        )
    })
}

fn pairs(v: &Value) -> Result<Vec<(Value, Value)>, Error> {
    strict(v)?;
    if v.kind() != ValueKind::Map || py(v).is_some() {
        return Err(py_err(
            "FilterArgumentError",
            "You can only sort by either \"key\" or \"value\" of a dict",
        ));
    }
    Ok(v.try_iter()?
        .map(|k| {
            let val = v.get_item(&k).unwrap_or_default();
            (k, val)
        })
        .collect())
}

fn items(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    if v.is_undefined() {
        return Ok(Value::from(Vec::<Value>::new()));
    }
    Ok(Value::from(
        pairs(v)?
            .into_iter()
            .map(|(k, val)| PySeq::tuple(vec![k, val]))
            .collect::<Vec<_>>(),
    ))
}

fn dictsort(_: &State, v: &Value, args: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    let (pos, kwargs) = split_args(args)?;
    let case_sensitive = arg(pos, &kwargs, 0, "case_sensitive").is_some_and(|c| c.is_true());
    let by_value = arg(pos, &kwargs, 1, "by").is_some_and(|b| b.as_str() == Some("value"));
    let reverse = arg(pos, &kwargs, 2, "reverse").is_some_and(|r| r.is_true());
    let mut p = pairs(v)?;
    let key = |x: &Value| -> Value {
        match x.as_str() {
            Some(s) if !case_sensitive => Value::from(s.to_lowercase()),
            _ => x.clone(),
        }
    };
    p.sort_by(|a, b| {
        let (x, y) = if by_value { (&a.1, &b.1) } else { (&a.0, &b.0) };
        super::ops::order(&key(x), &key(y), "<").unwrap_or(std::cmp::Ordering::Equal)
    });
    if reverse {
        p.reverse();
    }
    Ok(Value::from(
        p.into_iter()
            .map(|(k, val)| PySeq::tuple(vec![k, val]))
            .collect::<Vec<_>>(),
    ))
}

fn first(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let all = match v.as_str() {
        Some(s) => s.chars().map(Value::from).collect(),
        None => items_of(v).unwrap_or_default(),
    };
    Ok(match all.into_iter().next() {
        Some(x) => x,
        None => undefined_because(None, "No first item, sequence was empty.".into()),
    })
}

fn last(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let all: Vec<Value> = match v.as_str() {
        Some(s) => s.chars().map(Value::from).collect(),
        None => items_of(v).unwrap_or_default(),
    };
    Ok(match all.into_iter().last() {
        Some(x) => x,
        None => undefined_because(None, "No last item, sequence was empty.".into()),
    })
}

fn sum(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let attribute = arg(pos, &kwargs, 0, "attribute");
    let mut total = arg(pos, &kwargs, 1, "start").unwrap_or(Value::from(0));
    for item in items_of(v).unwrap_or_default() {
        let item = match &attribute {
            Some(a) => item.get_item(a).unwrap_or_default(),
            None => item,
        };
        total = add(&total, &item, budget)?;
    }
    Ok(total)
}

fn reverse(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    if let Some(s) = v.as_str() {
        return Ok(Value::from(s.chars().rev().collect::<String>()));
    }
    let mut all =
        items_of(v).ok_or_else(|| py_err("FilterArgumentError", "argument must be iterable"))?;
    all.reverse();
    Ok(Value::from(all))
}

fn tojson(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let indent = arg(pos, &kwargs, 0, "indent")
        .and_then(|i| as_int(&i))
        .map(|i| i.clamp(0, 100) as usize);
    let out = dumps(
        v,
        Dump {
            sort_keys: true,
            indent,
            html_safe: true,
        },
    )?;
    budget.check(out.len())?;
    Ok(Value::from_safe_string(out))
}

fn pprint(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    Ok(Value::from(to_repr(v)))
}
