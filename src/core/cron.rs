//! Cron expressions with croniter's meaning, evaluated with the `cron` crate.
//!
//! Airflow reads `schedule: "…"` with croniter (through `CronTriggerTimetable`), and a DAG
//! file must tick on the same instants here. The `cron` crate does the field arithmetic, but
//! three things differ and are bridged here:
//!
//! - **Day-of-month OR day-of-week.** When both fields are restricted (neither is `*` or `?`),
//!   croniter, like every Unix cron, fires on days matching *either* (`0 0 1-7 * 1`: the first
//!   seven days and every Monday). The `cron` crate wants *both*. Such an expression becomes two
//!   crate schedules, one per day field, whose ticks are merged.
//! - **Weekday numbers.** croniter counts 0-7 from Sunday (0 and 7 both Sunday); the crate 1-7.
//!   Numeric day-of-week lists, ranges and steps are rewritten into an explicit list.
//! - **`L`, `nW`, `n#k`.** croniter knows the last day of the month (`L`), the weekday nearest
//!   a day (`15W`) and the k-th weekday of the month (`1#2`, the second Monday); the crate knows
//!   none. Such a field is widened to the days that could match and each tick is checked.
//!
//! `tests/fixtures/airflow/cron_ticks.json` (croniter's own output) holds the rules in place.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};

/// What to write instead, appended to every parse error.
pub const FORM: &str = "write five fields `minute hour day-of-month month day-of-week`, \
e.g. `0 3 * * *` or `*/15 9-17 * * MON-FRI`, or a preset (@once, @hourly, @daily, @weekly, \
@monthly, @yearly)";

/// Airflow's presets with their cron equivalent; `@once` is handled by the caller.
pub const PRESETS: [(&str, &str); 8] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@quarterly", "0 0 1 */3 *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// How many crate ticks one step may look at before giving up (a `15W` or `1#2` filter skips
/// most candidates; an impossible one such as `31 4` must end rather than spin).
const MAX_CANDIDATES: usize = 5_000;

/// A parsed 5-field expression (or preset).
#[derive(Clone, Debug)]
pub struct Cron {
    parts: Vec<Part>,
}

/// One crate schedule and the day check its widened fields need.
#[derive(Clone, Debug)]
struct Part {
    schedule: cron::Schedule,
    dom: Option<DayOfMonth>,
    dow: Option<Vec<(u32, Option<u32>)>>,
}

/// Day-of-month items that need a check per tick.
#[derive(Clone, Debug)]
struct DayOfMonth {
    days: Vec<u32>,
    last: bool,
    nearest_weekday: Vec<u32>,
}

impl Cron {
    /// Parses a croniter expression or one of Airflow's presets.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let expr = expr.trim();
        let five = PRESETS
            .iter()
            .find(|(p, _)| *p == expr)
            .map(|(_, c)| *c)
            .unwrap_or(expr);
        if five.starts_with('@') {
            return Err(format!("unknown schedule preset `{expr}`; {FORM}"));
        }
        let fields: Vec<&str> = five.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "invalid cron expression `{expr}`: it has {} fields; {FORM}",
                fields.len()
            ));
        };
        let bad = |e: String| format!("invalid cron expression `{expr}`: {e}; {FORM}");
        let dom = dom.replace('?', "*");
        let dow = dow.replace('?', "*");
        let (dom_field, dom_check) = day_of_month(&dom).map_err(bad)?;
        let (dow_field, dow_check) = day_of_week(&dow).map_err(bad)?;
        let mut shapes = Vec::new();
        if dom != "*" && dow != "*" {
            shapes.push((dom_field, dom_check, "*".to_string(), None));
            shapes.push(("*".to_string(), None, dow_field, dow_check));
        } else {
            shapes.push((dom_field, dom_check, dow_field, dow_check));
        }
        let mut parts = Vec::new();
        for (d, dom, w, dow) in shapes {
            let six = format!("0 {minute} {hour} {d} {month} {w}");
            let schedule = cron::Schedule::from_str(&six)
                .map_err(|_| bad(which_field_is_bad(&[minute, hour, &d, month, &w], &fields)))?;
            parts.push(Part { schedule, dom, dow });
        }
        Ok(Cron { parts })
    }

    /// The `cron` crate's 6-field form of the first part (what stored specs carry).
    pub fn crate_form(&self) -> String {
        self.parts[0].schedule.to_string()
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parts
            .iter()
            .filter_map(|p| {
                p.schedule
                    .after(&t)
                    .take(MAX_CANDIDATES)
                    .find(|c| p.accepts(c))
            })
            .min()
    }

    /// The last tick strictly before `t`.
    pub fn prev_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parts
            .iter()
            .filter_map(|p| {
                let mut it = p.schedule.after(&t);
                std::iter::from_fn(|| it.next_back())
                    .take(MAX_CANDIDATES)
                    .find(|c| p.accepts(c))
            })
            .max()
    }

    /// The first tick at or after `t`.
    pub fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(t - Duration::microseconds(1))
    }

    /// The last tick at or before `t`.
    pub fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.prev_before(t + Duration::microseconds(1))
    }
}

impl Part {
    fn accepts(&self, t: &DateTime<Utc>) -> bool {
        let date = t.date_naive();
        let dom_ok = self.dom.as_ref().is_none_or(|d| d.matches(date));
        let dow_ok = self.dow.as_ref().is_none_or(|items| {
            let wd = date.weekday().num_days_from_sunday();
            let nth = (date.day() - 1) / 7 + 1;
            items
                .iter()
                .any(|(d, k)| *d == wd && k.is_none_or(|k| k == nth))
        });
        dom_ok && dow_ok
    }
}

impl DayOfMonth {
    fn matches(&self, date: NaiveDate) -> bool {
        let last = last_day(date.year(), date.month());
        self.days.contains(&date.day())
            || (self.last && date.day() == last)
            || self
                .nearest_weekday
                .iter()
                .any(|n| nearest_weekday(date.year(), date.month(), *n, last) == Some(date.day()))
    }
}

fn last_day(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// croniter's `nW`: the weekday nearest day `n` without leaving the month; None when the
/// month is shorter than `n`.
fn nearest_weekday(year: i32, month: u32, n: u32, last: u32) -> Option<u32> {
    if n > last {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year, month, n)?;
    Some(match date.weekday() {
        Weekday::Sat if n == 1 => 3,
        Weekday::Sat => n - 1,
        Weekday::Sun if n == last => n - 2,
        Weekday::Sun => n + 1,
        _ => n,
    })
}

/// A day-of-month field for the crate, and the per-tick check when it has `L` or `nW`.
fn day_of_month(field: &str) -> Result<(String, Option<DayOfMonth>), String> {
    let special = |p: &str| p.eq_ignore_ascii_case("l") || p.to_ascii_lowercase().ends_with('w');
    if !field.split(',').any(special) {
        return Ok((field.to_string(), None));
    }
    let mut check = DayOfMonth {
        days: Vec::new(),
        last: false,
        nearest_weekday: Vec::new(),
    };
    let mut candidates: Vec<u32> = Vec::new();
    for part in field.split(',') {
        if part.eq_ignore_ascii_case("l") {
            check.last = true;
            candidates.extend(28..=31);
        } else if let Some(n) = part.strip_suffix(['W', 'w']) {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=31).contains(n))
                .ok_or_else(|| format!("day of month `{part}`: `W` needs a day 1-31 before it"))?;
            check.nearest_weekday.push(n);
            candidates.extend(n.saturating_sub(2).max(1)..=(n + 2).min(31));
        } else {
            let days = expand(part, 1, 31, "day of month")?;
            check.days.extend(&days);
            candidates.extend(days);
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    let field = candidates
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Ok((field, Some(check)))
}

/// A day-of-week field in the crate's numbering (Sunday = 1), and the per-tick check when it
/// has `n#k`. Names (`MON-FRI`) mean the same in both and pass through.
/// Weekdays (0 = Sunday) with an optional n-th-of-the-month, as `n#k` asks.
type Nth = Vec<(u32, Option<u32>)>;

fn day_of_week(field: &str) -> Result<(String, Option<Nth>), String> {
    if field == "*" {
        return Ok((field.into(), None));
    }
    let mut out = Vec::new();
    let mut nth: Vec<(u32, Option<u32>)> = Vec::new();
    let has_nth = field.contains('#');
    for part in field.split(',') {
        if let Some((day, k)) = part.split_once('#') {
            let day = weekday_number(day)?;
            let k: u32 = k
                .parse()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or_else(|| format!("`{part}`: the number after `#` must be 1-5"))?;
            out.push((day % 7 + 1).to_string());
            nth.push((day % 7, Some(k)));
            continue;
        }
        if part.chars().any(|c| c.is_ascii_alphabetic()) {
            if part.to_ascii_lowercase().ends_with('l') && part.len() > 1 {
                return Err(format!("`{part}` (last weekday of the month) is not supported, as in Airflow's croniter"));
            }
            if has_nth {
                return Err(format!("mix `#` only with numeric weekdays, not `{part}`"));
            }
            out.push(part.to_string());
            continue;
        }
        for day in expand(part, 0, 7, "day of week")? {
            out.push((day % 7 + 1).to_string());
            nth.push((day % 7, None));
        }
    }
    let mut seen = Vec::new();
    out.retain(|p| {
        let keep = !seen.contains(p);
        seen.push(p.clone());
        keep
    });
    Ok((out.join(","), has_nth.then_some(nth)))
}

fn weekday_number(s: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Some(i) = NAMES.iter().position(|n| s.eq_ignore_ascii_case(n)) {
        return Ok(i as u32);
    }
    match s.parse::<u32>() {
        Ok(n) if n <= 7 => Ok(n),
        _ => Err(format!(
            "day of week `{s}` is not 0-7 (0 and 7 are Sunday) or a name like MON"
        )),
    }
}

/// A numeric list item (`n`, `a-b`, `*`, each with an optional `/step`) → its values.
fn expand(part: &str, min: u32, max: u32, what: &str) -> Result<Vec<u32>, String> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => match s.parse::<u32>() {
            Ok(0) | Err(_) => return Err(format!("bad step `{s}` in {what} `{part}`")),
            Ok(step) => (r, step),
        },
        None => (part, 1),
    };
    let num = |s: &str| -> Result<u32, String> {
        match s.parse::<u32>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ if what == "day of week" => weekday_number(s),
            _ => Err(format!("{what} `{s}` is not {min}-{max}")),
        }
    };
    let last = if what == "day of week" { 6 } else { max };
    let (lo, hi) = match range {
        "*" => (min, last),
        r => match r.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            // `a/step` runs from `a` to the end, as in croniter.
            None if part.contains('/') => (num(r)?, last),
            None => {
                let n = num(r)?;
                (n, n)
            }
        },
    };
    if lo > hi {
        return Err(format!("range `{range}` in {what} goes backwards"));
    }
    Ok((lo..=hi).step_by(step as usize).collect())
}

/// Names the first field the crate rejects, with its allowed range, so the message speaks of
/// the 5-field form the user wrote rather than the crate's internal 6-field one.
fn which_field_is_bad(translated: &[&str; 5], written: &[&str]) -> String {
    const NAMES: [(&str, &str); 5] = [
        ("minute", "0-59"),
        ("hour", "0-23"),
        ("day-of-month", "1-31"),
        ("month", "1-12 or JAN-DEC"),
        ("day-of-week", "0-7 or SUN-SAT"),
    ];
    for (i, (name, range)) in NAMES.iter().enumerate() {
        let mut probe = ["*"; 5];
        probe[i] = translated[i];
        if cron::Schedule::from_str(&format!("0 {}", probe.join(" "))).is_err() {
            return format!(
                "the {name} field `{}` is out of range or malformed (allowed: {range})",
                written[i]
            );
        }
    }
    "the fields do not form a valid schedule together".to_string()
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;
