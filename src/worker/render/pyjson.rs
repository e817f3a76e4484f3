//! Python's `json.dumps` as Airflow's templates produce it: `{"a": 1, "b": [1, 2]}` with
//! `", "` and `": "` separators, `ensure_ascii` escapes, Python float text, and (for Jinja's
//! `tojson` filter) sorted keys and `<`, `>`, `&`, `'` escaped for HTML. `loads` reads JSON
//! into template values.

use minijinja::value::ValueKind;
use minijinja::{Error, Value};

use super::value::{as_float, float_repr, is_float, items_of, py, py_err, type_name};

/// How to dump.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dump {
    pub sort_keys: bool,
    pub indent: Option<usize>,
    /// Jinja's `htmlsafe_json_dumps`.
    pub html_safe: bool,
}

pub fn dumps(v: &Value, how: Dump) -> Result<String, Error> {
    let mut out = String::new();
    write(&mut out, v, &how, 0)?;
    if how.html_safe {
        out = out
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\'', "\\u0027");
    }
    Ok(out)
}

fn newline(out: &mut String, how: &Dump, depth: usize) {
    if let Some(n) = how.indent {
        out.push('\n');
        out.push_str(&" ".repeat(n * depth));
    }
}

fn write(out: &mut String, v: &Value, how: &Dump, depth: usize) -> Result<(), Error> {
    if depth > 200 {
        return Err(py_err(
            "RecursionError",
            "maximum recursion depth exceeded while encoding a JSON object",
        ));
    }
    let item_sep = if how.indent.is_some() { "," } else { ", " };
    if let Some(p) = py(v) {
        if p.class() == "tuple" {
            return write_seq(out, &items_of(v).unwrap_or_default(), how, depth, item_sep);
        }
        return Err(py_err(
            "TypeError",
            format!("Object of type {} is not JSON serializable", type_name(v)),
        ));
    }
    match v.kind() {
        ValueKind::None | ValueKind::Undefined => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if is_float(v) => {
            let f = as_float(v).unwrap_or(f64::NAN);
            out.push_str(&if f.is_nan() {
                "NaN".to_string()
            } else if f.is_infinite() {
                if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            } else {
                float_repr(f)
            });
        }
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => string(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            write_seq(out, &items_of(v).unwrap_or_default(), how, depth, item_sep)?
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter().into_iter().flatten().collect();
            if how.sort_keys {
                keys.sort_by_key(|a| a.to_string());
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, how, depth + 1);
                let key = match k.kind() {
                    ValueKind::String => k.as_str().unwrap_or_default().to_string(),
                    ValueKind::None => "null".into(),
                    ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
                    ValueKind::Number => super::value::to_str(k),
                    _ => {
                        return Err(py_err(
                            "TypeError",
                            format!(
                                "keys must be str, int, float, bool or None, not {}",
                                type_name(k)
                            ),
                        ))
                    }
                };
                string(out, &key);
                out.push_str(": ");
                write(out, &v.get_item(k).unwrap_or_default(), how, depth + 1)?;
            }
            newline(out, how, depth);
            out.push('}');
        }
        _ => {
            return Err(py_err(
                "TypeError",
                format!("Object of type {} is not JSON serializable", type_name(v)),
            ))
        }
    }
    Ok(())
}

fn write_seq(
    out: &mut String,
    items: &[Value],
    how: &Dump,
    depth: usize,
    sep: &str,
) -> Result<(), Error> {
    if items.is_empty() {
        out.push_str("[]");
        return Ok(());
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        newline(out, how, depth + 1);
        write(out, item, how, depth + 1)?;
    }
    newline(out, how, depth);
    out.push(']');
    Ok(())
}

/// A JSON string with Python's `ensure_ascii=True` escapes.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.loads`.
pub fn loads(s: &str) -> Result<Value, Error> {
    let v: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| py_err("json.decoder.JSONDecodeError", format!("{e}")))?;
    Ok(Value::from_serialize(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_like_python() {
        let v = Value::from_serialize(serde_json::json!({"b": 1, "a": [1, 2.0], "s": "é<"}));
        assert_eq!(
            dumps(&v, Dump::default()).unwrap(),
            r#"{"b": 1, "a": [1, 2.0], "s": "\u00e9<"}"#
        );
        assert_eq!(
            dumps(
                &v,
                Dump {
                    sort_keys: true,
                    html_safe: true,
                    indent: None
                }
            )
            .unwrap(),
            r#"{"a": [1, 2.0], "b": 1, "s": "\u00e9\u003c"}"#
        );
        let n = Value::from_serialize(serde_json::json!({"a": {"b": [1]}}));
        assert_eq!(
            dumps(
                &n,
                Dump {
                    indent: Some(2),
                    ..Dump::default()
                }
            )
            .unwrap(),
            "{\n  \"a\": {\n    \"b\": [\n      1\n    ]\n  }\n}"
        );
    }
}
