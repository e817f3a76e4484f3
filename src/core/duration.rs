//! Durations as DAG files write them: `250ms`, `30s`, `5m`, `1h`, `1d` (also combined, `1h30m`),
//! ISO-8601 `PT5M` / `P1DT2H`, Python's clock form `00:05:00` / `1 day, 2:00:00` (what
//! `str(timedelta)` prints and pydantic reads, so Airflow files carry it), or a plain number of
//! seconds. Written back in the short form. At most [`Duration::MAX`] (100 years): longer is
//! surely a mistake, and beyond it a deadline no longer fits a Postgres interval or a clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);
    /// The longest duration accepted anywhere: 100 years (36500 days).
    pub const MAX: Duration = Duration(std::time::Duration::from_secs(36_500 * 86_400));

    pub fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_secs_const(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Parses a number of seconds (as YAML gives an unquoted `300` or `1.5`).
    pub fn from_secs_f64(secs: f64) -> Result<Self, String> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "a duration must be a non-negative number of seconds, got {secs}"
            ));
        }
        Duration::at_most_max((secs * 1000.0).round(), &format!("{secs} seconds"))
    }

    /// `ms` milliseconds, unless that is more than [`Duration::MAX`].
    fn at_most_max(ms: f64, what: &str) -> Result<Self, String> {
        if ms > Duration::MAX.0.as_millis() as f64 {
            return Err(format!(
                "a duration must be at most {} (100 years), got {what}",
                Duration::MAX
            ));
        }
        Ok(Duration(std::time::Duration::from_millis(ms as u64)))
    }

    pub fn pg_interval_micros(self) -> i64 {
        self.0.as_micros().min(i64::MAX as u128) as i64
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let hint =
            "write it like `30s`, `5m`, `1h30m`, `1d`, `PT5M`, `00:05:00` or a number of seconds";
        if s.is_empty() {
            return Err(format!("empty duration; {hint}"));
        }
        if let Ok(secs) = s.parse::<f64>() {
            return Duration::from_secs_f64(secs);
        }
        if s.contains(':') {
            return clock_form(s).ok_or_else(|| format!("invalid duration `{input}`; {hint}"));
        }
        let (body, iso) = match s.strip_prefix('P').or_else(|| s.strip_prefix('p')) {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let mut total_ms: f64 = 0.0;
        let mut number = String::new();
        let mut in_time = !iso;
        let mut saw_unit = false;
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            if iso && (c == 'T' || c == 't') && number.is_empty() {
                in_time = true;
                continue;
            }
            // `ms` (milliseconds) in the short form; `m` alone is minutes.
            let millis = !iso
                && c.eq_ignore_ascii_case(&'m')
                && chars.peek().is_some_and(|n| n.eq_ignore_ascii_case(&'s'));
            if millis {
                chars.next();
            }
            let unit_ms: f64 = match (c.to_ascii_lowercase(), iso, in_time) {
                ('m', false, _) if millis => 1.0,
                ('w', _, false) | ('w', false, _) => 604_800_000.0,
                ('d', _, false) | ('d', false, _) => 86_400_000.0,
                ('h', _, true) => 3_600_000.0,
                ('m', _, true) => 60_000.0,
                ('s', _, true) => 1_000.0,
                _ => {
                    return Err(format!(
                        "invalid duration `{input}`: unexpected `{c}`; {hint}"
                    ))
                }
            };
            let n: f64 = number.parse().map_err(|_| {
                format!("invalid duration `{input}`: missing number before `{c}`; {hint}")
            })?;
            total_ms += (n * unit_ms).round();
            number.clear();
            saw_unit = true;
        }
        if !number.is_empty() || !saw_unit {
            return Err(format!(
                "invalid duration `{input}`: a number needs a unit; {hint}"
            ));
        }
        Duration::at_most_max(total_ms, &format!("`{input}`"))
    }
}

/// `[D day[s], ]H:MM[:SS[.ffffff]]` (Python's `str(timedelta)`) or `Dd,HH:MM:SS` (pydantic).
fn clock_form(s: &str) -> Option<Duration> {
    let (days, clock) = match s.split_once(',') {
        Some((d, c)) => {
            let d = d.trim();
            let n = d
                .strip_suffix("days")
                .or_else(|| d.strip_suffix("day"))
                .or_else(|| d.strip_suffix('d'))?
                .trim();
            (n.parse::<u64>().ok()?, c.trim())
        }
        None => (0, s),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, sec) = match parts[..] {
        [h, m] => (h, m, "00"),
        [h, m, sec] => (h, m, sec),
        _ => return None,
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) || m.len() != 2 {
        return None;
    }
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    if !digits(whole) || whole.len() != 2 || !(frac.is_empty() || digits(frac)) {
        return None;
    }
    let (h, m, whole): (u64, u64, u64) = (h.parse().ok()?, m.parse().ok()?, whole.parse().ok()?);
    if m >= 60 || whole >= 60 {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    let secs = days.checked_mul(86_400)? + h.checked_mul(3_600)? + m * 60 + whole;
    Some(Duration(
        std::time::Duration::from_secs(secs) + std::time::Duration::from_millis(ms),
    ))
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return write!(f, "0s");
        }
        if ms % 1000 != 0 {
            return write!(f, "{}s", self.0.as_secs_f64());
        }
        let mut secs = ms / 1000;
        for (unit, len) in [("d", 86_400u128), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= len {
                write!(f, "{}{unit}", secs / len)?;
                secs %= len;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Duration::from_secs_f64(n).map_err(serde::de::Error::custom),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: `30s`, `5m`, `1h30m`, `1d`, ISO-8601 `PT5M`, `00:05:00`, or a number of seconds.",
            "anyOf": [
                {"type": "string", "pattern": "^(P[0-9WDTHMS.]+|([0-9.]+(ms|[wdhms]))+|([0-9]+ ?(d|days?), ?)?[0-9]+:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?)$"},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Duration {
        s.parse().unwrap()
    }

    #[test]
    fn short_forms() {
        assert_eq!(p("30s"), Duration::from_secs(30));
        assert_eq!(p("5m"), Duration::from_secs(300));
        assert_eq!(p("1h30m"), Duration::from_secs(5400));
        assert_eq!(p("1d"), Duration::from_secs(86400));
        assert_eq!(p("2w"), Duration::from_secs(2 * 604_800));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("1m30s"), Duration::from_secs(90));
        assert_eq!(p("1s250ms"), Duration::from_millis(1250));
    }

    #[test]
    fn iso_and_seconds() {
        assert_eq!(p("PT5M"), Duration::from_secs(300));
        assert_eq!(p("P1DT2H"), Duration::from_secs(86400 + 7200));
        assert_eq!(p("PT0.5S"), Duration::from_millis(500));
        assert_eq!(p("300"), Duration::from_secs(300));
        assert_eq!(p("00:05:00"), Duration::from_secs(300));
        assert_eq!(p("1:30:00"), Duration::from_secs(5400));
        assert_eq!(p("0:00:01.500000"), Duration::from_millis(1500));
        assert_eq!(p("1 day, 0:00:00"), Duration::from_secs(86400));
        assert_eq!(p("2 days, 1:00:00"), Duration::from_secs(2 * 86400 + 3600));
        assert_eq!(p("1d,01:00:00"), Duration::from_secs(86400 + 3600));
        assert_eq!(p("05:00"), Duration::from_secs(5 * 3600));
        for bad in ["00:60:00", "1:2:3", "a:00:00", "00:05:00:00", "-1:00:00"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
        // In ISO form M before T is months, which we do not accept.
        assert!("P1M".parse::<Duration>().is_err());
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "5", "abc", "5x", "m5", "-3s", "1h 2"] {
            let r = bad.parse::<Duration>();
            if bad == "5" {
                assert_eq!(r.unwrap(), Duration::from_secs(5));
                continue;
            }
            let err = r.unwrap_err();
            assert!(err.contains("30s"), "{bad}: {err}");
        }
    }

    #[test]
    fn at_most_100_years() {
        assert_eq!(p("36500d"), Duration::MAX);
        for too_long in [
            "36501d",
            "99999999999999999999",
            "1e300",
            "P99999999999999999999D",
        ] {
            let e = too_long.parse::<Duration>().unwrap_err();
            assert!(e.contains("at most 36500d (100 years)"), "{too_long}: {e}");
        }
        assert!(Duration::from_secs_f64(1e20).is_err());
        assert!(Duration::MAX.pg_interval_micros() < i64::MAX / 1000);
    }

    #[test]
    fn displays_short_form() {
        assert_eq!(Duration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(Duration::from_secs(86400 + 1).to_string(), "1d1s");
        assert_eq!(Duration::ZERO.to_string(), "0s");
        assert_eq!(
            p(&Duration::from_secs(3725).to_string()),
            Duration::from_secs(3725)
        );
    }
}
