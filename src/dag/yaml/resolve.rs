//! PyYAML's implicit resolvers (YAML 1.1) for plain scalars, written out by hand from its
//! regular expressions (`yaml/resolver.py`), so `yes`, `017`, `1:30` and `2024-01-01` mean
//! what they mean to Airflow.

use super::NodeKind;

/// PyYAML's implicit resolvers (YAML 1.1) for a plain scalar.
pub fn resolve_plain(s: String) -> NodeKind {
    match s.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return NodeKind::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return NodeKind::Bool(false)
        }
        _ => {}
    }
    if let Some(i) = parse_int(&s) {
        return NodeKind::Int(i);
    }
    if let Some(f) = parse_float(&s) {
        return NodeKind::Float(f);
    }
    if is_date(&s) {
        return NodeKind::Date(s);
    }
    if is_timestamp(&s) {
        return NodeKind::DateTime(s);
    }
    NodeKind::Str(s)
}

fn split_sign(s: &str) -> (i64, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    }
}

fn digits_with_underscores(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c == '_' || c.is_digit(radix)) && s.chars().any(|c| c != '_')
}

/// `[-+]?(0b[01_]+ | 0[0-7_]+ | 0 | [1-9][0-9_]* | 0x[0-9a-fA-F_]+ | [1-9][0-9_]*(:[0-5]?[0-9])+)`.
/// Note `0o17` is not an int in YAML 1.1: PyYAML reads it as the string "0o17".
fn parse_int(s: &str) -> Option<i64> {
    let (sign, body) = split_sign(s);
    let radix_parse = |digits: &str, radix| {
        if !digits_with_underscores(digits, radix) {
            return None;
        }
        i64::from_str_radix(&digits.replace('_', ""), radix)
            .ok()
            .map(|v| sign * v)
    };
    if let Some(b) = body.strip_prefix("0b") {
        return radix_parse(b, 2);
    }
    if let Some(h) = body.strip_prefix("0x") {
        return radix_parse(h, 16);
    }
    if body == "0" {
        return Some(0);
    }
    if let Some(o) = body.strip_prefix('0') {
        return radix_parse(o, 8);
    }
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if body.contains(':') {
        return sexagesimal(body).and_then(|v| {
            if v.fract() == 0.0 {
                Some(sign * v as i64)
            } else {
                None
            }
        });
    }
    radix_parse(body, 10)
}

/// `1:30` → 90 (base 60), as YAML 1.1 reads it; the last part may carry a fraction (floats).
fn sexagesimal(body: &str) -> Option<f64> {
    let mut parts = body.split(':');
    let first = parts.next()?;
    if !first.starts_with(|c: char| matches!(c, '1'..='9')) || !digits_with_underscores(first, 10) {
        return None;
    }
    let mut value: f64 = first.replace('_', "").parse().ok()?;
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let (int_part, frac) = match part.split_once('.') {
            Some((a, b)) if last => (a, Some(b)),
            _ => (*part, None),
        };
        if int_part.is_empty()
            || int_part.len() > 2
            || !int_part.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let n: f64 = int_part.parse().ok()?;
        if (int_part.len() == 2 && !int_part.starts_with(|c| matches!(c, '0'..='5'))) || n >= 60.0 {
            return None;
        }
        value = value * 60.0 + n;
        if let Some(f) = frac {
            if !f.chars().all(|c| c.is_ascii_digit() || c == '_') {
                return None;
            }
            let f = f.replace('_', "");
            if !f.is_empty() {
                value += format!("0.{f}").parse::<f64>().ok()?;
            }
        }
    }
    Some(value)
}

/// PyYAML's float: a dot is required (`1e3` is a string), an exponent needs its sign.
fn parse_float(s: &str) -> Option<f64> {
    let (sign, body) = split_sign(s);
    let sign = sign as f64;
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if body.len() == s.len() => return Some(f64::NAN),
        _ => {}
    }
    if body.contains(':') {
        return if body.contains('.') {
            sexagesimal(body).map(|v| sign * v)
        } else {
            None
        };
    }
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.')?;
    let int_ok = if int_part.is_empty() {
        // `.5` is a float but `+.5` is not (PyYAML's regex has no sign on that branch).
        s.len() == body.len() && frac_part.starts_with(|c: char| c.is_ascii_digit())
    } else {
        int_part.starts_with(|c: char| c.is_ascii_digit())
            && int_part.chars().all(|c| c.is_ascii_digit() || c == '_')
    };
    if !int_ok || !frac_part.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['+', '-'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let text = format!(
        "{}{}",
        if int_part.is_empty() { "0" } else { "" },
        body.replace('_', "")
    );
    text.parse::<f64>().ok().map(|v| sign * v)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `YYYY-M-D` + (`T`|`t`|spaces) + `H:MM:SS` + optional `.fraction` + optional (spaces)`Z` / `±H[:MM]`.
fn is_timestamp(s: &str) -> bool {
    fn digits(s: &str, min: usize, max: usize) -> Option<(&str, &str)> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n >= min && n <= max).then(|| (&s[..n], &s[n..]))
    }
    fn parse(s: &str) -> Option<()> {
        let (_, r) = digits(s, 4, 4)?;
        let (_, r) = digits(r.strip_prefix('-')?, 1, 2)?;
        let (_, r) = digits(r.strip_prefix('-')?, 1, 2)?;
        let r = match r.strip_prefix(['T', 't']) {
            Some(r) => r,
            None => {
                let trimmed = r.trim_start_matches([' ', '\t']);
                if trimmed.len() == r.len() {
                    return None;
                }
                trimmed
            }
        };
        let (_, r) = digits(r, 1, 2)?;
        let (_, r) = digits(r.strip_prefix(':')?, 2, 2)?;
        let (_, mut r) = digits(r.strip_prefix(':')?, 2, 2)?;
        if let Some(f) = r.strip_prefix('.') {
            r = f.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        let r = r.trim_start_matches([' ', '\t']);
        if r.is_empty() || r == "Z" {
            return Some(());
        }
        let (_, r) = digits(r.strip_prefix(['+', '-'])?, 1, 2)?;
        if r.is_empty() {
            return Some(());
        }
        let (_, r) = digits(r.strip_prefix(':')?, 2, 2)?;
        r.is_empty().then_some(())
    }
    parse(s).is_some()
}
