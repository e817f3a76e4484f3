//! The parts of Python's `urllib.parse` (and `json.dumps`) that Airflow's `Connection` uses
//! to read and write URIs, reproduced byte for byte so that a URI round-trips as in Airflow.

use serde_json::Value;

pub(crate) struct UrlParts<'a> {
    pub(crate) netloc: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
}

/// `scheme://...` → the scheme, when it is a valid one (letters, digits, `+-.`).
pub(crate) fn split_scheme(uri: &str) -> Option<(&str, &str)> {
    let (s, rest) = uri.split_once("://")?;
    let mut chars = s.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((s, rest))
}

/// Python's `urlsplit` of `//netloc/path?query#fragment`.
pub(crate) fn split_url(s: &str) -> UrlParts<'_> {
    let s = s.split('#').next().unwrap_or("");
    let s = s.strip_prefix("//").unwrap_or(s);
    let end = s.find(['/', '?']).unwrap_or(s.len());
    let (netloc, rest) = s.split_at(end);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    UrlParts {
        netloc,
        path,
        query,
    }
}

/// `host:port`, `[v6]:port` or `host`.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':'));
        }
    }
    match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

/// Percent-decoding (`%41` → `A`), as Python's `unquote`.
pub fn unquote(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Python's `parse_qsl(q, keep_blank_values=True)`: `+` is a space, then percent-decoding.
pub(crate) fn parse_qsl(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unquote(&k.replace('+', " ")), unquote(&v.replace('+', " ")))
        })
        .collect()
}

/// Python's `quote(s, safe='')`: everything but `A-Za-z0-9_.-~` percent-encoded.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Python's `urlencode`: `quote_plus` of each key and value.
pub(crate) fn urlencode(pairs: &[(&str, &str)]) -> String {
    let plus = |s: &str| quote(s).replace("%20", "+");
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", plus(k), plus(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// JSON as Python's `json.dumps` writes it (`", "` and `": "` separators, non-ASCII
/// escaped), so an extra parsed from a URI is stored byte for byte as Airflow stores it.
pub fn python_json(v: &Value) -> String {
    fn string(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for u in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    string(k, out);
                    out.push_str(": ");
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write(v, out);
                }
                out.push(']');
            }
            Value::String(s) => string(s, out),
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}
