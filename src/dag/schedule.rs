//! `schedule:` strings → [`Schedule`]. Airflow reads cron with croniter: five fields, weekdays
//! 0-7 with 0 and 7 both Sunday. The `cron` crate wants six fields (seconds first) and counts
//! weekdays 1-7 from Sunday, so the day-of-week field is rewritten number by number; names
//! (`MON-FRI`) mean the same in both and pass through.

use std::str::FromStr;

use crate::core::Schedule;

const FORM: &str = "write five fields `minute hour day-of-month month day-of-week`, \
e.g. `0 3 * * *` or `*/15 9-17 * * MON-FRI`, or a preset (@once, @hourly, @daily, @weekly, \
@monthly, @yearly)";

/// Airflow's presets with their cron equivalent; `@once` is handled apart.
const PRESETS: [(&str, &str); 8] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@quarterly", "0 0 1 */3 *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// Parses a schedule string as the file wrote it.
pub fn parse(expr: &str) -> Result<Schedule, String> {
    let expr = expr.trim();
    if expr == "@once" {
        return Ok(Schedule::Once);
    }
    if expr.starts_with('@') {
        if expr == "@continuous" {
            return Err(
                "`@continuous` is not supported by updraft; use a cron expression or a preset"
                    .into(),
            );
        }
        let Some((_, cron5)) = PRESETS.iter().find(|(p, _)| *p == expr) else {
            return Err(format!("unknown schedule preset `{expr}`; {FORM}"));
        };
        return Ok(Schedule::Cron {
            expr: expr.into(),
            cron: to_cron_crate(cron5)?,
        });
    }
    Ok(Schedule::Cron {
        expr: expr.into(),
        cron: to_cron_crate(expr)?,
    })
}

/// Translates a 5-field cron expression to the `cron` crate's 6-field form and checks it.
pub fn to_cron_crate(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "invalid cron expression `{expr}`: it has {} fields; {FORM}",
            fields.len()
        ));
    }
    let dow = translate_dow(fields[4])
        .map_err(|e| format!("invalid cron expression `{expr}`: {e}; {FORM}"))?;
    let six = format!(
        "0 {} {} {} {} {dow}",
        fields[0], fields[1], fields[2], fields[3]
    );
    if cron::Schedule::from_str(&six).is_err() {
        return Err(format!(
            "invalid cron expression `{expr}`: {}; {FORM}",
            which_field_is_bad(&fields, &dow)
        ));
    }
    Ok(six)
}

/// Names the first field the `cron` crate rejects, with its allowed range, so the message
/// speaks of the 5-field form the user wrote rather than the crate's internal 6-field one.
fn which_field_is_bad(fields: &[&str], dow: &str) -> String {
    const NAMES: [(&str, &str); 5] = [
        ("minute", "0-59"),
        ("hour", "0-23"),
        ("day-of-month", "1-31"),
        ("month", "1-12 or JAN-DEC"),
        ("day-of-week", "0-7 or SUN-SAT"),
    ];
    for (i, (name, range)) in NAMES.iter().enumerate() {
        let mut probe = ["*"; 5].map(str::to_string);
        probe[i] = if i == 4 {
            dow.to_string()
        } else {
            fields[i].to_string()
        };
        let six = format!("0 {}", probe.join(" "));
        if cron::Schedule::from_str(&six).is_err() {
            let written = fields[i];
            return format!(
                "the {name} field `{written}` is out of range or malformed (allowed: {range})"
            );
        }
    }
    "the fields do not form a valid schedule together".to_string()
}

/// Rewrites one day-of-week field from croniter numbering (0-7, Sunday = 0 = 7) to the
/// `cron` crate's (1-7, Sunday = 1). Numeric lists, ranges and steps are expanded into an
/// explicit list, because a range like `5-7` (Fri-Sun) has no contiguous equivalent.
fn translate_dow(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.into());
    }
    let mut parts = Vec::new();
    for part in field.split(',') {
        if part.chars().any(|c| c.is_ascii_alphabetic() || c == '#') {
            // Names (MON-FRI), `L`, `#`: same meaning on both sides, or the cron crate says no.
            parts.push(part.to_string());
            continue;
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("bad step `{s}` in day of week `{part}`"))?;
                if step == 0 {
                    return Err(format!("a step of 0 in day of week `{part}`"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let num = |s: &str| -> Result<u32, String> {
            match s.parse::<u32>() {
                Ok(n) if n <= 7 => Ok(n),
                _ => Err(format!(
                    "day of week `{s}` is not 0-7 (0 and 7 are Sunday) or a name like MON"
                )),
            }
        };
        let (lo, hi) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                // `a/step` means from `a` to the end, as in croniter.
                None if part.contains('/') => (num(r)?, 6),
                None => {
                    let n = num(r)?;
                    (n, n)
                }
            },
        };
        if lo > hi {
            return Err(format!("range `{range}` in day of week goes backwards"));
        }
        let mut day = lo;
        while day <= hi {
            parts.push((day % 7 + 1).to_string());
            day += step;
        }
    }
    // Keep names in place; dedupe numbers while keeping the first occurrence.
    let mut seen = Vec::new();
    parts.retain(|p| {
        let keep = !seen.contains(p);
        seen.push(p.clone());
        keep
    });
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Utc};

    fn cron_of(expr: &str) -> String {
        match parse(expr).unwrap() {
            Schedule::Cron { cron, .. } => cron,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn presets() {
        assert_eq!(parse("@once").unwrap(), Schedule::Once);
        assert_eq!(
            parse("@daily").unwrap(),
            Schedule::Cron {
                expr: "@daily".into(),
                cron: "0 0 0 * * *".into()
            }
        );
        assert_eq!(cron_of("@weekly"), "0 0 0 * * 1");
        assert_eq!(cron_of("@annually"), "0 0 0 1 1 *");
        assert!(parse("@sometimes").unwrap_err().contains("@hourly"));
        assert!(parse("@continuous").unwrap_err().contains("not supported"));
    }

    #[test]
    fn weekdays_are_renumbered() {
        assert_eq!(cron_of("0 3 * * *"), "0 0 3 * * *");
        assert_eq!(cron_of("0 3 * * 0"), "0 0 3 * * 1");
        assert_eq!(cron_of("0 3 * * 7"), "0 0 3 * * 1");
        assert_eq!(cron_of("0 3 * * 1-5"), "0 0 3 * * 2,3,4,5,6");
        assert_eq!(cron_of("0 3 * * 5-7"), "0 0 3 * * 6,7,1");
        assert_eq!(cron_of("0 3 * * 0,6"), "0 0 3 * * 1,7");
        assert_eq!(cron_of("0 3 * * */2"), "0 0 3 * * 1,3,5,7");
        assert_eq!(cron_of("0 3 * * 1/2"), "0 0 3 * * 2,4,6");
        assert_eq!(cron_of("0 3 * * MON-FRI"), "0 0 3 * * MON-FRI");
        assert_eq!(cron_of("*/15 9-17 * * mon,3"), "0 */15 9-17 * * mon,4");
    }

    #[test]
    fn translated_weekdays_fire_on_the_right_day() {
        // 2024-01-01 was a Monday; `* * * * 1` must next fire on a Monday.
        let s = cron::Schedule::from_str(&cron_of("0 12 * * 1")).unwrap();
        let after = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        let next = s.after(&after).next().unwrap();
        assert_eq!(next.weekday(), chrono::Weekday::Mon);
        let s = cron::Schedule::from_str(&cron_of("0 12 * * 0")).unwrap();
        assert_eq!(
            s.after(&after).next().unwrap().weekday(),
            chrono::Weekday::Sun
        );
    }

    #[test]
    fn bad_cron_shows_the_expected_form() {
        for bad in [
            "0 3 * *",
            "0 3 * * * *",
            "61 3 * * *",
            "0 3 * * 8",
            "0 3 * * 5-2",
            "x y z w v",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("minute hour day-of-month month day-of-week"),
                "{bad}: {err}"
            );
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
