//! Dates as text: Python's `strftime`/`strptime` (glibc directives), pendulum's `format()`
//! tokens, and ISO 8601 as `datetime.fromisoformat` reads it. Pure functions on a wall-clock
//! time and its zone.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use minijinja::Error;

use super::{build, PyTz};
use crate::worker::render::value::py_err;

/// `datetime.fromisoformat(text)`: the wall-clock time and its zone.
pub fn fromisoformat(s: &str) -> Result<(NaiveDateTime, Option<PyTz>), Error> {
    let bad = || py_err("ValueError", format!("Invalid isoformat string: '{s}'"));
    let (body, tz) = split_offset(s);
    let tz = match tz {
        Some(t) => Some(parse_offset(t).ok_or_else(bad)?),
        None => None,
    };
    let local = if body.len() == 10 {
        NaiveDate::parse_from_str(body, "%Y-%m-%d")
            .map_err(|_| bad())?
            .and_time(NaiveTime::MIN)
    } else {
        let norm = body.replacen(' ', "T", 1);
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(&norm, f).ok())
            .ok_or_else(bad)?
    };
    Ok((local, tz))
}

fn split_offset(s: &str) -> (&str, Option<&str>) {
    if let Some(body) = s.strip_suffix('Z') {
        return (body, Some("+00:00"));
    }
    if s.len() > 10 {
        if let Some(i) = s[10..].rfind(['+', '-']) {
            return (&s[..10 + i], Some(&s[10 + i..]));
        }
    }
    (s, None)
}

fn parse_offset(t: &str) -> Option<PyTz> {
    let sign = if t.starts_with('-') { -1 } else { 1 };
    let digits: String = t[1..].chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..4].parse().ok()?;
    Some(PyTz {
        offset: sign * (h * 3600 + m * 60),
    })
}

/// Python's `strftime` (glibc directives; `%f` microseconds, `%z`/`%Z` from the zone).
pub fn strftime(t: NaiveDateTime, tz: Option<PyTz>, fmt: &str) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let flag = match chars.peek() {
            Some(&f @ ('-' | '_' | '0')) => {
                chars.next();
                Some(f)
            }
            _ => None,
        };
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        match d {
            '%' => out.push('%'),
            'f' => out.push_str(&format!("{:06}", t.nanosecond() / 1000)),
            'z' => {
                if let Some(tz) = tz {
                    out.push_str(&tz.offset_text(false));
                }
            }
            'Z' => {
                if let Some(tz) = tz {
                    out.push_str(&tz.name());
                }
            }
            's' => {
                let epoch = t - Duration::seconds(tz.map_or(0, |z| z.offset as i64));
                out.push_str(&epoch.and_utc().timestamp().to_string());
            }
            'a' | 'A' | 'w' | 'd' | 'b' | 'B' | 'h' | 'm' | 'y' | 'Y' | 'H' | 'I' | 'p' | 'M'
            | 'S' | 'j' | 'U' | 'W' | 'c' | 'x' | 'X' | 'G' | 'g' | 'u' | 'V' | 'C' | 'e' | 'k'
            | 'l' | 'D' | 'F' | 'T' | 'R' | 'r' | 'n' | 't' | 'P' => {
                let spec = match flag {
                    Some(f) => format!("%{f}{d}"),
                    None => format!("%{d}"),
                };
                out.push_str(&t.format(&spec).to_string());
            }
            other => {
                out.push('%');
                if let Some(f) = flag {
                    out.push(f);
                }
                out.push(other);
            }
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Python's `datetime.strptime(text, format)`.
pub fn strptime(s: &str, fmt: &str) -> Result<(NaiveDateTime, Option<PyTz>), Error> {
    let mismatch = || {
        py_err(
            "ValueError",
            format!("time data '{s}' does not match format '{fmt}'"),
        )
    };
    let (mut y, mut mo, mut d, mut h, mut mi, mut sec, mut us) =
        (1900i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let mut yday: Option<i64> = None;
    let mut tz = None;
    let mut rest = s;
    let mut f = fmt.chars().peekable();
    let num = |rest: &mut &str, max_len: usize| -> Option<i64> {
        let n = rest
            .char_indices()
            .take(max_len)
            .take_while(|(_, c)| c.is_ascii_digit())
            .count();
        if n == 0 {
            return None;
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        a.parse().ok()
    };
    let name = |rest: &mut &str, names: &[&str]| -> Option<i64> {
        for (i, full) in names.iter().enumerate() {
            for cand in [*full, &full[..3]] {
                if rest.len() >= cand.len() && rest[..cand.len()].eq_ignore_ascii_case(cand) {
                    *rest = &rest[cand.len()..];
                    return Some(i as i64);
                }
            }
        }
        None
    };
    while let Some(c) = f.next() {
        if c != '%' {
            if c.is_whitespace() {
                rest = rest.trim_start();
                continue;
            }
            rest = rest.strip_prefix(c).ok_or_else(mismatch)?;
            continue;
        }
        let d_ = f.next().ok_or_else(mismatch)?;
        match d_ {
            'Y' => y = num(&mut rest, 4).ok_or_else(mismatch)?,
            'y' => {
                let v = num(&mut rest, 2).ok_or_else(mismatch)?;
                y = if v < 69 { 2000 + v } else { 1900 + v };
            }
            'm' => mo = num(&mut rest, 2).ok_or_else(mismatch)?,
            'd' => d = num(&mut rest, 2).ok_or_else(mismatch)?,
            'H' => h = num(&mut rest, 2).ok_or_else(mismatch)?,
            'I' => h = num(&mut rest, 2).ok_or_else(mismatch)?,
            'M' => mi = num(&mut rest, 2).ok_or_else(mismatch)?,
            'S' => sec = num(&mut rest, 2).ok_or_else(mismatch)?,
            'j' => yday = Some(num(&mut rest, 3).ok_or_else(mismatch)?),
            'f' => {
                let before = rest.len();
                let v = num(&mut rest, 6).ok_or_else(mismatch)?;
                let digits = before - rest.len();
                us = v * 10i64.pow((6 - digits) as u32);
            }
            'b' | 'B' | 'h' => mo = name(&mut rest, &MONTHS).ok_or_else(mismatch)? + 1,
            'a' | 'A' => {
                name(&mut rest, &DAYS).ok_or_else(mismatch)?;
            }
            'p' => {
                let up = rest.get(..2).map(str::to_ascii_uppercase);
                match up.as_deref() {
                    Some("AM") => pm = Some(false),
                    Some("PM") => pm = Some(true),
                    _ => return Err(mismatch()),
                }
                rest = &rest[2..];
            }
            'z' => {
                let end = rest
                    .char_indices()
                    .skip(1)
                    .find(|(_, c)| !(c.is_ascii_digit() || *c == ':'))
                    .map_or(rest.len(), |(i, _)| i);
                if rest.starts_with('Z') {
                    tz = Some(PyTz::UTC);
                    rest = &rest[1..];
                } else {
                    tz = Some(parse_offset(&rest[..end]).ok_or_else(mismatch)?);
                    rest = &rest[end..];
                }
            }
            'Z' => {
                let n = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
                if !matches!(&rest[..n], "UTC" | "GMT") {
                    return Err(mismatch());
                }
                rest = &rest[n..];
            }
            '%' => rest = rest.strip_prefix('%').ok_or_else(mismatch)?,
            _ => {
                return Err(py_err(
                    "ValueError",
                    format!("'{d_}' is a bad directive in format '{fmt}'"),
                ))
            }
        }
    }
    if !rest.is_empty() {
        return Err(py_err(
            "ValueError",
            format!("unconverted data remains: {rest}"),
        ));
    }
    if let Some(pm) = pm {
        h = h % 12 + if pm { 12 } else { 0 };
    }
    if let Some(yd) = yday {
        let date = NaiveDate::from_yo_opt(y as i32, yd as u32).ok_or_else(mismatch)?;
        mo = date.month() as i64;
        d = date.day() as i64;
    }
    let local = build(y, mo, d, h, mi, sec, us).map_err(|_| mismatch())?;
    Ok((local, tz))
}

/// pendulum's `format()` tokens (`YYYY-MM-DD HH:mm:ss`, `Do MMMM`, `[literal]`).
pub fn pendulum_format(local: NaiveDateTime, tz: Option<PyTz>, fmt: &str) -> String {
    const TOKENS: [&str; 38] = [
        "SSSSSS", "SSSSS", "SSSS", "SSS", "SS", "S", "YYYY", "YY", "Q", "MMMM", "MMM", "MM", "M",
        "DDDD", "DDD", "Do", "DD", "D", "dddd", "ddd", "dd", "d", "E", "HH", "H", "hh", "h", "mm",
        "m", "ss", "s", "A", "a", "X", "x", "ZZ", "Z", "zz",
    ];
    let l = local;
    let timestamp_micros = {
        let utc = local - Duration::seconds(tz.map_or(0, |z| z.offset as i64));
        utc.and_utc().timestamp_micros() as i128
    };
    let mut out = String::new();
    let mut i = 0;
    let b = fmt.as_bytes();
    while i < fmt.len() {
        if b[i] == b'[' {
            if let Some(end) = fmt[i..].find(']') {
                out.push_str(&fmt[i + 1..i + end]);
                i += end + 1;
                continue;
            }
        }
        let Some(tok) = TOKENS.iter().find(|t| fmt[i..].starts_with(**t)) else {
            let c = fmt[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let h12 = match l.hour() % 12 {
            0 => 12,
            h => h,
        };
        let micro = l.nanosecond() / 1000;
        let s = match *tok {
            "YYYY" => format!("{:04}", l.year()),
            "YY" => format!("{:02}", l.year() % 100),
            "Q" => ((l.month() - 1) / 3 + 1).to_string(),
            "MMMM" => MONTHS[l.month0() as usize].to_string(),
            "MMM" => MONTHS[l.month0() as usize][..3].to_string(),
            "MM" => format!("{:02}", l.month()),
            "M" => l.month().to_string(),
            "DDDD" => format!("{:03}", l.ordinal()),
            "DDD" => l.ordinal().to_string(),
            "Do" => {
                let d = l.day();
                let suffix = match (d % 10, d % 100) {
                    (1, x) if x != 11 => "st",
                    (2, x) if x != 12 => "nd",
                    (3, x) if x != 13 => "rd",
                    _ => "th",
                };
                format!("{d}{suffix}")
            }
            "DD" => format!("{:02}", l.day()),
            "D" => l.day().to_string(),
            "dddd" => DAYS[l.weekday().num_days_from_monday() as usize].to_string(),
            "ddd" => DAYS[l.weekday().num_days_from_monday() as usize][..3].to_string(),
            "dd" => DAYS[l.weekday().num_days_from_monday() as usize][..2].to_string(),
            "d" => l.weekday().num_days_from_sunday().to_string(),
            "E" => l.weekday().number_from_monday().to_string(),
            "HH" => format!("{:02}", l.hour()),
            "H" => l.hour().to_string(),
            "hh" => format!("{h12:02}"),
            "h" => h12.to_string(),
            "mm" => format!("{:02}", l.minute()),
            "m" => l.minute().to_string(),
            "ss" => format!("{:02}", l.second()),
            "s" => l.second().to_string(),
            "A" => if l.hour() < 12 { "AM" } else { "PM" }.to_string(),
            "a" => if l.hour() < 12 { "am" } else { "pm" }.to_string(),
            "X" => (timestamp_micros.div_euclid(1_000_000)).to_string(),
            "x" => (timestamp_micros.div_euclid(1000)).to_string(),
            "ZZ" => tz.map(|t| t.offset_text(false)).unwrap_or_default(),
            "Z" => tz.map(|t| t.offset_text(true)).unwrap_or_default(),
            "zz" => tz.map(PyTz::name).unwrap_or_default(),
            frac => format!("{micro:06}")[..frac.len()].to_string(),
        };
        out.push_str(&s);
        i += tok.len();
    }
    out
}
