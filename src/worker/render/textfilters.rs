//! Jinja's text filters with Jinja's exact output: `title`, `capitalize`, `replace`,
//! `trim`, `center`, `indent`, `wordcount`, `truncate`, `urlencode`, `filesizeformat`,
//! `escape`, `format`.

use minijinja::value::ValueKind;
use minijinja::{Error, State, Value};

use super::format::percent;
use super::methods::{capitalize, justify};
use super::objects::PySeq;
use super::ops::Budget;
use super::value::{arg, as_float, as_int, items_of, kw, py, py_err, split_args, to_str};

/// Fails for an undefined value (strict undefined: a filter never sees one silently).
pub fn strict(v: &Value) -> Result<(), Error> {
    if v.is_undefined() {
        return Err(Error::new(
            minijinja::ErrorKind::UndefinedError,
            "undefined value",
        ));
    }
    Ok(())
}

/// The filtered value as text.
pub fn text_of(v: &Value) -> Result<String, Error> {
    strict(v)?;
    Ok(to_str(v))
}

/// Python's `float(text)`.
pub fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "nan" | "+nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => t.replace('_', "").parse().ok(),
    }
}

pub fn upper(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    Ok(Value::from(text_of(v)?.to_uppercase()))
}

pub fn lower(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    Ok(Value::from(text_of(v)?.to_lowercase()))
}

/// Jinja's `title`: words start after whitespace, `-`, and opening brackets.
pub fn title(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_whitespace() || matches!(c, '-' | '(' | '{' | '[' | '<') {
            start = true;
            out.push(c);
        } else if start {
            out.extend(c.to_uppercase());
            start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    Ok(Value::from(out))
}

pub fn capitalize_filter(
    _: &State,
    v: &Value,
    _: &[Value],
    _: &dyn Budget,
) -> Result<Value, Error> {
    Ok(Value::from(capitalize(&text_of(v)?)))
}

pub fn replace(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let (pos, kwargs) = split_args(args)?;
    let old = arg(pos, &kwargs, 0, "old")
        .map(|x| to_str(&x))
        .unwrap_or_default();
    let new = arg(pos, &kwargs, 1, "new")
        .map(|x| to_str(&x))
        .unwrap_or_default();
    let count = arg(pos, &kwargs, 2, "count").and_then(|c| as_int(&c));
    let hits = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(&old).count()
    };
    budget.check(s.len() + hits.saturating_mul(new.len()))?;
    Ok(Value::from(match count {
        Some(n) if n >= 0 => s.replacen(&old, &new, n as usize),
        _ => s.replace(&old, &new),
    }))
}

pub fn trim(_: &State, v: &Value, args: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let (pos, kwargs) = split_args(args)?;
    Ok(Value::from(
        match arg(pos, &kwargs, 0, "chars").filter(|c| !c.is_none()) {
            Some(chars) => {
                let set = to_str(&chars);
                s.trim_matches(|c| set.contains(c)).to_string()
            }
            None => s.trim().to_string(),
        },
    ))
}

pub fn center(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let (pos, kwargs) = split_args(args)?;
    let width = arg(pos, &kwargs, 0, "width")
        .and_then(|w| as_int(&w))
        .unwrap_or(80)
        .max(0) as usize;
    budget.check(width)?;
    Ok(Value::from(justify(&s, width, ' ', '^')))
}

pub fn indent(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let (pos, kwargs) = split_args(args)?;
    let width = arg(pos, &kwargs, 0, "width").unwrap_or(Value::from(4));
    let pad = match width.as_str() {
        Some(p) => p.to_string(),
        None => " ".repeat(as_int(&width).unwrap_or(4).clamp(0, 1000) as usize),
    };
    let first = arg(pos, &kwargs, 1, "first").is_some_and(|f| f.is_true());
    let blank = arg(pos, &kwargs, 2, "blank").is_some_and(|b| b.is_true());
    let s = format!("{s}\n");
    let lines: Vec<&str> = s.lines().collect();
    budget.check(s.len() + lines.len() * pad.len())?;
    let mut rv = if blank {
        lines.join(&format!("\n{pad}"))
    } else {
        let mut it = lines.iter();
        let mut rv = it.next().map(|l| l.to_string()).unwrap_or_default();
        let rest: Vec<String> = it
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{pad}{l}")
                }
            })
            .collect();
        if !rest.is_empty() {
            rv.push('\n');
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first {
        rv = format!("{pad}{rv}");
    }
    Ok(Value::from(rv))
}

pub fn wordcount(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let n = s
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .count();
    Ok(Value::from(n))
}

pub fn truncate(_: &State, v: &Value, args: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    let s = text_of(v)?;
    let (pos, kwargs) = split_args(args)?;
    let length = arg(pos, &kwargs, 0, "length")
        .and_then(|l| as_int(&l))
        .unwrap_or(255)
        .max(0) as usize;
    let killwords = arg(pos, &kwargs, 1, "killwords").is_some_and(|k| k.is_true());
    let end = arg(pos, &kwargs, 2, "end")
        .map(|e| to_str(&e))
        .unwrap_or("...".into());
    let leeway = arg(pos, &kwargs, 3, "leeway")
        .and_then(|l| as_int(&l))
        .unwrap_or(5)
        .max(0) as usize;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= length + leeway {
        return Ok(Value::from(s));
    }
    let keep = length.saturating_sub(end.chars().count());
    let head: String = chars[..keep.min(chars.len())].iter().collect();
    if killwords {
        return Ok(Value::from(head + &end));
    }
    let cut = match head.rfind(' ') {
        Some(i) => head[..i].to_string(),
        None => head,
    };
    Ok(Value::from(cut + &end))
}

/// Python's `urllib.parse.quote` (always-safe `A-Za-z0-9_.-~` plus `safe`).
pub fn quote(s: &str, safe: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric() || "_.-~".contains(c) || safe.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn urlencode(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    let qs = |x: &Value| quote(&to_str(x), "").replace("%20", "+");
    if v.kind() == ValueKind::Map && py(v).is_none() {
        let parts: Vec<String> = v
            .try_iter()
            .into_iter()
            .flatten()
            .map(|k| format!("{}={}", qs(&k), qs(&v.get_item(&k).unwrap_or_default())))
            .collect();
        return Ok(Value::from(parts.join("&")));
    }
    if v.as_str().is_none() {
        if let Some(items) = items_of(v) {
            let parts: Vec<String> = items
                .iter()
                .map(|p| {
                    let kv = items_of(p).unwrap_or_default();
                    format!(
                        "{}={}",
                        qs(kv.first().unwrap_or(&Value::from(""))),
                        qs(kv.get(1).unwrap_or(&Value::from("")))
                    )
                })
                .collect();
            return Ok(Value::from(parts.join("&")));
        }
    }
    Ok(Value::from(quote(&to_str(v), "/")))
}

pub fn filesizeformat(
    _: &State,
    v: &Value,
    args: &[Value],
    _: &dyn Budget,
) -> Result<Value, Error> {
    strict(v)?;
    let (pos, kwargs) = split_args(args)?;
    let binary = arg(pos, &kwargs, 0, "binary").is_some_and(|b| b.is_true());
    let bytes = as_float(v)
        .or_else(|| v.as_str().and_then(parse_float))
        .unwrap_or(0.0);
    let base: f64 = if binary { 1024.0 } else { 1000.0 };
    let prefixes = if binary {
        ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    } else {
        ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    };
    if bytes == 1.0 {
        return Ok(Value::from("1 Byte"));
    }
    if bytes < base {
        return Ok(Value::from(format!("{} Bytes", bytes as i64)));
    }
    let mut unit = base;
    for (i, p) in prefixes.iter().enumerate() {
        unit = base.powi(i as i32 + 2);
        if bytes < unit {
            return Ok(Value::from(format!("{:.1} {p}", base * bytes / unit)));
        }
    }
    Ok(Value::from(format!(
        "{:.1} {}",
        base * bytes / unit,
        prefixes[7]
    )))
}

pub fn escape(_: &State, v: &Value, _: &[Value], _: &dyn Budget) -> Result<Value, Error> {
    strict(v)?;
    if v.is_safe() {
        return Ok(v.clone());
    }
    let s = to_str(v);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Ok(Value::from_safe_string(out))
}

pub fn format(_: &State, v: &Value, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    let fmt = text_of(v)?;
    let (pos, kwargs) = split_args(args)?;
    let out = match (&kwargs, pos.is_empty()) {
        (Some(k), true) => {
            let m: Vec<(String, Value)> = k
                .args()
                .map(|name| (name.to_string(), kw(&kwargs, name).unwrap_or_default()))
                .collect();
            percent(&fmt, &Value::from_iter(m))?
        }
        (Some(_), false) => {
            return Err(py_err(
                "FilterArgumentError",
                "can't handle positional and keyword arguments at the same time",
            ))
        }
        (None, _) => percent(&fmt, &PySeq::tuple(pos.to_vec()))?,
    };
    budget.check(out.len())?;
    Ok(Value::from(out))
}
