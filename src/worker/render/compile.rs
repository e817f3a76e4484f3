//! Compiling and running one template with Python's semantics on minijinja's engine.
//!
//! minijinja parses Jinja, but its operators, literals and output are its own: `6 / 2` is
//! `3.0` in both, yet `logical_date + macros.timedelta(days=1)` has no meaning for it, `(1,
//! 2)` is a list, and `{{ True }}` prints differently. So a template is parsed with
//! minijinja's parser, its syntax tree is rewritten so that every arithmetic operator,
//! comparison, attribute and item lookup, and tuple literal becomes a call of one of the
//! `__py_*` functions below (which implement Python's rules in `ops`), and the rewritten
//! tree is compiled and run by minijinja's VM. Output goes through a formatter that prints
//! Python's `str()` of each value.
//!
//! The tree rewrite needs minijinja's `unstable_machinery` (its parser, code generator and
//! VM), which has no semver promise: the dependency is pinned to an exact version.
//!
//! Bounds: minijinja's fuel limits the instructions a render may run (loops included), and a
//! per-render byte budget limits what it may produce: every value printed and every string
//! built by an operator or filter counts, so neither a long loop nor `'x' * 10**9` can hold
//! a worker thread or its memory.

use std::cell::Cell;
use std::collections::BTreeMap;

use minijinja::machinery::{make_string_output, CodeGenerator, Vm};
use minijinja::value::{Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};

use super::filters::FILTERS;
use super::methods;
use super::objects::{PySeq, SeqKind};
use super::ops::{self, Budget};
use super::rewrite::Rewrite;
use super::value::{
    as_int, object_type_repr, py, py_err, take_undefined_reasons, to_str, undefined_because, Py,
};

/// How much one render may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// minijinja instructions (each loop iteration costs a few).
    pub fuel: u64,
    /// Bytes of output, and of any single string built while rendering.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 20_000_000,
            max_output: 4 << 20,
        }
    }
}

/// The sandbox's largest `range()`, as Jinja's.
const MAX_RANGE: i128 = 100_000;

/// A template that failed, named as Airflow would (`UndefinedError`, `TypeError`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}{}", .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct TemplateError {
    pub class: String,
    pub message: String,
    /// The template line the error comes from, when known.
    pub line: Option<usize>,
}

thread_local! {
    /// (limit, bytes written) of the render running on this thread.
    static OUTPUT: Cell<(usize, usize)> = const { Cell::new((usize::MAX, 0)) };
}

/// The byte budget of the render on this thread.
struct ThreadBudget;

fn too_large(limit: usize) -> Error {
    py_err(
        "OutputTooLarge",
        format!("the template produces more than {limit} bytes, the limit of one render"),
    )
}

impl Budget for ThreadBudget {
    fn check(&self, len: usize) -> Result<(), Error> {
        let (limit, _) = OUTPUT.with(Cell::get);
        if len > limit {
            return Err(too_large(limit));
        }
        Ok(())
    }
}

fn count_output(len: usize) -> Result<(), Error> {
    OUTPUT.with(|c| {
        let (limit, written) = c.get();
        let written = written.saturating_add(len);
        c.set((limit, written));
        if written > limit {
            return Err(too_large(limit));
        }
        Ok(())
    })
}

/// An environment with Python's operators, filters, methods and output.
pub fn environment<'s>(limits: Limits) -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(200);
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() {
            return Err(Error::new(ErrorKind::UndefinedError, "undefined value"));
        }
        let s = to_str(value);
        count_output(s.len())?;
        out.write_str(&s).map_err(Error::from)
    });
    env.set_unknown_method_callback(|state, value, name, args| {
        methods::call(state, value, name, args, &ThreadBudget)
    });
    for (name, f) in FILTERS {
        let f = *f;
        env.add_filter(
            *name,
            move |state: &State, value: Value, args: Rest<Value>| {
                f(state, &value, &args, &ThreadBudget)
            },
        );
    }
    let binop = |f: fn(&Value, &Value) -> Result<Value, Error>| move |a: Value, b: Value| f(&a, &b);
    env.add_function("__py_add", |a: Value, b: Value| {
        ops::add(&a, &b, &ThreadBudget)
    });
    env.add_function("__py_sub", binop(ops::sub));
    env.add_function("__py_mul", |a: Value, b: Value| {
        ops::mul(&a, &b, &ThreadBudget)
    });
    env.add_function("__py_truediv", binop(ops::truediv));
    env.add_function("__py_floordiv", binop(ops::floordiv));
    env.add_function("__py_mod", |a: Value, b: Value| {
        ops::rem(&a, &b, &ThreadBudget)
    });
    env.add_function("__py_pow", binop(ops::pow));
    env.add_function("__py_concat", |a: Value, b: Value| {
        ops::concat(&a, &b, &ThreadBudget)
    });
    env.add_function("__py_cmp", |op: String, a: Value, b: Value| {
        ops::compare(&op, &a, &b).map(Value::from)
    });
    env.add_function("__py_tuple", |items: Rest<Value>| PySeq::tuple(items.0));
    env.add_function("__py_getattr", getattr);
    env.add_function("__py_getitem", getitem);
    env.add_function("range", range);
    env
}

fn undefined_base(obj: &Value, at: Option<u32>, var: &Value) -> Value {
    let why = match var.as_str() {
        Some(v) => format!("'{v}' is undefined"),
        None => "undefined value".into(),
    };
    let _ = obj;
    undefined_because(at, why)
}

/// `obj.name`, as Jinja's sandbox looks attributes up.
fn getattr(obj: Value, name: String, at: Option<u32>, var: Value) -> Result<Value, Error> {
    if obj.is_undefined() {
        return Ok(undefined_base(&obj, at, &var));
    }
    if name.starts_with("__") {
        return Err(py_err(
            "SecurityError",
            format!(
                "access to attribute '{name}' of '{}' object is unsafe.",
                super::value::type_name(&obj)
            ),
        ));
    }
    let found = match py(&obj) {
        Some(p) => p.try_attr(&name)?,
        None => match obj.kind() {
            ValueKind::Map | ValueKind::Plain => {
                Some(obj.get_attr(&name)?).filter(|v| !v.is_undefined())
            }
            _ => None,
        },
    };
    Ok(found.unwrap_or_else(|| {
        undefined_because(
            at,
            format!("'{}' has no attribute '{name}'", object_type_repr(&obj)),
        )
    }))
}

/// `obj[key]`: item first, then attribute, as Jinja's sandbox does.
fn getitem(obj: Value, key: Value, at: Option<u32>, var: Value) -> Result<Value, Error> {
    if obj.is_undefined() {
        return Ok(undefined_base(&obj, at, &var));
    }
    if let Some(p) = py(&obj) {
        if p.items().is_none() {
            if let Some(name) = key.as_str() {
                return getattr(obj.clone(), name.to_string(), at, var);
            }
        }
    }
    let seq_like = matches!(obj.kind(), ValueKind::Seq | ValueKind::String);
    let v = match (seq_like, as_int(&key)) {
        (true, Some(i)) => {
            let len = obj.len().unwrap_or(0) as i128;
            let idx = if i < 0 { len + i } else { i };
            if (0..len).contains(&idx) {
                obj.get_item(&Value::from(idx as i64))?
            } else {
                Value::UNDEFINED
            }
        }
        _ => obj.get_item(&key)?,
    };
    if !v.is_undefined() {
        return Ok(v);
    }
    if let Some(name) = key.as_str() {
        if obj.kind() != ValueKind::Map {
            return getattr(obj, name.to_string(), at, var);
        }
        return Ok(undefined_because(
            at,
            format!("'{}' has no attribute '{name}'", object_type_repr(&obj)),
        ));
    }
    Ok(undefined_because(
        at,
        format!(
            "{} has no element {}",
            object_type_repr(&obj),
            super::value::to_repr(&key)
        ),
    ))
}

/// Jinja's sandboxed `range()`.
fn range(args: Rest<Value>) -> Result<Value, Error> {
    let n: Vec<i128> = args
        .iter()
        .map(|a| {
            as_int(a).ok_or_else(|| {
                py_err(
                    "TypeError",
                    format!(
                        "'{}' object cannot be interpreted as an integer",
                        super::value::type_name(a)
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let (start, stop, step) = match n[..] {
        [stop] => (0, stop, 1),
        [start, stop] => (start, stop, 1),
        [start, stop, step] => (start, stop, step),
        _ => {
            return Err(py_err(
                "TypeError",
                format!("range expected at most 3 arguments, got {}", n.len()),
            ))
        }
    };
    if step == 0 {
        return Err(py_err("ValueError", "range() arg 3 must not be zero"));
    }
    let len = if step > 0 {
        ((stop - start + step - 1) / step).max(0)
    } else {
        ((start - stop - step - 1) / -step).max(0)
    };
    if len > MAX_RANGE {
        return Err(py_err(
            "OverflowError",
            format!(
                "Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MAX_RANGE})."
            ),
        ));
    }
    let items = (0..len)
        .map(|i| super::value::int_value(start + i * step))
        .collect();
    let bound = |x: i128| x.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    Ok(Py::value(PySeq {
        kind: SeqKind::Range(bound(start), bound(stop), bound(step)),
        items,
    }))
}

/// Compiles and runs `source` with `ctx`.
pub fn render(
    env: &Environment<'_>,
    source: &str,
    ctx: &Value,
    limits: Limits,
) -> Result<String, TemplateError> {
    OUTPUT.with(|c| c.set((limits.max_output, 0)));
    take_undefined_reasons();
    let result = run(env, source, ctx);
    let reasons = take_undefined_reasons();
    OUTPUT.with(|c| c.set((usize::MAX, 0)));
    result.map_err(|e| describe(&e, source, &reasons, ctx))
}

fn run(env: &Environment<'_>, source: &str, ctx: &Value) -> Result<String, Error> {
    let tree = crate::dag::template::parse_template(source)?;
    let tree = Rewrite { source }.stmt(&tree);
    let mut g = CodeGenerator::new("<template>", source);
    g.compile_stmt(&tree);
    let (instructions, blocks) = g.finish();
    let mut out = String::new();
    let vm = Vm::new(env);
    vm.eval(
        &instructions,
        ctx.clone(),
        &blocks,
        &mut make_string_output(&mut out),
        AutoEscape::None,
    )?;
    let _: &BTreeMap<&str, _> = &blocks;
    Ok(out)
}

/// Turns a minijinja error into Airflow's exception class and message.
fn describe(
    e: &Error,
    source: &str,
    reasons: &[(Option<u32>, String)],
    ctx: &Value,
) -> TemplateError {
    let line = e.line();
    let detail = e.detail().unwrap_or_default();
    let (class, message) = match e.kind() {
        _ if detail.contains(": ") && is_python_class(detail.split(": ").next().unwrap_or("")) => {
            let (c, m) = detail.split_once(": ").unwrap_or(("Error", detail));
            (c.to_string(), m.to_string())
        }
        ErrorKind::UndefinedError => (
            "UndefinedError".into(),
            undefined_message(e, source, reasons, ctx),
        ),
        ErrorKind::UnknownFunction => (
            "UndefinedError".into(),
            format!("'{}' is undefined", unknown_name(detail, "function")),
        ),
        ErrorKind::UnknownFilter => (
            "TemplateAssertionError".into(),
            format!("No filter named '{}'.", unknown_name(detail, "filter")),
        ),
        ErrorKind::UnknownTest => (
            "TemplateAssertionError".into(),
            format!("No test named '{}'.", unknown_name(detail, "test")),
        ),
        ErrorKind::InvalidOperation if detail.ends_with(" is not callable") => {
            let kind = detail
                .trim_start_matches("value of type ")
                .trim_end_matches(" is not callable");
            let py = match kind {
                "string" => "str",
                "number" => "int",
                "map" => "dict",
                "sequence" => "list",
                "none" => "NoneType",
                "undefined" => "Undefined",
                other => other,
            };
            ("TypeError".into(), format!("'{py}' object is not callable"))
        }
        ErrorKind::SyntaxError => ("TemplateSyntaxError".into(), detail.to_string()),
        ErrorKind::OutOfFuel => (
            "TemplateTooLong".into(),
            "the template ran too many steps (a loop too long?); the limit bounds every render"
                .into(),
        ),
        ErrorKind::UnknownMethod => ("AttributeError".into(), detail.to_string()),
        _ => (
            "TypeError".into(),
            if detail.is_empty() {
                e.to_string()
            } else {
                detail.to_string()
            },
        ),
    };
    TemplateError {
        class,
        message,
        line,
    }
}

/// The name in minijinja's "filter x is unknown" / "x is unknown".
fn unknown_name<'d>(detail: &'d str, kind: &str) -> &'d str {
    let rest = detail
        .strip_prefix(kind)
        .map(str::trim_start)
        .unwrap_or(detail);
    rest.split_whitespace().next().unwrap_or("?")
}

fn is_python_class(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        && (s.ends_with("Error") || s.ends_with("Exception") || s == "OutputTooLarge")
}

/// Jinja's message for an undefined value: the name, or why an attribute was missing.
fn undefined_message(
    e: &Error,
    source: &str,
    reasons: &[(Option<u32>, String)],
    ctx: &Value,
) -> String {
    let range = e.range();
    let text = range
        .clone()
        .and_then(|r| source.get(r))
        .unwrap_or_default()
        .trim();
    let free = crate::dag::template::free_names(source).unwrap_or_default();
    let is_var = free.iter().any(|u| u.name == text);
    if is_var && ctx.get_attr(text).is_ok_and(|v| v.is_undefined()) {
        return format!("'{text}' is undefined");
    }
    if let Some(r) = range.as_ref() {
        if let Some((_, why)) = reasons
            .iter()
            .rev()
            .find(|(at, _)| at.is_some_and(|a| r.contains(&(a as usize))))
        {
            return why.clone();
        }
    }
    {
        let missing: Vec<_> = free
            .iter()
            .filter(|u| ctx.get_attr(&u.name).is_ok_and(|v| v.is_undefined()))
            .filter(|u| !crate::dag::template::GLOBAL_NAMES.contains(&u.name.as_str()))
            .collect();
        if let Some(u) = missing
            .iter()
            .find(|u| text.contains(u.name.as_str()))
            .or(missing.first())
        {
            if reasons.is_empty() || text.contains(u.name.as_str()) {
                return format!("'{}' is undefined", u.name);
            }
        }
    }
    if let Some((_, why)) = reasons.last() {
        return why.clone();
    }
    if text.is_empty() {
        "undefined value".into()
    } else {
        format!("`{text}` is undefined")
    }
}
