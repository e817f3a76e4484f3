//! Python's view of template values: `str()` and `repr()` as Airflow's output shows them
//! (`True`, `None`, `['a', 'b']`, `{'k': 1}`, `1e+20`), Python type names for error messages,
//! and the one protocol every object of ours speaks ([`PyObject`]).
//!
//! Airflow renders a template field with Jinja and then `str()` of the result, so every
//! `{{ … }}` prints what Python would print. minijinja prints JSON-ish values; the formatter
//! installed by `compile` calls [`to_str`] instead.
//!
//! Every object a template can meet that is not a plain value (datetimes, the DAG, `ti`,
//! `macros`, tuples…) is a [`Py`]: one minijinja object wrapping a [`PyObject`], so the
//! formatting and operator code here and in `ops` can ask any of them for its `str`, `repr`,
//! class name or concrete type without knowing the files that define them.

use std::any::Any;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// A Python object of ours, seen by templates.
pub trait PyObject: fmt::Debug + Send + Sync + 'static {
    /// `module.Class`, as Jinja's "'x object' has no attribute" message names it.
    fn class(&self) -> &'static str;
    /// The short type name Python's `TypeError`s use (`datetime.datetime`, `tuple`).
    fn type_name(&self) -> &'static str {
        self.class()
    }
    fn str(&self) -> String;
    fn repr(&self) -> String {
        self.str()
    }
    /// An attribute (`None`: Python would raise `AttributeError`).
    fn attr(&self, _name: &str) -> Option<Value> {
        None
    }
    /// An attribute whose lookup can fail with an error of its own (a missing variable is
    /// `AirflowRuntimeError`, not an undefined value); by default [`Self::attr`].
    fn try_attr(&self, name: &str) -> Result<Option<Value>, Error> {
        Ok(self.attr(name))
    }
    /// A method call; `Err(UnknownMethod)` when there is no such method.
    fn call_method(&self, _state: &State, _name: &str, _args: &[Value]) -> Result<Value, Error> {
        Err(Error::from(ErrorKind::UnknownMethod))
    }
    fn call(&self, _state: &State, _args: &[Value]) -> Result<Value, Error> {
        Err(py_err(
            "TypeError",
            format!("'{}' object is not callable", self.type_name()),
        ))
    }
    fn truthy(&self) -> bool {
        true
    }
    /// Items, for sequences (tuples, sets, ranges).
    fn items(&self) -> Option<Vec<Value>> {
        None
    }
    /// Python `==` against any value; `None`: not comparable, so unequal.
    fn eq(&self, _other: &Value) -> Option<bool> {
        None
    }
    /// Python `<`/`>` against a value of a comparable type; `None`: `TypeError`.
    fn cmp(&self, _other: &Value) -> Option<Ordering> {
        None
    }
    fn as_any(&self) -> &dyn Any;
}

/// The minijinja object around every [`PyObject`].
#[derive(Debug)]
pub struct Py(pub Box<dyn PyObject>);

impl Py {
    pub fn value(obj: impl PyObject) -> Value {
        Value::from_object(Py(Box::new(obj)))
    }
}

/// The concrete object of ours inside `v`, if it is a `T`.
pub fn downcast<T: 'static>(v: &Value) -> Option<&T> {
    v.downcast_object_ref::<Py>()?
        .0
        .as_any()
        .downcast_ref::<T>()
}

/// Any object of ours inside `v`.
pub fn py(v: &Value) -> Option<&dyn PyObject> {
    v.downcast_object_ref::<Py>().map(|p| p.0.as_ref())
}

impl Object for Py {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.0.items().is_some() {
            ObjectRepr::Seq
        } else {
            ObjectRepr::Plain
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(items) = self.0.items() {
            let i = key.as_i64()?;
            let i = if i < 0 { items.len() as i64 + i } else { i };
            return items.get(usize::try_from(i).ok()?).cloned();
        }
        self.0.try_attr(key.as_str()?).ok().flatten()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.0.items() {
            Some(items) => Enumerator::Values(items),
            None => Enumerator::NonEnumerable,
        }
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.0.truthy()
    }

    fn call(self: &Arc<Self>, state: &State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        self.0.call(state, args)
    }

    fn call_method(
        self: &Arc<Self>,
        state: &State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        self.0.call_method(state, method, args)
    }

    fn custom_cmp(self: &Arc<Self>, other: &minijinja::value::DynObject) -> Option<Ordering> {
        other.downcast_ref::<Py>()?;
        self.0.cmp(&Value::from_dyn_object(other.clone()))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.str())
    }
}

thread_local! {
    /// Why values became undefined during the current render, newest last, with the source
    /// offset of the expression when known. minijinja's undefined carries no reason; Jinja's
    /// `StrictUndefined` does, and its message is what a user needs to see ("'dict object'
    /// has no attribute 'x'"). A render runs on one thread from start to end, so the reasons
    /// of one render never mix with another's; `compile` clears them before each render.
    static UNDEFINED_WHY: RefCell<Vec<(Option<u32>, String)>> = const { RefCell::new(Vec::new()) };
}

/// An undefined value, noting why (Jinja's "hint") for the error message if it is used.
pub fn undefined_because(at: Option<u32>, why: String) -> Value {
    UNDEFINED_WHY.with(|w| {
        let mut w = w.borrow_mut();
        if w.len() < 64 {
            w.push((at, why));
        }
    });
    Value::UNDEFINED
}

/// The reasons noted since the last call, oldest first; clears them.
pub fn take_undefined_reasons() -> Vec<(Option<u32>, String)> {
    UNDEFINED_WHY.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

/// An error carrying a Python exception class and message, as Airflow would raise it
/// (`TypeError: unsupported operand type(s) for +: 'int' and 'str'`).
pub fn py_err(class: &str, message: impl fmt::Display) -> Error {
    let kind = match class {
        "UndefinedError" => ErrorKind::UndefinedError,
        _ => ErrorKind::InvalidOperation,
    };
    Error::new(kind, format!("{class}: {message}"))
}

/// Positional arguments and keyword arguments of a call (minijinja passes keywords last).
pub fn split_args(args: &[Value]) -> Result<(&[Value], Option<Kwargs>), Error> {
    match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => Ok((rest, Some(Kwargs::try_from(last.clone())?))),
        _ => Ok((args, None)),
    }
}

/// A keyword argument, if given.
pub fn kw(kwargs: &Option<Kwargs>, name: &str) -> Option<Value> {
    kwargs
        .as_ref()
        .filter(|k| k.has(name))
        .and_then(|k| k.peek::<Value>(name).ok())
}

/// The argument at `pos`, or the keyword `name`.
pub fn arg(args: &[Value], kwargs: &Option<Kwargs>, pos: usize, name: &str) -> Option<Value> {
    args.get(pos).cloned().or_else(|| kw(kwargs, name))
}

/// Fails when a keyword the callee does not know was passed.
pub fn only_kwargs(kwargs: &Option<Kwargs>, allowed: &[&str], callee: &str) -> Result<(), Error> {
    if let Some(k) = kwargs {
        if let Some(bad) = k.args().find(|a| !allowed.contains(a)) {
            return Err(py_err(
                "TypeError",
                format!("{callee}() got an unexpected keyword argument '{bad}'"),
            ));
        }
    }
    Ok(())
}

/// An integer in Python's sense (bools count, as `True + 1 == 2`).
pub fn as_int(v: &Value) -> Option<i128> {
    match v.kind() {
        ValueKind::Bool => Some(v.is_true() as i128),
        ValueKind::Number if v.is_integer() => i128::try_from(v.clone()).ok(),
        _ => None,
    }
}

/// A number as a float (ints and bools too).
pub fn as_float(v: &Value) -> Option<f64> {
    match v.kind() {
        ValueKind::Bool => Some(v.is_true() as i64 as f64),
        ValueKind::Number if v.is_integer() => as_int(v).map(|i| i as f64),
        ValueKind::Number => f64::try_from(v.clone()).ok(),
        _ => None,
    }
}

pub fn is_float(v: &Value) -> bool {
    v.kind() == ValueKind::Number && !v.is_integer()
}

pub fn is_number(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
}

/// An int as a minijinja value (i64 when it fits, so other code sees a plain integer).
pub fn int_value(i: i128) -> Value {
    match i64::try_from(i) {
        Ok(i) => Value::from(i),
        Err(_) => Value::from(i),
    }
}

/// The text of a string argument, or a `TypeError` naming what it was.
pub fn text<'a>(v: &'a Value, what: &str) -> Result<&'a str, Error> {
    v.as_str().ok_or_else(|| {
        py_err(
            "TypeError",
            format!("{what} must be str, not {}", type_name(v)),
        )
    })
}

/// The items of a list, tuple, set or other iterable, or `None` for anything else.
pub fn items_of(v: &Value) -> Option<Vec<Value>> {
    if let Some(p) = py(v) {
        return p.items();
    }
    match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => v.try_iter().ok().map(|it| it.collect()),
        _ => None,
    }
}

/// Python's type name, for error messages (`'int'`, `'str'`, `'NoneType'`).
pub fn type_name(v: &Value) -> String {
    if let Some(p) = py(v) {
        return p.type_name().to_string();
    }
    match v.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
    .to_string()
}

/// Jinja's `object_type_repr`, as in "'dict object' has no attribute 'x'".
pub fn object_type_repr(v: &Value) -> String {
    if v.is_none() {
        return "None".into();
    }
    if let Some(p) = py(v) {
        return format!("{} object", p.class());
    }
    format!("{} object", type_name(v))
}

/// `str(v)`.
pub fn to_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => {
            let mut out = String::new();
            write_value(&mut out, v, false);
            out
        }
    }
}

/// `repr(v)`.
pub fn to_repr(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, true);
    out
}

fn write_value(out: &mut String, v: &Value, repr: bool) {
    if let Some(p) = py(v) {
        out.push_str(&if repr { p.repr() } else { p.str() });
        return;
    }
    match v.kind() {
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => out.push_str(&float_repr(as_float(v).unwrap_or(f64::NAN))),
        ValueKind::String if repr => str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::String => out.push_str(v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            write_items(out, v.try_iter().into_iter().flatten(), "[", "]")
        }
        ValueKind::Map => write_map(out, v),
        _ => out.push_str(&v.to_string()),
    }
}

/// `[a, b]` / `(a,)` / `{a, b}` with each item's repr.
pub fn write_items(out: &mut String, items: impl Iterator<Item = Value>, open: &str, close: &str) {
    out.push_str(open);
    let mut n = 0;
    for item in items {
        if n > 0 {
            out.push_str(", ");
        }
        write_value(out, &item, true);
        n += 1;
    }
    if open == "(" && n == 1 {
        out.push(',');
    }
    out.push_str(close);
}

fn write_map(out: &mut String, v: &Value) {
    out.push('{');
    for (i, key) in v.try_iter().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_value(out, &key, true);
        out.push_str(": ");
        write_value(out, &v.get_item(&key).unwrap_or_default(), true);
    }
    out.push('}');
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
pub fn str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !printable(c) => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for one character (close enough: controls, separators other
/// than the space, and format characters are not).
fn printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{a0}' | '\u{ad}' | '\u{1680}' | '\u{2000}'..='\u{200f}' | '\u{2028}'..='\u{202f}'
            | '\u{205f}'..='\u{2064}' | '\u{3000}' | '\u{feff}'))
}

/// Python's `repr(float)`: the shortest text that reads back the same, in fixed notation
/// for exponents -4..16 and `1e+20` style outside.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let body = if (-4..16).contains(&exp) {
        let point = exp + 1;
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        }
    } else {
        let m = if digits.len() == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_does() {
        for (f, want) in [
            (1.0, "1.0"),
            (2.5, "2.5"),
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1709618828.123456, "1709618828.123456"),
        ] {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn containers_print_their_items_repr() {
        let mut s = String::new();
        str_repr(&mut s, "it's");
        assert_eq!(s, "\"it's\"");
        let v = Value::from_serialize(
            serde_json::json!({"k": null, "b": [1, 2], "a": {"x": true}, "s": "é\n"}),
        );
        assert_eq!(
            to_str(&v),
            "{'k': None, 'b': [1, 2], 'a': {'x': True}, 's': 'é\\n'}"
        );
    }
}
