//! The stored form of a DAG version: what `dag_versions.spec` holds and workers execute.
//!
//! A run executes the version it started with, possibly long after, and possibly on a newer
//! release than the one that stored it. So the stored JSON carries a format version, and
//! reading goes through [`from_stored`], which upgrades older formats step by step before
//! deserializing. The rules for changing [`Dag`] or [`Task`](super::Task):
//! - a new field gets `#[serde(default)]` (older specs lack it); no version bump needed;
//! - a rename, a type change or a removal bumps [`FORMAT_VERSION`] and adds a step to
//!   [`upgrade`] that rewrites the previous format's JSON into the new one;
//! - `tests/fixtures/specs/` keeps a spec from every format, and a test runs each.
//!
//! Format history:
//! - 1 (no `format_version` key): the first release.
//! - 2: `retry_exponential_backoff` is Airflow 3's float multiplier (0 = off) instead of a
//!   boolean (`true` was doubling, now `2.0`).

use serde_json::{Map, Value};

use super::model::Dag;

/// The format this release writes.
pub const FORMAT_VERSION: u64 = 2;
/// The key that holds the format version in the stored JSON.
pub const VERSION_KEY: &str = "format_version";

/// Why a stored spec cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the stored DAG spec is format {found}, newer than this release reads ({FORMAT_VERSION}); upgrade updraft on this machine")]
    TooNew { found: u64 },
    #[error("the stored DAG spec is not a JSON object")]
    NotAnObject,
    #[error(
        "the stored DAG spec (format {version}) does not match this release's model: {source}"
    )]
    Shape {
        version: u64,
        source: serde_json::Error,
    },
}

/// The JSON to store for `dag`, in the current format.
pub fn to_stored(dag: &Dag) -> Value {
    let mut value = serde_json::to_value(dag).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert(VERSION_KEY.into(), FORMAT_VERSION.into());
    }
    value
}

/// Reads a stored spec written by this or any earlier release.
pub fn from_stored(mut value: Value) -> Result<Dag, SpecError> {
    let map = value.as_object_mut().ok_or(SpecError::NotAnObject)?;
    let version = map
        .remove(VERSION_KEY)
        .and_then(|v| v.as_u64())
        .unwrap_or(1);
    if version > FORMAT_VERSION {
        return Err(SpecError::TooNew { found: version });
    }
    upgrade(map, version);
    serde_json::from_value(value).map_err(|source| SpecError::Shape { version, source })
}

/// Rewrites a spec of format `from` into the current format, one step at a time.
fn upgrade(spec: &mut Map<String, Value>, from: u64) {
    if from < 2 {
        v1_to_v2(spec);
    }
}

/// 1 → 2: `retry_exponential_backoff` was a boolean; now it is the multiplier.
fn v1_to_v2(spec: &mut Map<String, Value>) {
    for task in tasks(spec) {
        if let Some(Value::Bool(on)) = task.get("retry_exponential_backoff") {
            let multiplier = if *on { 2.0 } else { 0.0 };
            task.insert("retry_exponential_backoff".into(), multiplier.into());
        }
    }
}

fn tasks(spec: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    spec.get_mut("tasks")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/specs")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn reads_the_first_releases_specs() {
        let dag = from_stored(fixture("spec_v1.json")).unwrap();
        assert_eq!(dag.dag_id.as_str(), "stored_spec_v1");
        let greet = dag.task("greet").unwrap();
        assert_eq!(greet.retry_exponential_backoff, 2.0, "true became doubling");
        assert_eq!(dag.task("start").unwrap().retry_exponential_backoff, 0.0);
        assert_eq!(greet.retries, 2);
        let ua = from_stored(fixture("user_automation_v1.json")).unwrap();
        assert_eq!(ua.dag_id.as_str(), "user_automation");
        assert_eq!(ua.tasks.len(), 3);
    }

    #[test]
    fn round_trips_the_current_format_and_refuses_newer_ones() {
        let dag = from_stored(fixture("spec_v1.json")).unwrap();
        let stored = to_stored(&dag);
        assert_eq!(stored[VERSION_KEY], FORMAT_VERSION);
        assert_eq!(from_stored(stored.clone()).unwrap(), dag);
        let mut newer = stored;
        newer[VERSION_KEY] = (FORMAT_VERSION + 1).into();
        assert!(matches!(from_stored(newer), Err(SpecError::TooNew { .. })));
        assert!(matches!(
            from_stored(Value::Null),
            Err(SpecError::NotAnObject)
        ));
    }
}
