//! Python's operators. `compile` rewrites every `+ - * / // % ** ~` and comparison in a
//! template into a call of these, so `logical_date + macros.timedelta(days=1)`, `6 / 2`
//! (`3.0`), `-7 // 2` (`-4`), `'%s' % x`, `'ab' * 3` and `dag_run.run_type == 'scheduled'`
//! behave as in Airflow, and a wrong one fails with Python's `TypeError` text.
//!
//! Strings and lists built here count against the render's output budget, so `'x' * 10**9`
//! fails instead of exhausting memory.

use std::cmp::Ordering;

use minijinja::value::ValueKind;
use minijinja::{Error, Value};

use super::format::percent;
use super::objects::{PyNoneProxy, PySeq, SeqKind};
use super::time::{PyDate, PyDateTime, PyTimedelta};
use super::value::{
    as_float, as_int, downcast, int_value, is_float, is_number, items_of, py, py_err, to_str,
    type_name, Py,
};

/// Limits a render's strings; set per render by `compile`.
pub trait Budget {
    /// Fails when a value of `len` bytes would exceed what a render may produce.
    fn check(&self, len: usize) -> Result<(), Error>;
}

fn unsupported(op: &str, a: &Value, b: &Value) -> Error {
    py_err(
        "TypeError",
        format!(
            "unsupported operand type(s) for {op}: '{}' and '{}'",
            type_name(a),
            type_name(b)
        ),
    )
}

fn int_overflow() -> Error {
    py_err(
        "OverflowError",
        "integer result too large for updraft's templates (128 bits)",
    )
}

fn is_list(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) && py(v).is_none()
}

fn seq_kind(v: &Value) -> Option<SeqKind> {
    downcast::<PySeq>(v).map(|s| s.kind)
}

/// `a + b`.
pub fn add(a: &Value, b: &Value, budget: &dyn Budget) -> Result<Value, Error> {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        budget.check(x.len() + y.len())?;
        return Ok(Value::from([x, y].concat()));
    }
    if is_number(a) && is_number(b) {
        return arith(a, b, "+", |x, y| x.checked_add(y), |x, y| x + y);
    }
    if let (Some(x), Some(y)) = (downcast::<PyDateTime>(a), downcast::<PyTimedelta>(b)) {
        return Ok(Py::value(x.add_micros(y.micros)?));
    }
    if let (Some(x), Some(y)) = (downcast::<PyTimedelta>(a), downcast::<PyDateTime>(b)) {
        return Ok(Py::value(y.add_micros(x.micros)?));
    }
    if let (Some(x), Some(y)) = (downcast::<PyTimedelta>(a), downcast::<PyTimedelta>(b)) {
        return Ok(Py::value(PyTimedelta::micros(x.micros + y.micros)));
    }
    if let (Some(x), Some(y)) = (downcast::<PyDate>(a), downcast::<PyTimedelta>(b)) {
        let days = y.micros.div_euclid(86_400_000_000) as i64;
        let date = x
            .date
            .checked_add_signed(chrono::Duration::days(days))
            .ok_or_else(|| py_err("OverflowError", "date value out of range"))?;
        return Ok(Py::value(PyDate { date, ..*x }));
    }
    let same_seq = (is_list(a) && is_list(b))
        || (seq_kind(a) == Some(SeqKind::Tuple) && seq_kind(b) == Some(SeqKind::Tuple));
    if same_seq {
        let mut items = items_of(a).unwrap_or_default();
        items.extend(items_of(b).unwrap_or_default());
        budget.check(items.len() * 8)?;
        return Ok(if is_list(a) {
            Value::from(items)
        } else {
            PySeq::tuple(items)
        });
    }
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    if a.as_str().is_some() {
        return Err(py_err(
            "TypeError",
            format!("can only concatenate str (not \"{}\") to str", type_name(b)),
        ));
    }
    if is_list(a) {
        return Err(py_err(
            "TypeError",
            format!(
                "can only concatenate list (not \"{}\") to list",
                type_name(b)
            ),
        ));
    }
    Err(unsupported("+", a, b))
}

fn undefined_operand() -> Error {
    Error::new(minijinja::ErrorKind::UndefinedError, "undefined value")
}

/// `a - b`.
pub fn sub(a: &Value, b: &Value) -> Result<Value, Error> {
    if is_number(a) && is_number(b) {
        return arith(a, b, "-", |x, y| x.checked_sub(y), |x, y| x - y);
    }
    if let (Some(x), Some(y)) = (downcast::<PyDateTime>(a), downcast::<PyTimedelta>(b)) {
        return Ok(Py::value(x.add_micros(-y.micros)?));
    }
    if let (Some(x), Some(y)) = (downcast::<PyDateTime>(a), downcast::<PyDateTime>(b)) {
        return Ok(Py::value(x.sub(y)?));
    }
    if let (Some(x), Some(y)) = (downcast::<PyTimedelta>(a), downcast::<PyTimedelta>(b)) {
        return Ok(Py::value(PyTimedelta::micros(x.micros - y.micros)));
    }
    if let (Some(x), Some(y)) = (downcast::<PyDate>(a), downcast::<PyDate>(b)) {
        return Ok(Py::value(PyTimedelta::micros(
            (x.date - y.date).num_days() as i128 * 86_400_000_000,
        )));
    }
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    Err(unsupported("-", a, b))
}

/// `a * b`.
pub fn mul(a: &Value, b: &Value, budget: &dyn Budget) -> Result<Value, Error> {
    if is_number(a) && is_number(b) {
        return arith(a, b, "*", |x, y| x.checked_mul(y), |x, y| x * y);
    }
    let repeat = |seq: &Value, n: &Value| -> Option<Result<Value, Error>> {
        let n = as_int(n).filter(|_| !is_float(n))?.max(0) as usize;
        if let Some(s) = seq.as_str() {
            return Some(
                budget
                    .check(s.len().saturating_mul(n))
                    .map(|_| Value::from(s.repeat(n))),
            );
        }
        if is_list(seq) || seq_kind(seq) == Some(SeqKind::Tuple) {
            let items = items_of(seq).unwrap_or_default();
            return Some(
                budget
                    .check(items.len().saturating_mul(n).saturating_mul(8))
                    .map(|_| {
                        let all: Vec<Value> = (0..n).flat_map(|_| items.iter().cloned()).collect();
                        if is_list(seq) {
                            Value::from(all)
                        } else {
                            PySeq::tuple(all)
                        }
                    }),
            );
        }
        None
    };
    if let Some(r) = repeat(a, b).or_else(|| repeat(b, a)) {
        return r;
    }
    if let (Some(d), Some(f)) = (downcast::<PyTimedelta>(a), as_float(b)) {
        return Ok(Py::value(PyTimedelta::micros(
            (d.micros as f64 * f).round() as i128,
        )));
    }
    if let (Some(f), Some(d)) = (as_float(a), downcast::<PyTimedelta>(b)) {
        return Ok(Py::value(PyTimedelta::micros(
            (d.micros as f64 * f).round() as i128,
        )));
    }
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    Err(unsupported("*", a, b))
}

/// `a / b`: always a float for numbers.
pub fn truediv(a: &Value, b: &Value) -> Result<Value, Error> {
    if is_number(a) && is_number(b) {
        let (x, y) = (as_float(a).unwrap_or(0.0), as_float(b).unwrap_or(0.0));
        if y == 0.0 {
            return Err(py_err(
                "ZeroDivisionError",
                if is_float(a) || is_float(b) {
                    "float division by zero"
                } else {
                    "division by zero"
                },
            ));
        }
        if let (Some(i), Some(j)) = (as_int(a), as_int(b)) {
            if !is_float(a) && !is_float(b) {
                // Exact when both fit a float's mantissa, as Python's true division is.
                return Ok(Value::from(i as f64 / j as f64));
            }
        }
        return Ok(Value::from(x / y));
    }
    if let (Some(d), Some(e)) = (downcast::<PyTimedelta>(a), downcast::<PyTimedelta>(b)) {
        if e.micros == 0 {
            return Err(py_err("ZeroDivisionError", "division by zero"));
        }
        return Ok(Value::from(d.micros as f64 / e.micros as f64));
    }
    if let (Some(d), Some(f)) = (downcast::<PyTimedelta>(a), as_float(b)) {
        if f == 0.0 {
            return Err(py_err("ZeroDivisionError", "division by zero"));
        }
        return Ok(Py::value(PyTimedelta::micros(
            (d.micros as f64 / f).round() as i128,
        )));
    }
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    Err(unsupported("/", a, b))
}

/// `a // b`: floor division.
pub fn floordiv(a: &Value, b: &Value) -> Result<Value, Error> {
    if is_number(a) && is_number(b) {
        if !is_float(a) && !is_float(b) {
            let (x, y) = (as_int(a).unwrap_or(0), as_int(b).unwrap_or(0));
            if y == 0 {
                return Err(py_err(
                    "ZeroDivisionError",
                    "integer division or modulo by zero",
                ));
            }
            let q = x / y;
            let floor = if x % y != 0 && ((x < 0) != (y < 0)) {
                q - 1
            } else {
                q
            };
            return Ok(int_value(floor));
        }
        let (x, y) = (as_float(a).unwrap_or(0.0), as_float(b).unwrap_or(0.0));
        if y == 0.0 {
            return Err(py_err("ZeroDivisionError", "float floor division by zero"));
        }
        return Ok(Value::from((x / y).floor()));
    }
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    Err(unsupported("//", a, b))
}

/// `a % b`: Python's modulo (sign of the divisor), or printf formatting for strings.
pub fn rem(a: &Value, b: &Value, budget: &dyn Budget) -> Result<Value, Error> {
    if let Some(fmt) = a.as_str() {
        let s = percent(fmt, b)?;
        budget.check(s.len())?;
        return Ok(Value::from(s));
    }
    if is_number(a) && is_number(b) {
        if !is_float(a) && !is_float(b) {
            let (x, y) = (as_int(a).unwrap_or(0), as_int(b).unwrap_or(0));
            if y == 0 {
                return Err(py_err(
                    "ZeroDivisionError",
                    "integer division or modulo by zero",
                ));
            }
            let r = x % y;
            return Ok(int_value(if r != 0 && (r < 0) != (y < 0) {
                r + y
            } else {
                r
            }));
        }
        let (x, y) = (as_float(a).unwrap_or(0.0), as_float(b).unwrap_or(0.0));
        if y == 0.0 {
            return Err(py_err("ZeroDivisionError", "float modulo"));
        }
        let r = x % y;
        return Ok(Value::from(if r != 0.0 && (r < 0.0) != (y < 0.0) {
            r + y
        } else {
            r
        }));
    }
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    Err(unsupported("%", a, b))
}

/// `a ** b`.
pub fn pow(a: &Value, b: &Value) -> Result<Value, Error> {
    if !(is_number(a) && is_number(b)) {
        if a.is_undefined() || b.is_undefined() {
            return Err(undefined_operand());
        }
        return Err(unsupported("** or pow()", a, b));
    }
    if !is_float(a) && !is_float(b) {
        let (x, y) = (as_int(a).unwrap_or(0), as_int(b).unwrap_or(0));
        if y >= 0 {
            let e = u32::try_from(y).map_err(|_| int_overflow())?;
            return x.checked_pow(e).map(int_value).ok_or_else(int_overflow);
        }
        if x == 0 {
            return Err(py_err(
                "ZeroDivisionError",
                "0.0 cannot be raised to a negative power",
            ));
        }
    }
    Ok(Value::from(
        as_float(a).unwrap_or(0.0).powf(as_float(b).unwrap_or(0.0)),
    ))
}

/// `a ~ b`: Jinja's string concatenation, with Python's `str()` of each side.
pub fn concat(a: &Value, b: &Value, budget: &dyn Budget) -> Result<Value, Error> {
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    let s = to_str(a) + &to_str(b);
    budget.check(s.len())?;
    Ok(Value::from(s))
}

fn arith(
    a: &Value,
    b: &Value,
    op: &str,
    int: impl Fn(i128, i128) -> Option<i128>,
    float: impl Fn(f64, f64) -> f64,
) -> Result<Value, Error> {
    if !is_float(a) && !is_float(b) {
        let (x, y) = (as_int(a).unwrap_or(0), as_int(b).unwrap_or(0));
        return int(x, y).map(int_value).ok_or_else(int_overflow);
    }
    let _ = op;
    Ok(Value::from(float(
        as_float(a).unwrap_or(0.0),
        as_float(b).unwrap_or(0.0),
    )))
}

/// Python `a == b`.
pub fn eq(a: &Value, b: &Value) -> bool {
    if let Some(p) = py(a) {
        if let Some(r) = p.eq(b) {
            return r;
        }
    }
    if let Some(p) = py(b) {
        if let Some(r) = p.eq(a) {
            return r;
        }
    }
    if py(a).is_some() || py(b).is_some() {
        if let (Some(x), Some(y)) = (items_of(a), items_of(b)) {
            return seq_kind(a) == seq_kind(b) && seq_eq(&x, &y);
        }
        return false;
    }
    if is_number(a) && is_number(b) {
        return match (is_float(a) || is_float(b), as_int(a), as_int(b)) {
            (false, Some(x), Some(y)) => x == y,
            _ => as_float(a) == as_float(b),
        };
    }
    match (a.kind(), b.kind()) {
        (ValueKind::Seq, ValueKind::Seq) => seq_eq(
            &items_of(a).unwrap_or_default(),
            &items_of(b).unwrap_or_default(),
        ),
        (ValueKind::Map, ValueKind::Map) => {
            let keys: Vec<Value> = a.try_iter().into_iter().flatten().collect();
            keys.len() == b.len().unwrap_or(0)
                && keys.iter().all(|k| {
                    let bv = b.get_item(k).unwrap_or_default();
                    !bv.is_undefined() && eq(&a.get_item(k).unwrap_or_default(), &bv)
                })
        }
        _ => a == b,
    }
}

fn seq_eq(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq(x, y))
}

/// Python ordering of `a` and `b`; `TypeError` when Python has none.
pub fn order(a: &Value, b: &Value, op: &str) -> Result<Ordering, Error> {
    let none_like = |v: &Value| v.is_none() || downcast::<PyNoneProxy>(v).is_some();
    let not_supported = || {
        py_err(
            "TypeError",
            format!(
                "'{op}' not supported between instances of '{}' and '{}'",
                type_name(a),
                type_name(b)
            ),
        )
    };
    if a.is_undefined() || b.is_undefined() {
        return Err(undefined_operand());
    }
    if none_like(a) || none_like(b) {
        return Err(not_supported());
    }
    if is_number(a) && is_number(b) {
        if !is_float(a) && !is_float(b) {
            return Ok(as_int(a).cmp(&as_int(b)));
        }
        return as_float(a)
            .partial_cmp(&as_float(b))
            .and_then(|o| as_float(b).map(|_| o))
            .ok_or_else(not_supported);
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return Ok(x.cmp(y));
    }
    if let (Some(x), Some(y)) = (downcast::<PyDateTime>(a), downcast::<PyDateTime>(b)) {
        return x.compare(y);
    }
    if let Some(p) = py(a) {
        if let Some(o) = p.cmp(b) {
            return Ok(o);
        }
    }
    if let Some(p) = py(b) {
        if let Some(o) = p.cmp(a) {
            return Ok(o.reverse());
        }
    }
    let both_lists = (is_list(a) && is_list(b))
        || (seq_kind(a) == Some(SeqKind::Tuple) && seq_kind(b) == Some(SeqKind::Tuple));
    if both_lists {
        let (x, y) = (
            items_of(a).unwrap_or_default(),
            items_of(b).unwrap_or_default(),
        );
        for (i, j) in x.iter().zip(&y) {
            if !eq(i, j) {
                return order(i, j, op);
            }
        }
        return Ok(x.len().cmp(&y.len()));
    }
    Err(not_supported())
}

/// A comparison by its Jinja operator name.
pub fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, Error> {
    Ok(match op {
        "==" => eq(a, b),
        "!=" => !eq(a, b),
        "<" => order(a, b, op)? == Ordering::Less,
        "<=" => order(a, b, op)? != Ordering::Greater,
        ">" => order(a, b, op)? == Ordering::Greater,
        ">=" => order(a, b, op)? != Ordering::Less,
        other => {
            return Err(py_err(
                "TemplateSyntaxError",
                format!("unknown comparison {other}"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Unlimited;
    impl Budget for Unlimited {
        fn check(&self, _: usize) -> Result<(), Error> {
            Ok(())
        }
    }

    fn s(v: Result<Value, Error>) -> String {
        match v {
            Ok(v) => to_str(&v),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn arithmetic_is_pythons() {
        let i = |n: i64| Value::from(n);
        assert_eq!(s(truediv(&i(6), &i(2))), "3.0");
        assert_eq!(s(floordiv(&i(-7), &i(2))), "-4");
        assert_eq!(s(rem(&i(-7), &i(3), &Unlimited)), "2");
        assert_eq!(s(pow(&i(2), &i(-1))), "0.5");
        assert_eq!(s(add(&Value::from(true), &i(1), &Unlimited)), "2");
        assert!(s(add(&i(1), &Value::from("a"), &Unlimited))
            .contains("unsupported operand type(s) for +: 'int' and 'str'"));
        assert!(s(truediv(&i(1), &i(0))).contains("division by zero"));
        assert!(eq(&i(1), &Value::from(1.0)));
        assert!(compare("<", &i(1), &i(2)).unwrap());
    }
}
