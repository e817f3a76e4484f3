//! Python methods of plain values, as Jinja lets templates call them: `'a,b'.split(',')`,
//! `ds.replace('-', '')`, `'{}-{}'.format(a, b)`, `dag_run.conf.get('k', 'd')`,
//! `params.items()`. minijinja has none of them built in; it asks this module for every
//! method it does not know.
//!
//! Lists and dicts are values in minijinja, not shared objects, so the mutating methods
//! (`append`, `update`, …) fail with a message pointing at `namespace()` and filters.

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, State, Value};

use super::format::str_format;
use super::objects::PySeq;
use super::ops::{eq, Budget};
use super::value::{
    arg, as_int, items_of, kw, py_err, split_args, text, to_repr, to_str, type_name,
};

/// A method of a string, list or dict; `UnknownMethod` for anything else.
pub fn call(
    state: &State,
    value: &Value,
    name: &str,
    args: &[Value],
    budget: &dyn Budget,
) -> Result<Value, Error> {
    let _ = state;
    match value.kind() {
        ValueKind::String => str_method(value.as_str().unwrap_or_default(), name, args, budget),
        ValueKind::Map => dict_method(value, name, args),
        ValueKind::Seq => list_method(value, name, args),
        _ => Err(no_method(value, name)),
    }
}

fn no_method(value: &Value, name: &str) -> Error {
    Error::new(
        ErrorKind::UnknownMethod,
        format!(
            "AttributeError: '{}' object has no attribute '{name}'",
            type_name(value)
        ),
    )
}

fn read_only(kind: &str, name: &str) -> Error {
    py_err(
        "TypeError",
        format!(
            "{kind}.{name}() changes the {kind} in place, which updraft's templates do not allow \
             (values are immutable here); build a new value with filters, `+`, or `namespace()`"
        ),
    )
}

fn dict_method(d: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    let (pos, kwargs) = split_args(args)?;
    let keys = || d.try_iter().into_iter().flatten();
    Ok(match name {
        "get" => {
            let k = arg(pos, &kwargs, 0, "key").unwrap_or_default();
            let v = d.get_item(&k).unwrap_or_default();
            if v.is_undefined() {
                arg(pos, &kwargs, 1, "default").unwrap_or(Value::from(()))
            } else {
                v
            }
        }
        "items" => Value::from(
            keys()
                .map(|k| {
                    let v = d.get_item(&k).unwrap_or_default();
                    PySeq::tuple(vec![k, v])
                })
                .collect::<Vec<_>>(),
        ),
        "keys" => Value::from(keys().collect::<Vec<_>>()),
        "values" => Value::from(
            keys()
                .map(|k| d.get_item(&k).unwrap_or_default())
                .collect::<Vec<_>>(),
        ),
        "copy" => d.clone(),
        "update" | "pop" | "popitem" | "setdefault" | "clear" => {
            return Err(read_only("dict", name))
        }
        _ => return Err(no_method(d, name)),
    })
}

fn list_method(l: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    let items = items_of(l).unwrap_or_default();
    Ok(match (name, args) {
        ("index", [x, ..]) => Value::from(
            items
                .iter()
                .position(|i| eq(i, x))
                .ok_or_else(|| py_err("ValueError", format!("{} is not in list", to_repr(x))))?,
        ),
        ("count", [x]) => Value::from(items.iter().filter(|i| eq(i, x)).count()),
        ("copy", []) => l.clone(),
        ("append" | "extend" | "insert" | "pop" | "remove" | "sort" | "reverse" | "clear", _) => {
            return Err(read_only("list", name))
        }
        _ => return Err(no_method(l, name)),
    })
}

/// Python's `str.title()`: a cased character after an uncased one starts a word.
pub fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = c.is_alphabetic();
    }
    out
}

/// Python's `str.capitalize()`.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// `str.split(sep=None, maxsplit=-1)`, from the left or (`rsplit`) the right.
pub fn split(s: &str, sep: Option<&str>, maxsplit: i64, right: bool) -> Result<Vec<String>, Error> {
    let max = if maxsplit < 0 {
        usize::MAX
    } else {
        maxsplit as usize
    };
    match sep {
        Some("") => Err(py_err("ValueError", "empty separator")),
        Some(sep) if right => {
            let mut v: Vec<String> = s
                .rsplitn(max.saturating_add(1), sep)
                .map(String::from)
                .collect();
            v.reverse();
            Ok(v)
        }
        Some(sep) => Ok(s
            .splitn(max.saturating_add(1), sep)
            .map(String::from)
            .collect()),
        None => {
            let mut parts: Vec<String> = Vec::new();
            let mut rest = if right { s.trim_end() } else { s.trim_start() };
            while !rest.is_empty() {
                if parts.len() == max {
                    parts.push(
                        if right {
                            rest.trim_end()
                        } else {
                            rest.trim_start()
                        }
                        .to_string(),
                    );
                    break;
                }
                if right {
                    let cut = rest.rfind(char::is_whitespace);
                    match cut {
                        Some(i) => {
                            let w = rest[i..].chars().next().map_or(1, char::len_utf8);
                            parts.push(rest[i + w..].to_string());
                            rest = rest[..i].trim_end();
                        }
                        None => {
                            parts.push(rest.to_string());
                            rest = "";
                        }
                    }
                } else {
                    let cut = rest.find(char::is_whitespace);
                    match cut {
                        Some(i) => {
                            parts.push(rest[..i].to_string());
                            rest = rest[i..].trim_start();
                        }
                        None => {
                            parts.push(rest.to_string());
                            rest = "";
                        }
                    }
                }
            }
            if right {
                parts.reverse();
            }
            Ok(parts)
        }
    }
}

fn strip_chars<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let pred = |c: char| match chars {
        Some(set) => set.contains(c),
        None => c.is_whitespace(),
    };
    let s = if left { s.trim_start_matches(pred) } else { s };
    if right {
        s.trim_end_matches(pred)
    } else {
        s
    }
}

/// Python's `str.center`/`ljust`/`rjust` (`center` puts the odd fill on the right unless the
/// width is odd... exactly as CPython does).
pub fn justify(s: &str, width: usize, fill: char, how: char) -> String {
    let len = s.chars().count();
    if width <= len {
        return s.to_string();
    }
    let n = width - len;
    let f = |k: usize| fill.to_string().repeat(k);
    match how {
        '<' => format!("{s}{}", f(n)),
        '>' => format!("{}{s}", f(n)),
        _ => {
            let left = n / 2 + (n & width & 1);
            format!("{}{s}{}", f(left), f(n - left))
        }
    }
}

fn str_method(s: &str, name: &str, args: &[Value], budget: &dyn Budget) -> Result<Value, Error> {
    let (pos, kwargs) = split_args(args)?;
    let a = |i: usize, n: &str| arg(pos, &kwargs, i, n);
    let opt_text = |v: Option<Value>| -> Result<Option<String>, Error> {
        match v {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => Ok(Some(text(&v, "argument")?.to_string())),
        }
    };
    let int_arg = |v: Option<Value>, default: i64| -> Result<i64, Error> {
        match v {
            None => Ok(default),
            Some(v) if v.is_none() => Ok(default),
            Some(v) => as_int(&v).map(|i| i as i64).ok_or_else(|| {
                py_err(
                    "TypeError",
                    format!(
                        "'{}' object cannot be interpreted as an integer",
                        type_name(&v)
                    ),
                )
            }),
        }
    };
    let width = |v: Option<Value>| -> Result<usize, Error> {
        let w = int_arg(v, 0)?.max(0) as usize;
        budget.check(w)?;
        Ok(w)
    };
    let fill = |v: Option<Value>| -> Result<char, Error> {
        match opt_text(v)? {
            None => Ok(' '),
            Some(f) if f.chars().count() == 1 => Ok(f.chars().next().unwrap_or(' ')),
            Some(_) => Err(py_err(
                "TypeError",
                "The fill character must be exactly one character long",
            )),
        }
    };
    let strings = |v: Vec<String>| Value::from(v.into_iter().map(Value::from).collect::<Vec<_>>());
    let affix = |v: Option<Value>| -> Result<Vec<String>, Error> {
        let v = v.unwrap_or_default();
        if let Some(items) = items_of(&v) {
            return items
                .iter()
                .map(|i| Ok(text(i, "tuple item")?.to_string()))
                .collect();
        }
        Ok(vec![text(&v, "argument")?.to_string()])
    };
    let lower = |c: &str| c.chars().any(char::is_alphabetic);
    Ok(match name {
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "casefold" => Value::from(s.to_lowercase()),
        "swapcase" => Value::from(
            s.chars()
                .flat_map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().collect::<Vec<_>>()
                    } else {
                        c.to_uppercase().collect()
                    }
                })
                .collect::<String>(),
        ),
        "title" => Value::from(title(s)),
        "capitalize" => Value::from(capitalize(s)),
        "strip" => Value::from(strip_chars(
            s,
            opt_text(a(0, "chars"))?.as_deref(),
            true,
            true,
        )),
        "lstrip" => Value::from(strip_chars(
            s,
            opt_text(a(0, "chars"))?.as_deref(),
            true,
            false,
        )),
        "rstrip" => Value::from(strip_chars(
            s,
            opt_text(a(0, "chars"))?.as_deref(),
            false,
            true,
        )),
        "split" | "rsplit" => strings(split(
            s,
            opt_text(a(0, "sep"))?.as_deref(),
            int_arg(a(1, "maxsplit"), -1)?,
            name == "rsplit",
        )?),
        "splitlines" => strings(s.lines().map(String::from).collect()),
        "replace" => {
            let old = opt_text(a(0, "old"))?.unwrap_or_default();
            let new = opt_text(a(1, "new"))?.unwrap_or_default();
            let count = int_arg(a(2, "count"), -1)?;
            let hits = if old.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(&old).count()
            };
            let hits = if count < 0 {
                hits
            } else {
                hits.min(count as usize)
            };
            budget.check(s.len() + hits.saturating_mul(new.len()))?;
            Value::from(if count < 0 {
                s.replace(&old, &new)
            } else {
                s.replacen(&old, &new, count as usize)
            })
        }
        "startswith" => Value::from(
            affix(a(0, "prefix"))?
                .iter()
                .any(|p| s.starts_with(p.as_str())),
        ),
        "endswith" => Value::from(
            affix(a(0, "suffix"))?
                .iter()
                .any(|p| s.ends_with(p.as_str())),
        ),
        "removeprefix" => {
            let p = opt_text(a(0, "prefix"))?.unwrap_or_default();
            Value::from(s.strip_prefix(p.as_str()).unwrap_or(s))
        }
        "removesuffix" => {
            let p = opt_text(a(0, "suffix"))?.unwrap_or_default();
            Value::from(s.strip_suffix(p.as_str()).unwrap_or(s))
        }
        "find" | "index" | "rfind" | "rindex" => {
            let sub = opt_text(a(0, "sub"))?.unwrap_or_default();
            let found = if name.starts_with('r') {
                s.rfind(&sub)
            } else {
                s.find(&sub)
            };
            match found {
                Some(i) => Value::from(s[..i].chars().count()),
                None if name.ends_with("index") => {
                    return Err(py_err("ValueError", "substring not found"))
                }
                None => Value::from(-1),
            }
        }
        "count" => {
            let sub = opt_text(a(0, "sub"))?.unwrap_or_default();
            Value::from(if sub.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(&sub).count()
            })
        }
        "join" => {
            let items = items_of(&a(0, "iterable").unwrap_or_default())
                .ok_or_else(|| py_err("TypeError", "can only join an iterable"))?;
            let mut parts = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                parts.push(item.as_str().map(str::to_string).ok_or_else(|| {
                    py_err(
                        "TypeError",
                        format!(
                            "sequence item {i}: expected str instance, {} found",
                            type_name(item)
                        ),
                    )
                })?);
            }
            let out = parts.join(s);
            budget.check(out.len())?;
            Value::from(out)
        }
        "zfill" => {
            let w = width(a(0, "width"))?;
            let (sign, digits) = match s.strip_prefix(['-', '+']) {
                Some(rest) => (&s[..1], rest),
                None => ("", s),
            };
            let n = w.saturating_sub(s.chars().count());
            Value::from(format!("{sign}{}{digits}", "0".repeat(n)))
        }
        "center" => Value::from(justify(
            s,
            width(a(0, "width"))?,
            fill(a(1, "fillchar"))?,
            '^',
        )),
        "ljust" => Value::from(justify(
            s,
            width(a(0, "width"))?,
            fill(a(1, "fillchar"))?,
            '<',
        )),
        "rjust" => Value::from(justify(
            s,
            width(a(0, "width"))?,
            fill(a(1, "fillchar"))?,
            '>',
        )),
        "isdigit" | "isdecimal" | "isnumeric" => {
            Value::from(!s.is_empty() && s.chars().all(|c| c.is_numeric()))
        }
        "isalpha" => Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => Value::from(!s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "isspace" => Value::from(!s.is_empty() && s.chars().all(char::is_whitespace)),
        "islower" => Value::from(lower(s) && !s.chars().any(char::is_uppercase)),
        "isupper" => Value::from(lower(s) && !s.chars().any(char::is_lowercase)),
        "istitle" => Value::from(lower(s) && title(s) == s),
        "partition" | "rpartition" => {
            let sep = opt_text(a(0, "sep"))?.unwrap_or_default();
            if sep.is_empty() {
                return Err(py_err("ValueError", "empty separator"));
            }
            let found = if name == "partition" {
                s.find(&sep)
            } else {
                s.rfind(&sep)
            };
            let parts = match found {
                Some(i) => [&s[..i], sep.as_str(), &s[i + sep.len()..]],
                None if name == "partition" => [s, "", ""],
                None => ["", "", s],
            };
            PySeq::tuple(parts.iter().map(|p| Value::from(*p)).collect())
        }
        "format" => {
            let out = str_format(s, pos, &kwargs)?;
            budget.check(out.len())?;
            Value::from(out)
        }
        "format_map" => {
            let m = a(0, "mapping").unwrap_or_default();
            let pairs: Vec<(String, Value)> = m
                .try_iter()
                .into_iter()
                .flatten()
                .map(|k| (to_str(&k), m.get_item(&k).unwrap_or_default()))
                .collect();
            let kw_map = minijinja::value::Kwargs::from_iter(pairs);
            Value::from(str_format(s, &[], &Some(kw_map))?)
        }
        "encode" => {
            let _ = kw(&kwargs, "encoding");
            Value::from_bytes(s.as_bytes().to_vec())
        }
        _ => return Err(no_method(&Value::from(s), name)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_python() {
        let v = |s: &str, sep: Option<&str>, n: i64, r: bool| split(s, sep, n, r).unwrap();
        assert_eq!(v("a b  c", None, -1, false), ["a", "b", "c"]);
        assert_eq!(v("a,b,c", Some(","), 1, false), ["a", "b,c"]);
        assert_eq!(v("a,b,c", Some(","), 1, true), ["a,b", "c"]);
        assert_eq!(v("  a b  c ", None, 1, false), ["a", "b  c "]);
        assert_eq!(justify("x", 5, '*', '^'), "**x**");
        assert_eq!(justify("ab", 5, ' ', '^'), "  ab ");
        assert_eq!(title("hello world"), "Hello World");
    }
}
