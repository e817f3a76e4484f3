//! What should run when: a pure function of the DAG, the last scheduled run and the time, so
//! every case (catchup, start and end dates, `@once`, both cron semantics) has a unit test.
//!
//! Two cron semantics, as Airflow 3 has them:
//! - trigger (Airflow 3's default, `CronTriggerTimetable`): a run per cron tick `t`;
//!   logical date = `t`, data interval `[t, t]`, created at `t`;
//! - data intervals (`create_cron_data_intervals = true`, `CronDataIntervalTimetable`): a run
//!   per interval `[a, b)` between consecutive ticks; logical date = `a`, created at `b`.
//!
//! `catchup: true` creates every run from `start_date` on; `catchup: false` creates only the
//! latest one that is due (and then keeps up).

use chrono::{DateTime, Utc};

use super::cron::Cron;
use super::schedule::{Schedule, Timetable};

/// A scheduled run to create once `run_after` has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedRun {
    pub logical_date: DateTime<Utc>,
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    pub run_after: DateTime<Utc>,
}

/// The schedule's ticks, with croniter's rules ([`Cron`]), read from the expression as written.
fn cron_of(tt: &Timetable) -> Option<Cron> {
    match tt.schedule {
        Schedule::Cron { expr, .. } => Cron::parse(expr).ok(),
        _ => None,
    }
}

fn trigger_run(t: DateTime<Utc>) -> PlannedRun {
    PlannedRun {
        logical_date: t,
        interval_start: t,
        interval_end: t,
        run_after: t,
    }
}

fn interval_run(c: &Cron, a: DateTime<Utc>) -> Option<PlannedRun> {
    let b = c.next_after(a)?;
    Some(PlannedRun {
        logical_date: a,
        interval_start: a,
        interval_end: b,
        run_after: b,
    })
}

/// The next scheduled run of a DAG after the last one it had (`last_logical_date`, `None` if
/// it never had one), as of `now`. `None`: nothing more will ever be scheduled.
pub fn next_run(
    tt: &Timetable,
    last_logical_date: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    data_intervals: bool,
) -> Option<PlannedRun> {
    let planned = match tt.schedule {
        Schedule::Manual => None,
        Schedule::Once => match last_logical_date {
            Some(_) => None,
            None => Some(trigger_run(tt.start_date.unwrap_or(now))),
        },
        // A run per "now", after the start date and the last run. The scheduler creates it
        // only once the previous run has ended (max_active_runs is 1), and then stamps it
        // with the time it was created (`continuous_logical_date`).
        Schedule::Continuous => {
            let mut t = tt.start_date.map_or(now, |s| s.max(now));
            if let Some(last) = last_logical_date {
                t = t.max(last + chrono::Duration::microseconds(1));
            }
            Some(trigger_run(t))
        }
        Schedule::Cron { .. } => {
            let c = cron_of(tt)?;
            let start = tt.start_date.unwrap_or(now);
            if data_intervals {
                next_interval(&c, start, last_logical_date, now, tt.catchup)
            } else {
                next_trigger(&c, start, last_logical_date, now, tt.catchup)
            }
        }
    }?;
    match tt.end_date {
        Some(end) if planned.logical_date > end => None,
        _ => Some(planned),
    }
}

/// Every run of a periodic schedule whose logical date falls in `[from, to]`, oldest first,
/// for a backfill (Airflow's `iter_dagrun_infos_between`): trigger semantics give one per
/// tick, data-interval semantics one per interval starting at a tick. At most `limit`; `Err`
/// for a schedule that has no ticks (`None`, `@once`) or a range with more than `limit` runs.
pub fn runs_between(
    tt: &Timetable,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    data_intervals: bool,
    limit: usize,
) -> Result<Vec<PlannedRun>, String> {
    let Some(c) = cron_of(tt) else {
        return Err("the DAG has no periodic schedule, so there is nothing to backfill".into());
    };
    let mut out = Vec::new();
    let mut t = c.at_or_after(from);
    while let Some(tick) = t.filter(|t| *t <= to) {
        if out.len() == limit {
            return Err(format!(
                "the range has more than {limit} runs; backfill a shorter range"
            ));
        }
        let run = if data_intervals {
            interval_run(&c, tick)
        } else {
            Some(trigger_run(tick))
        };
        out.extend(run);
        t = c.next_after(tick);
    }
    Ok(out)
}

/// The logical date of a continuous run created at `now`: the time it is created, unless the
/// plan said later (a start date in the future, or a clock that went back behind the last run).
pub fn continuous_logical_date(planned: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    planned.max(now)
}

/// The earliest tick a next run can take: the first after the last run's, or the first at or
/// after the start date.
fn first_candidate(
    c: &Cron,
    start: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match last {
        Some(last) => c.next_after(last),
        None => c.at_or_after(start),
    }
}

fn next_trigger(
    c: &Cron,
    start: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    catchup: bool,
) -> Option<PlannedRun> {
    let mut t = first_candidate(c, start, last)?;
    if !catchup {
        // Skip to the latest tick that is already due, if that is later.
        if let Some(latest) = c.at_or_before(now) {
            if latest > t {
                t = latest;
            }
        }
    }
    Some(trigger_run(t))
}

fn next_interval(
    c: &Cron,
    start: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    catchup: bool,
) -> Option<PlannedRun> {
    let mut a = first_candidate(c, start, last)?;
    if !catchup {
        // The latest complete interval ends at the last tick <= now and starts one tick before.
        if let Some(b) = c.at_or_before(now) {
            if let Some(latest_a) = c.prev_before(b) {
                if latest_a > a {
                    a = latest_a;
                }
            }
        }
    }
    interval_run(c, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dag {
        schedule: Schedule,
        start_date: Option<DateTime<Utc>>,
        end_date: Option<DateTime<Utc>>,
        catchup: bool,
    }

    fn next_run(
        d: &Dag,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        data_intervals: bool,
    ) -> Option<PlannedRun> {
        let tt = Timetable {
            schedule: &d.schedule,
            start_date: d.start_date,
            end_date: d.end_date,
            catchup: d.catchup,
        };
        super::next_run(&tt, last, now, data_intervals)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn runs_between_gives_each_tick_in_the_closed_range() {
        let d = dag("@daily", "0 0 * * *", "2026-01-01T00:00:00Z", false);
        let tt = Timetable {
            schedule: &d.schedule,
            start_date: d.start_date,
            end_date: d.end_date,
            catchup: d.catchup,
        };
        let (from, to) = (at("2026-01-01T00:00:00Z"), at("2026-01-03T00:00:00Z"));
        let runs = super::runs_between(&tt, from, to, false, 100).unwrap();
        let dates: Vec<_> = runs.iter().map(|r| r.logical_date).collect();
        assert_eq!(dates, vec![from, at("2026-01-02T00:00:00Z"), to]);
        let intervals = super::runs_between(&tt, from, to, true, 100).unwrap();
        assert_eq!(intervals[2].interval_end, at("2026-01-04T00:00:00Z"));
        assert!(super::runs_between(&tt, from, to, false, 2).is_err());
        let late = at("2026-01-01T00:00:01Z");
        assert_eq!(
            super::runs_between(&tt, late, to, false, 100)
                .unwrap()
                .len(),
            2
        );
        let manual = Schedule::Manual;
        let tt = Timetable {
            schedule: &manual,
            ..tt
        };
        assert!(super::runs_between(&tt, from, to, false, 100).is_err());
    }

    fn dag(expr: &str, cron: &str, start: &str, catchup: bool) -> Dag {
        Dag {
            schedule: Schedule::Cron {
                expr: expr.into(),
                cron: cron.into(),
            },
            start_date: Some(at(start)),
            end_date: None,
            catchup,
        }
    }

    #[test]
    fn continuous_runs_now_after_the_start_and_the_last_run() {
        let mut d = dag("@daily", "", "2024-01-01T00:00:00Z", false);
        d.schedule = Schedule::Continuous;
        let now = at("2024-01-05T12:00:00Z");
        let first = next_run(&d, None, now, false).unwrap();
        assert_eq!(first.logical_date, now);
        assert_eq!((first.interval_start, first.run_after), (now, now));
        // The last run is in the future (a clock went back): the next one comes after it.
        let later = at("2024-01-05T13:00:00Z");
        let next = next_run(&d, Some(later), now, false).unwrap();
        assert!(next.logical_date > later);
        // Not before the start date.
        d.start_date = Some(at("2025-01-01T00:00:00Z"));
        assert_eq!(
            next_run(&d, None, now, false).unwrap().logical_date,
            at("2025-01-01T00:00:00Z")
        );
        // Nor after the end date.
        d.start_date = None;
        d.end_date = Some(at("2024-01-01T00:00:00Z"));
        assert_eq!(next_run(&d, None, now, false), None);
        // Created later than planned: stamped with the time it was created.
        assert_eq!(continuous_logical_date(first.logical_date, later), later);
    }

    #[test]
    fn trigger_catchup_walks_every_tick_from_start() {
        let d = dag("@daily", "0 0 0 * * *", "2024-01-01T10:00:00Z", true);
        let now = at("2024-01-05T12:00:00Z");
        let first = next_run(&d, None, now, false).unwrap();
        assert_eq!(first.logical_date, at("2024-01-02T00:00:00Z"));
        assert_eq!(first.interval_start, first.interval_end);
        let second = next_run(&d, Some(first.logical_date), now, false).unwrap();
        assert_eq!(second.logical_date, at("2024-01-03T00:00:00Z"));
    }

    #[test]
    fn trigger_without_catchup_takes_only_the_latest_due_tick() {
        let d = dag("@daily", "0 0 0 * * *", "2023-09-03T10:00:00Z", false);
        let now = at("2024-01-05T12:00:00Z");
        let first = next_run(&d, None, now, false).unwrap();
        assert_eq!(first.logical_date, at("2024-01-05T00:00:00Z"));
        assert!(first.run_after <= now);
        let next = next_run(&d, Some(first.logical_date), now, false).unwrap();
        assert_eq!(next.logical_date, at("2024-01-06T00:00:00Z"));
        assert!(next.run_after > now, "the following run waits for its tick");
    }

    #[test]
    fn data_intervals_run_after_the_interval_ends() {
        let d = dag("0 3 * * *", "0 0 3 * * *", "2024-01-01T00:00:00Z", true);
        let now = at("2024-01-03T12:00:00Z");
        let first = next_run(&d, None, now, true).unwrap();
        assert_eq!(first.logical_date, at("2024-01-01T03:00:00Z"));
        assert_eq!(first.interval_end, at("2024-01-02T03:00:00Z"));
        assert_eq!(first.run_after, first.interval_end);
        let second = next_run(&d, Some(first.logical_date), now, true).unwrap();
        assert_eq!(second.interval_start, first.interval_end);
    }

    #[test]
    fn data_intervals_without_catchup_take_the_latest_complete_interval() {
        let d = dag("0 3 * * *", "0 0 3 * * *", "2020-01-01T00:00:00Z", false);
        let now = at("2024-01-03T12:00:00Z");
        let run = next_run(&d, None, now, true).unwrap();
        assert_eq!(run.interval_start, at("2024-01-02T03:00:00Z"));
        assert_eq!(run.interval_end, at("2024-01-03T03:00:00Z"));
    }

    #[test]
    fn end_date_once_and_manual() {
        let mut d = dag("@daily", "0 0 0 * * *", "2024-01-01T00:00:00Z", true);
        d.end_date = Some(at("2024-01-02T00:00:00Z"));
        let now = at("2024-02-01T00:00:00Z");
        assert!(next_run(&d, Some(at("2024-01-02T00:00:00Z")), now, false).is_none());
        d.schedule = Schedule::Once;
        assert_eq!(
            next_run(&d, None, now, false).unwrap().logical_date,
            at("2024-01-01T00:00:00Z")
        );
        assert!(next_run(&d, Some(at("2024-01-01T00:00:00Z")), now, false).is_none());
        d.schedule = Schedule::Manual;
        assert!(next_run(&d, None, now, false).is_none());
    }

    /// `CronTriggerTimetable.next_dagrun_info` of Airflow 3.3.2, chained up to three runs
    /// (`tests/fixtures/airflow/cron_ticks.json`). Cases with a timetable `interval` are left
    /// out: updraft has no such option.
    #[test]
    fn trigger_runs_match_airflow() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/airflow/cron_ticks.json"
        );
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let opt = |v: &serde_json::Value| v.as_str().map(at);
        let mut checked = 0;
        for case in f["next_dagrun_info"].as_array().unwrap() {
            if case["interval_seconds"].as_f64() != Some(0.0) {
                continue;
            }
            let expr = case["expr"].as_str().unwrap();
            let d = Dag {
                schedule: Schedule::Cron {
                    expr: expr.into(),
                    cron: String::new(),
                },
                start_date: opt(&case["start_date"]),
                end_date: opt(&case["end_date"]),
                catchup: case["catchup"].as_bool().unwrap(),
            };
            let now = at(case["now"].as_str().unwrap());
            let mut last = opt(&case["last_automated_data_interval_end"]);
            for want in case["runs"].as_array().unwrap() {
                let got = next_run(&d, last, now, false);
                match want.as_object() {
                    None => assert_eq!(got, None, "{case}"),
                    Some(w) => {
                        let got = got.unwrap_or_else(|| panic!("no run for {case}"));
                        assert_eq!(Some(got.logical_date), opt(&w["logical_date"]), "{case}");
                        assert_eq!(
                            Some(got.interval_start),
                            opt(&w["data_interval_start"]),
                            "{case}"
                        );
                        assert_eq!(
                            Some(got.interval_end),
                            opt(&w["data_interval_end"]),
                            "{case}"
                        );
                        assert_eq!(Some(got.run_after), opt(&w["run_after"]), "{case}");
                        last = Some(got.logical_date);
                    }
                }
            }
            checked += 1;
        }
        assert!(checked >= 12, "{checked}");
    }
}
