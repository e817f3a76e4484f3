//! Small Python objects templates meet: tuples, sets and ranges (minijinja has only lists),
//! string enums (`DagRunType.SCHEDULED`), the `None` that Airflow's lazy `prev_*_success`
//! proxies hold, UUIDs, and plain "modules" of functions (`macros.json`, `macros.uuid`).

use std::any::Any;
use std::cmp::Ordering;
use std::sync::Arc;

use minijinja::{Error, ErrorKind, State, Value};

use super::value::{downcast, py_err, write_items, Py, PyObject};

/// Which Python sequence a [`PySeq`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqKind {
    Tuple,
    Set,
    /// `range(start, stop, step)`: items are materialised (the sandbox caps the size).
    Range(i64, i64, i64),
}

/// A tuple, set or range.
#[derive(Debug, Clone)]
pub struct PySeq {
    pub kind: SeqKind,
    pub items: Vec<Value>,
}

impl PySeq {
    pub fn tuple(items: Vec<Value>) -> Value {
        Py::value(PySeq {
            kind: SeqKind::Tuple,
            items,
        })
    }

    pub fn set(items: Vec<Value>) -> Value {
        Py::value(PySeq {
            kind: SeqKind::Set,
            items,
        })
    }
}

impl PyObject for PySeq {
    fn class(&self) -> &'static str {
        match self.kind {
            SeqKind::Tuple => "tuple",
            SeqKind::Set => "set",
            SeqKind::Range(..) => "range",
        }
    }
    fn str(&self) -> String {
        let mut out = String::new();
        match self.kind {
            SeqKind::Tuple => write_items(&mut out, self.items.iter().cloned(), "(", ")"),
            SeqKind::Set if self.items.is_empty() => out.push_str("set()"),
            SeqKind::Set => write_items(&mut out, self.items.iter().cloned(), "{", "}"),
            SeqKind::Range(a, b, 1) => out.push_str(&format!("range({a}, {b})")),
            SeqKind::Range(a, b, s) => out.push_str(&format!("range({a}, {b}, {s})")),
        }
        out
    }
    fn items(&self) -> Option<Vec<Value>> {
        Some(self.items.clone())
    }
    fn truthy(&self) -> bool {
        !self.items.is_empty()
    }
    fn call_method(&self, _state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        match (name, args) {
            ("count", [x]) => Ok(Value::from(
                self.items
                    .iter()
                    .filter(|i| super::value::to_repr(i) == super::value::to_repr(x))
                    .count(),
            )),
            ("index", [x]) => self
                .items
                .iter()
                .position(|i| i == x)
                .map(Value::from)
                .ok_or_else(|| py_err("ValueError", "tuple.index(x): x not in tuple")),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        let o = downcast::<PySeq>(other)?;
        Some(o.kind == self.kind && o.items == self.items)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A string enum member: renders `DagRunType.SCHEDULED`, equals `'scheduled'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyEnum {
    /// The enum's name (`DagRunType`).
    pub enum_name: &'static str,
    pub qualified: &'static str,
    pub name: String,
    pub value: String,
}

impl PyEnum {
    /// A member named after its value (`scheduled` → `SCHEDULED`).
    pub fn of(class: &'static str, qualified: &'static str, value: &str) -> Value {
        Py::value(PyEnum {
            enum_name: class,
            qualified,
            name: value.to_ascii_uppercase(),
            value: value.to_string(),
        })
    }
}

impl PyObject for PyEnum {
    fn class(&self) -> &'static str {
        self.qualified
    }
    fn type_name(&self) -> &'static str {
        self.enum_name
    }
    fn str(&self) -> String {
        format!("{}.{}", self.enum_name, self.name)
    }
    fn repr(&self) -> String {
        format!("<{}.{}: '{}'>", self.enum_name, self.name, self.value)
    }
    fn attr(&self, name: &str) -> Option<Value> {
        match name {
            "value" => Some(Value::from(self.value.clone())),
            "name" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }
    fn call_method(&self, state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        // A `str` enum has the string's methods (`dag_run.run_type.upper()`).
        Value::from(self.value.clone()).call_method(state, name, args)
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        if let Some(s) = other.as_str() {
            return Some(s == self.value);
        }
        downcast::<PyEnum>(other).map(|o| o == self)
    }
    fn cmp(&self, other: &Value) -> Option<Ordering> {
        let o = other
            .as_str()
            .map(str::to_string)
            .or_else(|| downcast::<PyEnum>(other).map(|e| e.value.clone()))?;
        Some(self.value.as_str().cmp(&o))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What Airflow's lazy `prev_*_success` proxies hold when there was no earlier success: it
/// prints `None` and equals `None`, but is not `none` to Jinja's `is none` test, and using
/// it as a datetime fails as `None` would.
#[derive(Debug, Clone, Copy)]
pub struct PyNoneProxy;

impl PyObject for PyNoneProxy {
    fn class(&self) -> &'static str {
        "lazy_object_proxy.Proxy"
    }
    fn type_name(&self) -> &'static str {
        "NoneType"
    }
    fn str(&self) -> String {
        "None".into()
    }
    fn truthy(&self) -> bool {
        false
    }
    fn call_method(&self, _state: &State, name: &str, _args: &[Value]) -> Result<Value, Error> {
        Err(py_err(
            "AttributeError",
            format!("'NoneType' object has no attribute '{name}'"),
        ))
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        Some(other.is_none() || downcast::<PyNoneProxy>(other).is_some())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A `uuid.UUID`: renders hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyUuid(pub uuid::Uuid);

impl PyObject for PyUuid {
    fn class(&self) -> &'static str {
        "uuid.UUID"
    }
    fn type_name(&self) -> &'static str {
        "UUID"
    }
    fn str(&self) -> String {
        self.0.hyphenated().to_string()
    }
    fn repr(&self) -> String {
        format!("UUID('{}')", self.0.hyphenated())
    }
    fn attr(&self, name: &str) -> Option<Value> {
        Some(match name {
            "hex" => Value::from(self.0.simple().to_string()),
            "version" => Value::from(self.0.get_version_num()),
            "int" => Value::from(self.0.as_u128()),
            _ => return None,
        })
    }
    fn eq(&self, other: &Value) -> Option<bool> {
        downcast::<PyUuid>(other).map(|o| o == self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A function exposed as a Python attribute of a module or class.
pub type PyFn = Arc<dyn Fn(&State, &[Value]) -> Result<Value, Error> + Send + Sync>;

/// A module or class of functions and constants (`macros.json`, `macros.uuid`,
/// `macros.datetime`), optionally callable itself (`macros.datetime(2024, 1, 2)`).
pub struct PyModule {
    pub class: &'static str,
    pub display: String,
    pub call: Option<PyFn>,
    pub members: Vec<(&'static str, Member)>,
}

/// A module member: a function or a constant value.
pub enum Member {
    Fn(PyFn),
    Const(Value),
}

impl std::fmt::Debug for PyModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

pub fn func(
    f: impl Fn(&State, &[Value]) -> Result<Value, Error> + Send + Sync + 'static,
) -> Member {
    Member::Fn(Arc::new(f))
}

/// A standalone function value (a module member read as an attribute).
#[derive(Clone)]
struct PyFunction {
    name: String,
    f: PyFn,
}

impl std::fmt::Debug for PyFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<function {}>", self.name)
    }
}

impl PyObject for PyFunction {
    fn class(&self) -> &'static str {
        "builtins.function"
    }
    fn type_name(&self) -> &'static str {
        "function"
    }
    fn str(&self) -> String {
        format!("<function {}>", self.name)
    }
    fn call(&self, state: &State, args: &[Value]) -> Result<Value, Error> {
        (self.f)(state, args)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl PyObject for PyModule {
    fn class(&self) -> &'static str {
        self.class
    }
    fn str(&self) -> String {
        self.display.clone()
    }
    fn attr(&self, name: &str) -> Option<Value> {
        match &self.members.iter().find(|(n, _)| *n == name)?.1 {
            Member::Const(v) => Some(v.clone()),
            Member::Fn(f) => Some(Py::value(PyFunction {
                name: name.to_string(),
                f: f.clone(),
            })),
        }
    }
    fn call_method(&self, state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
        match self.members.iter().find(|(n, _)| *n == name) {
            Some((_, Member::Fn(f))) => f(state, args),
            Some((_, Member::Const(v))) => v.call(state, args),
            None => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
    fn call(&self, state: &State, args: &[Value]) -> Result<Value, Error> {
        match &self.call {
            Some(f) => f(state, args),
            None => Err(py_err(
                "TypeError",
                format!("'{}' object is not callable", self.class),
            )),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}
