//! `Cron` against croniter 7.0.0's own ticks (`tests/fixtures/airflow/cron_ticks.json`, made
//! by `scripts/airflow-fixtures/cron_ticks.py` with Airflow 3.3.2's `CronTriggerTimetable`).

use super::*;

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/airflow/cron_ticks.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// croniter finds no next date for these within its search window (a day that never comes);
/// updraft parses them and finds none either, so the DAG simply never runs. Both agree that
/// nothing is scheduled; only the place where that shows differs (croniter raises).
const NEVER_TICKS: &[&str] = &["0 0 31 4 *", "0 0 30 2 *"];

#[test]
fn ticks_match_croniter() {
    let f = fixture();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() > 400);
    let mut checked = 0;
    for case in cases {
        let expr = case["expr"].as_str().unwrap();
        let start = at(case["start"].as_str().unwrap());
        if case.get("error").is_some() {
            if NEVER_TICKS.contains(&expr) {
                let c = Cron::parse(expr).unwrap();
                assert_eq!(c.next_after(start), None, "{expr}");
                continue;
            }
            assert!(
                Cron::parse(expr).is_err(),
                "croniter rejects `{expr}` ({}), updraft accepted it",
                case["message"]
            );
            continue;
        }
        let c = Cron::parse(expr).unwrap_or_else(|e| panic!("`{expr}`: {e}"));
        let mut t = start;
        for want in case["next"].as_array().unwrap() {
            let got = c.next_after(t);
            assert_eq!(
                got,
                Some(at(want.as_str().unwrap())),
                "next of `{expr}` after {t}"
            );
            t = got.unwrap();
        }
        let mut t = start;
        for want in case["prev"].as_array().unwrap() {
            let got = c.prev_before(t);
            assert_eq!(
                got,
                Some(at(want.as_str().unwrap())),
                "prev of `{expr}` before {t}"
            );
            t = got.unwrap();
        }
        checked += 1;
    }
    assert!(checked > 350, "{checked}");
}

#[test]
fn both_day_fields_restricted_means_either() {
    // 2024-03-05 is a Tuesday: the 6th and 7th match the day of month, the 11th is a Monday.
    let c = Cron::parse("0 0 1-7 * 1").unwrap();
    let mut t = at("2024-03-05T06:00:00Z");
    let mut got = Vec::new();
    for _ in 0..3 {
        t = c.next_after(t).unwrap();
        got.push(t.day());
    }
    assert_eq!(got, [6, 7, 11]);
    // One side unrestricted: only the other counts.
    let c = Cron::parse("0 0 * * 1").unwrap();
    assert_eq!(c.next_after(at("2024-03-05T06:00:00Z")).unwrap().day(), 11);
}

#[test]
fn weekdays_and_specials() {
    let c = Cron::parse("0 12 * * 0").unwrap();
    assert_eq!(
        c.next_after(at("2024-01-02T00:00:00Z")).unwrap().weekday(),
        Weekday::Sun
    );
    let c = Cron::parse("0 0 * * 5-7").unwrap();
    let days: Vec<Weekday> = std::iter::successors(c.next_after(at("2024-01-01T00:00:00Z")), |t| {
        c.next_after(*t)
    })
    .take(3)
    .map(|t| t.weekday())
    .collect();
    assert_eq!(days, [Weekday::Fri, Weekday::Sat, Weekday::Sun]);
    assert_eq!(
        Cron::parse("0 0 L 2 *")
            .unwrap()
            .next_after(at("2024-01-01T00:00:00Z")),
        Some(at("2024-02-29T00:00:00Z"))
    );
}

#[test]
fn bad_expressions_say_which_field() {
    for (bad, needle) in [
        ("0 3 * *", "it has 4 fields"),
        ("0 3 * * * *", "it has 6 fields"),
        ("61 3 * * *", "minute field `61`"),
        ("0 25 * * *", "hour field `25`"),
        ("0 3 * * 8", "day of week `8`"),
        ("0 3 * * 5-2", "goes backwards"),
        ("0 3 * * 5L", "not supported"),
        ("x y z w v", "minute field `x`"),
    ] {
        let err = Cron::parse(bad).unwrap_err();
        assert!(err.contains(needle), "{bad}: {err}");
        assert!(
            err.contains("minute hour day-of-month month day-of-week"),
            "{bad}: {err}"
        );
    }
}
