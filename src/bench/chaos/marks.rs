//! What the scenario's commands noted: every bash task appends `start` and `done` lines to one
//! file (`<mark> <run_id> <task_id> <try> <epoch seconds>`), with O_APPEND, so the file says
//! which commands ran, how often, and when each finished, independent of the database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A task instance: (run_id, task_id).
pub type Ti = (String, String);

/// The parsed marks.
#[derive(Debug, Default)]
pub struct Marks {
    /// Tries that started, per task instance.
    pub starts: BTreeMap<Ti, Vec<i32>>,
    /// Tries whose command finished, per task instance, with the time it finished.
    pub dones: BTreeMap<Ti, BTreeMap<i32, f64>>,
}

impl Marks {
    pub fn read(path: &Path) -> std::io::Result<Marks> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut marks = Marks::default();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [kind, run, task, try_number, at] = parts[..] else {
                continue;
            };
            let (Ok(try_number), Ok(at)) = (try_number.parse::<i32>(), at.parse::<f64>()) else {
                continue;
            };
            let ti = (run.to_string(), task.to_string());
            match kind {
                "start" => marks.starts.entry(ti).or_default().push(try_number),
                "done" => {
                    marks.dones.entry(ti).or_default().insert(try_number, at);
                }
                _ => {}
            }
        }
        Ok(marks)
    }

    /// Task instances whose command ran to its end.
    pub fn completed(&self) -> usize {
        self.dones.len()
    }

    /// Task instances whose command started again after one of its tries had run to its
    /// end: the work done twice that the engine tries to prevent.
    pub fn rerun_after_completion(&self) -> BTreeSet<Ti> {
        self.dones
            .iter()
            .filter(|(ti, done)| {
                let first_done = done.keys().min().copied().unwrap_or(i32::MAX);
                self.starts
                    .get(*ti)
                    .is_some_and(|s| s.iter().any(|t| *t > first_done))
            })
            .map(|(ti, _)| ti.clone())
            .collect()
    }
}

/// The bash command a chaos task runs: note the start, work for `seconds`, note the end.
pub fn command(marks: &Path, token: &str, seconds: f64) -> String {
    let m = marks.display();
    format!(
        ": {token}; echo \"start $AIRFLOW_CTX_DAG_RUN_ID $AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_TRY_NUMBER $EPOCHREALTIME\" >> {m}; \
         sleep {seconds}; \
         echo \"done $AIRFLOW_CTX_DAG_RUN_ID $AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_TRY_NUMBER $EPOCHREALTIME\" >> {m}"
    )
}

/// Processes still alive whose command line carries `token`: commands that outlived the
/// scenario.
pub fn orphans(token: &str) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(token) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 2..];
                rest.split_whitespace().next().map(|st| st == "Z")
            })
            .unwrap_or(true);
        if !zombie {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_work_done_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marks");
        std::fs::write(
            &path,
            "start r a 1 1.0\ndone r a 1 2.0\nstart r a 2 3.0\ndone r a 2 4.0\n\
             start r b 1 1.0\nstart r b 2 5.0\ndone r b 2 6.0\nstart r c 1 1.0\ngarbage\n",
        )
        .unwrap();
        let m = Marks::read(&path).unwrap();
        assert_eq!(m.completed(), 2);
        let twice = m.rerun_after_completion();
        assert_eq!(
            twice.len(),
            1,
            "b's first try never finished: its retry is fine"
        );
        assert!(twice.contains(&("r".to_string(), "a".to_string())));
    }
}
