//! The states a DAG run and a task instance move through, and the kinds of runs, as Airflow
//! names them (`airflow.utils.state`). Each name is written once, here: serde and sqlx read
//! and write the same lowercase strings the API answers with and the database stores.

use serde::{Deserialize, Serialize};

/// Declares a string-backed state enum: serde and sqlx both use the snake_case names, and
/// `as_str`/`parse` give the same names for SQL parameters and query strings.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(rename_all = "snake_case")]
        #[sqlx(type_name = "text", rename_all = "snake_case")]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lowercase name Airflow uses.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }

            /// Parses the lowercase name; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $( $text => Some($name::$variant), )+ _ => None }
            }

            /// Every name, for error messages: `a, b, c`.
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Where a task instance is (`TaskInstanceState`, plus `none` for "not decided yet").
    pub enum TaskState {
        /// Waiting for its upstreams: no trigger-rule decision yet.
        None = "none",
        Scheduled = "scheduled",
        /// Ready: a worker may claim it.
        Queued = "queued",
        /// Claimed by a worker, under a lease.
        Running = "running",
        Success = "success",
        Failed = "failed",
        /// Failed with tries left; queued again once its retry delay has passed.
        UpForRetry = "up_for_retry",
        UpstreamFailed = "upstream_failed",
        Skipped = "skipped",
    }
}

impl TaskState {
    /// A final state: the task will not run again in this run unless it is cleared.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::UpstreamFailed | TaskState::Skipped
        )
    }

    /// Not final yet: pages keep refreshing it.
    pub fn is_unfinished(self) -> bool {
        !self.is_finished()
    }

    /// What the REST API reports: `null` for `none`, as Airflow does.
    pub fn api_value(self) -> Option<&'static str> {
        (self != TaskState::None).then(|| self.as_str())
    }
}

named_enum! {
    /// Where a DAG run is (`DagRunState`).
    pub enum RunState {
        Queued = "queued",
        Running = "running",
        Success = "success",
        Failed = "failed",
    }
}

impl RunState {
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }

    pub fn is_unfinished(self) -> bool {
        !self.is_finished()
    }
}

named_enum! {
    /// How a run came to be (`DagRunType`).
    pub enum RunType {
        Scheduled = "scheduled",
        Manual = "manual",
        Backfill = "backfill",
    }
}

named_enum! {
    /// What a backfill does with a logical date that already has a run (Airflow 3's
    /// `ReprocessBehavior`).
    pub enum ReprocessBehavior {
        /// Leave it.
        None = "none",
        /// Run it again if it failed.
        Failed = "failed",
        /// Run it again if it finished, failed or not.
        Completed = "completed",
    }
}

impl RunType {
    /// The prefix of the run ids updraft generates for this kind of run (`manual__…`).
    pub fn run_id_prefix(self) -> &'static str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        for s in TaskState::ALL {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::json!(s.as_str()));
            assert_eq!(TaskState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(TaskState::UpForRetry.as_str(), "up_for_retry");
        assert_eq!(RunState::parse("success"), Some(RunState::Success));
        assert_eq!(RunState::parse("SUCCESS"), None);
        assert_eq!(RunType::Backfill.to_string(), "backfill");
        assert_eq!(TaskState::None.api_value(), None);
        assert!(TaskState::UpstreamFailed.is_finished());
        assert!(!TaskState::UpForRetry.is_finished());
        assert_eq!(RunState::names(), "queued, running, success, failed");
    }
}
