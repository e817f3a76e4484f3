//! Python's two string formatting languages, as templates use them: `'%s-%03d' % (a, b)`
//! (and Jinja's `format` filter) and `'{0}/{1:03d}/{x}'.format(...)`, with Python's
//! format-spec mini-language for numbers and strings.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, Value};

use super::value::{
    as_float, as_int, float_repr, is_float, items_of, kw, py, py_err, to_repr, to_str, type_name,
};

/// A parsed format spec: `[[fill]align][sign][#][0][width][,|_][.precision][type]`.
#[derive(Debug, Default, Clone)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alt: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

fn parse_spec(s: &str) -> Result<Spec, Error> {
    let bad = || py_err("ValueError", format!("Invalid format specifier '{s}'"));
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut spec = Spec::default();
    let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
    if chars.len() >= 2 && is_align(chars[1]) {
        spec.fill = Some(chars[0]);
        spec.align = Some(chars[1]);
        i = 2;
    } else if !chars.is_empty() && is_align(chars[0]) {
        spec.align = Some(chars[0]);
        i = 1;
    }
    if i < chars.len() && matches!(chars[i], '+' | '-' | ' ') {
        spec.sign = Some(chars[i]);
        i += 1;
    }
    if i < chars.len() && chars[i] == '#' {
        spec.alt = true;
        i += 1;
    }
    if i < chars.len() && chars[i] == '0' {
        spec.zero = true;
        i += 1;
    }
    let start = i;
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        spec.width = chars[start..i]
            .iter()
            .collect::<String>()
            .parse()
            .map_err(|_| bad())?;
    }
    if i < chars.len() && matches!(chars[i], ',' | '_') {
        spec.grouping = Some(chars[i]);
        i += 1;
    }
    if i < chars.len() && chars[i] == '.' {
        i += 1;
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(py_err("ValueError", "Format specifier missing precision"));
        }
        spec.precision = Some(
            chars[start..i]
                .iter()
                .collect::<String>()
                .parse()
                .map_err(|_| bad())?,
        );
    }
    if i < chars.len() {
        spec.ty = Some(chars[i]);
        i += 1;
    }
    if i != chars.len() {
        return Err(bad());
    }
    Ok(spec)
}

/// Python's `format(value, spec)`.
pub fn format_value(v: &Value, spec: &str) -> Result<String, Error> {
    if spec.is_empty() {
        return Ok(to_str(v));
    }
    let spec = parse_spec(spec)?;
    if py(v).is_some() && !matches!(spec.ty, Some('s') | None) {
        return Err(py_err(
            "ValueError",
            format!(
                "Invalid format specifier for object of type '{}'",
                type_name(v)
            ),
        ));
    }
    match v.kind() {
        ValueKind::Number | ValueKind::Bool => format_number(v, &spec),
        _ => {
            if let Some(t) = spec.ty.filter(|t| *t != 's') {
                return Err(py_err(
                    "ValueError",
                    format!(
                        "Unknown format code '{t}' for object of type '{}'",
                        type_name(v)
                    ),
                ));
            }
            let mut s = to_str(v);
            if let Some(p) = spec.precision {
                s = s.chars().take(p).collect();
            }
            Ok(pad(&s, &spec, '<'))
        }
    }
}

fn format_number(v: &Value, spec: &Spec) -> Result<String, Error> {
    let int = if is_float(v) { None } else { as_int(v) };
    let ty = spec.ty;
    let (negative, body) = match (int, ty) {
        (Some(i), None | Some('d' | 'n' | 'b' | 'o' | 'x' | 'X' | 'c')) => {
            let a = i.unsigned_abs();
            let body = match ty {
                Some('b') => format!("{}{a:b}", if spec.alt { "0b" } else { "" }),
                Some('o') => format!("{}{a:o}", if spec.alt { "0o" } else { "" }),
                Some('x') => format!("{}{a:x}", if spec.alt { "0x" } else { "" }),
                Some('X') => format!("{}{a:X}", if spec.alt { "0X" } else { "" }),
                Some('c') => char::from_u32(a as u32)
                    .map(String::from)
                    .unwrap_or_default(),
                _ => group(&a.to_string(), spec.grouping),
            };
            (i < 0, body)
        }
        (Some(_), Some(t)) if !"eEfFgG%".contains(t) => {
            return Err(py_err(
                "ValueError",
                format!("Unknown format code '{t}' for object of type 'int'"),
            ))
        }
        (None, Some(t)) if !"eEfFgG%".contains(t) => {
            return Err(py_err(
                "ValueError",
                format!("Unknown format code '{t}' for object of type 'float'"),
            ))
        }
        _ => {
            let f = as_float(v).unwrap_or(f64::NAN);
            let body = float_body(f.abs(), spec.precision, ty, spec.alt);
            let body = match body.find('.').or_else(|| body.find(['e', 'E', '%'])) {
                Some(i) => format!("{}{}", group(&body[..i], spec.grouping), &body[i..]),
                None => group(&body, spec.grouping),
            };
            (f.is_sign_negative(), body)
        }
    };
    let sign = match (negative, spec.sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    };
    let mut spec = spec.clone();
    if spec.zero && spec.align.is_none() {
        spec.fill = Some('0');
        spec.align = Some('=');
    }
    if spec.align == Some('=') {
        let fill = spec.fill.unwrap_or(' ');
        let n = spec
            .width
            .saturating_sub(sign.chars().count() + body.chars().count());
        return Ok(format!("{sign}{}{body}", fill.to_string().repeat(n)));
    }
    Ok(pad(&format!("{sign}{body}"), &spec, '>'))
}

/// A non-negative float in Python's `f`/`e`/`g`/`%` (or no type) formats.
fn float_body(f: f64, precision: Option<usize>, ty: Option<char>, alt: bool) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return "inf".into();
    }
    match ty {
        Some('f' | 'F') => format!("{f:.*}", precision.unwrap_or(6)),
        Some('%') => format!("{:.*}%", precision.unwrap_or(6), f * 100.0),
        Some(t @ ('e' | 'E')) => {
            let s = sci(f, precision.unwrap_or(6));
            if t == 'E' {
                s.to_uppercase()
            } else {
                s
            }
        }
        Some(t @ ('g' | 'G')) => {
            let s = general(f, precision.unwrap_or(6), alt);
            if t == 'G' {
                s.to_uppercase()
            } else {
                s
            }
        }
        _ => match precision {
            None => float_repr(f),
            Some(p) => {
                let s = general(f, p.max(1), alt);
                if s.contains(['.', 'e', 'n', 'i']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
        },
    }
}

/// `1.500000e+00`: Rust's `{:e}` with Python's exponent (sign, two digits).
fn sci(f: f64, precision: usize) -> String {
    let s = format!("{f:.precision$e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Python's `g`: significant digits, fixed or scientific by the exponent, zeros trimmed.
fn general(f: f64, precision: usize, alt: bool) -> String {
    let p = precision.max(1);
    if f == 0.0 {
        return if alt {
            format!("{:.*}", p - 1, 0.0)
        } else {
            "0".into()
        };
    }
    let probe = format!("{f:.*e}", p - 1);
    let exp: i32 = probe
        .split_once('e')
        .map_or(0, |(_, e)| e.parse().unwrap_or(0));
    let trim = |s: String| -> String {
        if alt || !s.contains('.') {
            return s;
        }
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if exp >= -4 && exp < p as i32 {
        trim(format!("{f:.*}", (p as i32 - 1 - exp).max(0) as usize))
    } else {
        let s = sci(f, p - 1);
        let (m, e) = s.split_once('e').unwrap_or((&s, ""));
        format!("{}e{e}", trim(m.to_string()))
    }
}

fn group(digits: &str, sep: Option<char>) -> String {
    let Some(sep) = sep else {
        return digits.to_string();
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

fn pad(s: &str, spec: &Spec, default_align: char) -> String {
    let len = s.chars().count();
    if len >= spec.width {
        return s.to_string();
    }
    let n = spec.width - len;
    let fill = spec.fill.unwrap_or(' ').to_string();
    match spec.align.unwrap_or(default_align) {
        '<' => format!("{s}{}", fill.repeat(n)),
        '^' => format!("{}{s}{}", fill.repeat(n / 2), fill.repeat(n - n / 2)),
        _ => format!("{}{s}", fill.repeat(n)),
    }
}

/// `str.format(*args, **kwargs)`.
pub fn str_format(fmt: &str, args: &[Value], kwargs: &Option<Kwargs>) -> Result<String, Error> {
    let mut out = String::new();
    let mut auto = 0usize;
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '}' => {
                return Err(py_err(
                    "ValueError",
                    "Single '}' encountered in format string",
                ))
            }
            '{' => {
                let rest = &fmt[i + 1..];
                let end = rest.find('}').ok_or_else(|| {
                    py_err("ValueError", "Single '{' encountered in format string")
                })?;
                let field = &rest[..end];
                for _ in 0..field.chars().count() + 1 {
                    chars.next();
                }
                let (field, spec) = field.split_once(':').unwrap_or((field, ""));
                let (name, conv) = match field.split_once('!') {
                    Some((n, c)) => (n, Some(c)),
                    None => (field, None),
                };
                let split = name.find(['.', '[']).unwrap_or(name.len());
                let (head, path) = name.split_at(split);
                let mut v = if head.is_empty() {
                    auto += 1;
                    args.get(auto - 1).cloned().ok_or_else(|| {
                        py_err(
                            "IndexError",
                            format!(
                                "Replacement index {} out of range for positional args tuple",
                                auto - 1
                            ),
                        )
                    })?
                } else if let Ok(n) = head.parse::<usize>() {
                    args.get(n).cloned().ok_or_else(|| {
                        py_err(
                            "IndexError",
                            format!("Replacement index {n} out of range for positional args tuple"),
                        )
                    })?
                } else {
                    kw(kwargs, head).ok_or_else(|| py_err("KeyError", format!("'{head}'")))?
                };
                for seg in path.split_inclusive(['.', '[']).filter(|s| !s.is_empty()) {
                    let seg = seg.trim_end_matches(['.', '[']).trim_end_matches(']');
                    if seg.is_empty() {
                        continue;
                    }
                    let key = seg
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(seg));
                    v = v.get_item(&key).unwrap_or_default();
                    if v.is_undefined() {
                        return Err(py_err("KeyError", format!("'{seg}'")));
                    }
                }
                let v = match conv {
                    Some("r") => Value::from(to_repr(&v)),
                    Some("s") => Value::from(to_str(&v)),
                    Some(c) => {
                        return Err(py_err(
                            "ValueError",
                            format!("Unknown conversion specifier {c}"),
                        ))
                    }
                    None => v,
                };
                out.push_str(&format_value(&v, spec)?);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `fmt % args`: printf-style formatting with a tuple, a single value, or a mapping for
/// `%(name)s`.
pub fn percent(fmt: &str, args: &Value) -> Result<String, Error> {
    let mapping = args.kind() == ValueKind::Map && py(args).is_none();
    let list: Vec<Value> = match items_of(args) {
        Some(items) if super::value::py(args).is_some_and(|p| p.class() == "tuple") => items,
        _ if mapping => Vec::new(),
        _ => vec![args.clone()],
    };
    let mut next = 0usize;
    let mut take = || -> Result<Value, Error> {
        let v = list
            .get(next)
            .cloned()
            .ok_or_else(|| py_err("TypeError", "not enough arguments for format string"))?;
        next += 1;
        Ok(v)
    };
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let mut used_mapping = false;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut value = None;
        if chars.get(i) == Some(&'(') {
            let end = chars[i..]
                .iter()
                .position(|c| *c == ')')
                .ok_or_else(|| py_err("ValueError", "incomplete format key"))?;
            let key: String = chars[i + 1..i + end].iter().collect();
            if !mapping {
                return Err(py_err("TypeError", "format requires a mapping"));
            }
            let v = args.get_item(&Value::from(key.clone())).unwrap_or_default();
            if v.is_undefined() {
                return Err(py_err("KeyError", format!("'{key}'")));
            }
            value = Some(v);
            used_mapping = true;
            i += end + 1;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => spec.align = Some('<'),
                '+' => spec.sign = Some('+'),
                ' ' => spec.sign = spec.sign.or(Some(' ')),
                '#' => spec.alt = true,
                '0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        let mut width = String::new();
        if chars.get(i) == Some(&'*') {
            width = as_int(&take()?).unwrap_or(0).to_string();
            i += 1;
        }
        while let Some(c) = chars.get(i).filter(|c| c.is_ascii_digit()) {
            width.push(*c);
            i += 1;
        }
        spec.width = width.parse().unwrap_or(0);
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut p = String::new();
            if chars.get(i) == Some(&'*') {
                p = as_int(&take()?).unwrap_or(0).to_string();
                i += 1;
            }
            while let Some(c) = chars.get(i).filter(|c| c.is_ascii_digit()) {
                p.push(*c);
                i += 1;
            }
            spec.precision = Some(p.parse().unwrap_or(0));
        }
        let ty = *chars
            .get(i)
            .ok_or_else(|| py_err("ValueError", "incomplete format"))?;
        i += 1;
        if ty == '%' {
            out.push('%');
            continue;
        }
        let v = match value {
            Some(v) => v,
            None => take()?,
        };
        if spec.zero && spec.align.is_none() {
            spec.fill = Some('0');
            spec.align = Some('=');
        }
        let text = match ty {
            's' | 'r' | 'a' => {
                let mut s = if ty == 's' { to_str(&v) } else { to_repr(&v) };
                if let Some(p) = spec.precision {
                    s = s.chars().take(p).collect();
                }
                spec.fill = None;
                if spec.align == Some('=') {
                    spec.align = None;
                }
                pad(&s, &spec, '>')
            }
            'd' | 'i' | 'u' | 'x' | 'X' | 'o' | 'c' => {
                let n = match (as_int(&v), as_float(&v)) {
                    (Some(i), _) => i,
                    (None, Some(f)) if ty != 'c' => f.trunc() as i128,
                    _ => {
                        return Err(py_err(
                            "TypeError",
                            format!(
                                "%{ty} format: a real number is required, not {}",
                                type_name(&v)
                            ),
                        ))
                    }
                };
                spec.precision = None;
                spec.ty = Some(if ty == 'i' || ty == 'u' { 'd' } else { ty });
                format_number(&super::value::int_value(n), &spec)?
            }
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
                let f = as_float(&v).ok_or_else(|| {
                    py_err(
                        "TypeError",
                        format!("must be real number, not {}", type_name(&v)),
                    )
                })?;
                spec.ty = Some(ty);
                spec.precision = Some(spec.precision.unwrap_or(6));
                format_number(&Value::from(f), &spec)?
            }
            other => {
                return Err(py_err(
                    "ValueError",
                    format!("unsupported format character '{other}'"),
                ))
            }
        };
        out.push_str(&text);
    }
    if !mapping && !used_mapping && next < list.len() {
        return Err(py_err(
            "TypeError",
            "not all arguments converted during string formatting",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::render::objects::PySeq;

    #[test]
    fn python_formats() {
        let t = PySeq::tuple(vec![Value::from("x"), Value::from(7)]);
        assert_eq!(percent("%s-%03d", &t).unwrap(), "x-007");
        assert_eq!(percent("%.2f", &Value::from(1.23456)).unwrap(), "1.23");
        assert_eq!(
            percent("%(a)s", &Value::from_serialize(serde_json::json!({"a": 1}))).unwrap(),
            "1"
        );
        let kwargs = Some(Kwargs::from_iter([("x", Value::from("y"))]));
        assert_eq!(
            str_format(
                "{0}/{1:03d}/{x}",
                &[Value::from("a"), Value::from(7)],
                &kwargs
            )
            .unwrap(),
            "a/007/y"
        );
        assert_eq!(
            format_value(&Value::from(1234567.891), ",.2f").unwrap(),
            "1,234,567.89"
        );
        assert_eq!(format_value(&Value::from(0.5), ".0%").unwrap(), "50%");
        assert_eq!(format_value(&Value::from(1e-7), "g").unwrap(), "1e-07");
        assert_eq!(format_value(&Value::from("ab"), "^6").unwrap(), "  ab  ");
        assert_eq!(format_value(&Value::from(-5), "05d").unwrap(), "-0005");
    }
}
