//! `schedule:` strings → [`Schedule`]. The cron rules (croniter's, as Airflow has them) live in
//! [`crate::core::cron`]; this checks a file's string with them and keeps the expression.

use crate::core::cron::{Cron, FORM};
use crate::core::Schedule;

/// Parses a schedule string as the file wrote it.
pub fn parse(expr: &str) -> Result<Schedule, String> {
    let expr = expr.trim();
    if expr == "@once" {
        return Ok(Schedule::Once);
    }
    if expr == "@continuous" {
        return Ok(Schedule::Continuous);
    }
    if expr.starts_with('@') && !crate::core::cron::PRESETS.iter().any(|(p, _)| *p == expr) {
        return Err(format!("unknown schedule preset `{expr}`; {FORM}"));
    }
    let cron = Cron::parse(expr)?;
    Ok(Schedule::Cron {
        expr: expr.into(),
        cron: cron.crate_form(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Utc};
    use std::str::FromStr;

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
        assert_eq!(parse("@continuous").unwrap(), Schedule::Continuous);
    }

    /// As Airflow: `@continuous` needs `max_active_runs: 1`, written in the file.
    #[test]
    fn continuous_needs_one_active_run() {
        let parse = |extra: &str| {
            let src = format!(
                "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json\ndag_id: d\nschedule: '@continuous'\n{extra}"
            );
            crate::dag::load::parse_source("dags/d.yaml", &src, &|p| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    p.to_string(),
                ))
            })
        };
        let missing = parse("");
        assert!(missing.dags.is_empty());
        assert_eq!(missing.errors.len(), 1, "{:?}", missing.errors);
        let e = &missing.errors[0];
        assert_eq!(e.field.as_deref(), Some("max_active_runs"));
        assert!(
            e.message.contains("set `max_active_runs: 1` (it is 16)"),
            "{}",
            e.message
        );
        assert_eq!(
            e.line,
            Some(3),
            "points at the schedule when the key is absent"
        );
        let two = parse("max_active_runs: 2\n");
        assert_eq!(two.errors[0].line, Some(4));
        let one = parse("max_active_runs: 1\n");
        assert!(one.errors.is_empty(), "{:?}", one.errors);
        assert_eq!(one.dags[0].schedule, Schedule::Continuous);
        assert_eq!(
            one.dags[0].schedule.display().as_deref(),
            Some("@continuous")
        );
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
