//! When a failed try runs again: Airflow's retry delay, with exponential backoff and the
//! hash-based jitter Airflow adds (`TaskInstance.next_retry_datetime`), so a DAG retries on
//! the same schedule here as there. Checked against Airflow's own numbers in
//! `tests/fixtures/airflow/retry_delays.json`.

use chrono::{DateTime, Utc};
use sha1::{Digest, Sha1};

use super::duration::Duration;

/// Airflow's `[core] max_task_retry_delay`: every retry delay is capped at 24 hours.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs_const(86_400);

/// A task's retry settings, as the DAG file gives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try (`retries`); a task has `retries + 1` tries in all.
    pub retries: u32,
    pub retry_delay: Duration,
    /// `retry_exponential_backoff` as Airflow 3 reads it: a multiplier; 0 (or 1) is off,
    /// `true` in a file is 2.0.
    pub exponential_backoff: f64,
    /// `max_retry_delay`, applied after the 24-hour cap.
    pub max_retry_delay: Option<Duration>,
}

/// Which try failed: the jitter is a hash of it, as in Airflow.
#[derive(Clone, Copy, Debug)]
pub struct FailedTry<'a> {
    pub dag_id: &'a str,
    pub task_id: &'a str,
    /// `None` for runs without a logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// The try that failed, from 1.
    pub try_number: u32,
}

impl RetryPolicy {
    /// Whether try `try_number` (1-based) may be followed by another.
    pub fn has_retry_after(&self, try_number: u32) -> bool {
        try_number <= self.retries
    }

    /// The wait before the next try after `failed`: `retry_delay`; with a backoff multiplier
    /// `m`, a delay in `[b, 2b)` where `b = ceil(retry_delay * m^(try-1))`, chosen by a SHA-1
    /// of the try (Airflow's jitter), capped at 24 hours and then by `max_retry_delay`.
    pub fn delay_after(&self, failed: &FailedTry<'_>) -> Duration {
        let m = if self.exponential_backoff == 0.0 {
            1.0
        } else {
            self.exponential_backoff
        };
        if m == 1.0 || m < 0.0 || !m.is_finite() {
            return self.retry_delay;
        }
        let cap = MAX_RETRY_DELAY.as_secs_f64();
        let exponent = i32::try_from(failed.try_number.saturating_sub(1)).unwrap_or(i32::MAX);
        let raw = (self.retry_delay.as_secs_f64() * m.powi(exponent)).ceil();
        let min_backoff = if raw.is_finite() { raw.max(1.0) } else { cap };
        let delay = if min_backoff >= cap {
            cap
        } else {
            let min_backoff = min_backoff as u64;
            (min_backoff + hash_mod(failed, min_backoff)).min(cap as u64) as f64
        };
        let delay = Duration::from_secs_f64(delay).unwrap_or(MAX_RETRY_DELAY);
        match self.max_retry_delay {
            Some(max) => delay.min(max),
            None => delay,
        }
    }

    /// The delay before the next try, or `None` when `failed` was the last.
    pub fn next_delay(&self, failed: &FailedTry<'_>) -> Option<Duration> {
        self.has_retry_after(failed.try_number)
            .then(|| self.delay_after(failed))
    }
}

/// `int(sha1("dag#task#<logical date>#try").hexdigest(), 16) % m`, as Airflow computes it.
fn hash_mod(failed: &FailedTry<'_>, m: u64) -> u64 {
    let key = format!(
        "{}#{}#{}#{}",
        failed.dag_id,
        failed.task_id,
        python_str(failed.logical_date),
        failed.try_number
    );
    let digest = Sha1::digest(key.as_bytes());
    digest
        .iter()
        .fold(0u128, |r, b| (r * 256 + u128::from(*b)) % u128::from(m)) as u64
}

/// Python's `str()` of an aware UTC datetime: `2024-03-05 06:07:08.123456+00:00`, without
/// the fraction when it is zero; `None` for no date.
fn python_str(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "None".into(),
        Some(t) if t.timestamp_subsec_micros() == 0 => {
            t.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
        }
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay: u64, m: f64, max: Option<u64>) -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            retry_delay: Duration::from_secs(delay),
            exponential_backoff: m,
            max_retry_delay: max.map(Duration::from_secs),
        }
    }

    fn failed(try_number: u32) -> FailedTry<'static> {
        FailedTry {
            dag_id: "d",
            task_id: "t",
            logical_date: None,
            try_number,
        }
    }

    #[test]
    fn without_backoff_the_delay_is_fixed() {
        assert_eq!(
            policy(10, 0.0, None).delay_after(&failed(3)),
            Duration::from_secs(10)
        );
        assert_eq!(
            policy(10, 1.0, None).delay_after(&failed(3)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn backoff_stays_in_its_window_and_under_its_caps() {
        let p = policy(10, 2.0, None);
        for t in 1..=6u32 {
            let b = 10.0 * 2f64.powi(t as i32 - 1);
            let d = p.delay_after(&failed(t)).as_secs_f64();
            assert!(
                d >= b && d < 2.0 * b,
                "try {t}: {d} not in [{b}, {})",
                2.0 * b
            );
        }
        assert_eq!(
            policy(10, 2.0, Some(60)).delay_after(&failed(5)),
            Duration::from_secs(60),
            "capped by max_retry_delay"
        );
        assert_eq!(
            p.delay_after(&failed(40)),
            Duration::from_secs(86_400),
            "capped at 24h"
        );
    }

    #[test]
    fn tries_left() {
        let p = policy(1, 0.0, None);
        assert_eq!(p.next_delay(&failed(5)), Some(Duration::from_secs(1)));
        assert_eq!(p.next_delay(&failed(6)), None, "5 retries: 6 tries in all");
    }

    /// Every case Airflow 3.3.2 computed (`scripts/airflow-fixtures/retry_delays.py`).
    #[test]
    fn matches_airflow() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/airflow/retry_delays.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        for c in cases {
            let logical_date = c["logical_date"]
                .as_str()
                .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
            let p = RetryPolicy {
                retries: 100,
                retry_delay: Duration::from_secs_f64(c["retry_delay_seconds"].as_f64().unwrap())
                    .unwrap(),
                exponential_backoff: c["retry_exponential_backoff_after_serialization"]
                    .as_f64()
                    .unwrap(),
                max_retry_delay: c["max_retry_delay_seconds"]
                    .as_f64()
                    .map(|s| Duration::from_secs_f64(s).unwrap()),
            };
            let f = FailedTry {
                dag_id: c["dag_id"].as_str().unwrap(),
                task_id: c["task_id"].as_str().unwrap(),
                logical_date,
                try_number: c["try_number"].as_u64().unwrap() as u32,
            };
            let expected = c["delay_seconds"].as_f64().unwrap();
            assert_eq!(
                p.delay_after(&f).as_secs_f64(),
                expected,
                "{}",
                c["hashed_string"]
            );
        }
    }
}
