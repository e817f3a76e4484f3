//! Whether a new DAG version's record schema (see [`crate::dag::contracts`]) still accepts
//! records of the old shape, and still gives readers what the old one promised.
//!
//! Records already in a topic keep their old shape until the topic's retention drops them.
//! Three changes hurt them, in Schema Registry's terms one backward and two forward breaks:
//! - a field that is **new and required**: old records lack it, so publish and sink checks
//!   turn them into dead letters;
//! - a field whose **type narrowed** (or that must now be a UUID): old records of the other
//!   type become dead letters;
//! - a required field that was **removed**: readers of the topic (a sink column, another
//!   consumer) no longer get it from new records.
//!
//! Pure: the caller finds the schemas (stored version, file) and the topics.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

/// One change that breaks compatibility with records of the old shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Break {
    /// A field every record had is gone from the schema.
    Removed(String),
    /// A field the old records need not have is now required.
    NowRequired(String),
    /// A field's allowed types no longer include all the old ones.
    Retyped {
        field: String,
        from: String,
        to: String,
    },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Removed(n) => write!(
                f,
                "field `{n}` was removed: readers of the topic (a sink column, another consumer) stop getting it"
            ),
            Break::NowRequired(n) => write!(
                f,
                "field `{n}` is now required: records of the old shape lack it and become dead letters"
            ),
            Break::Retyped { field, from, to } => write!(
                f,
                "field `{field}` changed from {from} to {to}: records of the old shape become dead letters"
            ),
        }
    }
}

/// What a property allows: JSON types (empty = any, null included) and whether a string
/// must be a UUID.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Allowed {
    types: BTreeSet<String>,
    uuid: bool,
}

impl Allowed {
    fn of(property: &Value) -> Allowed {
        let types = match property.get("type") {
            Some(Value::String(t)) => BTreeSet::from([t.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => BTreeSet::new(),
        };
        Allowed {
            types,
            uuid: property.get("format").and_then(Value::as_str) == Some("uuid"),
        }
    }

    /// Whether every value `self` allows, `other` allows too.
    fn within(&self, other: &Allowed) -> bool {
        let types = other.types.is_empty()
            || (!self.types.is_empty() && self.types.is_subset(&other.types));
        types && (self.uuid || !other.uuid)
    }

    fn describe(&self) -> String {
        let types = if self.types.is_empty() {
            "any value".to_string()
        } else if self.types.len() >= 5 {
            "any value but null".to_string()
        } else {
            self.types.iter().cloned().collect::<Vec<_>>().join(" or ")
        };
        if self.uuid {
            format!("{types} (a UUID)")
        } else {
            types
        }
    }
}

fn required(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn property<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema.get("properties").and_then(|p| p.get(name))
}

/// The breaks between the schema `old` records were written under and the `new` one, in
/// field order; empty when records of the old shape still pass and readers lose nothing.
pub fn breaks(old: &Value, new: &Value) -> Vec<Break> {
    let (old_required, new_required) = (required(old), required(new));
    let names: BTreeSet<String> = [old, new]
        .iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    let mut out = Vec::new();
    for name in names {
        let (was, is) = (property(old, &name), property(new, &name));
        match (was, is) {
            (Some(_), None) if old_required.contains(&name) => out.push(Break::Removed(name)),
            (_, Some(_)) if new_required.contains(&name) && !old_required.contains(&name) => {
                out.push(Break::NowRequired(name))
            }
            (Some(was), Some(is)) => {
                let (from, to) = (Allowed::of(was), Allowed::of(is));
                if !from.within(&to) {
                    out.push(Break::Retyped {
                        field: name,
                        from: from.describe(),
                        to: to.describe(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(props: Value, required: &[&str]) -> Value {
        json!({"type": "object", "properties": props, "required": required})
    }

    const ANY_BUT_NULL: [&str; 5] = ["string", "number", "boolean", "object", "array"];

    #[test]
    fn the_same_schema_and_added_optional_fields_break_nothing() {
        let old = schema(
            json!({"id": {"type": "string", "format": "uuid"}, "email": {"type": ANY_BUT_NULL}}),
            &["id", "email"],
        );
        assert_eq!(breaks(&old, &old), vec![]);
        let mut new = old.clone();
        new["properties"]["phone"] = json!({});
        assert_eq!(breaks(&old, &new), vec![]);
        // Widening a type, or dropping the UUID format, accepts every old record.
        let wider = schema(
            json!({"id": {"type": "string"}, "email": {}}),
            &["id", "email"],
        );
        assert_eq!(breaks(&old, &wider), vec![]);
    }

    #[test]
    fn removed_required_and_narrowed_fields_are_breaks_in_field_order() {
        let old = schema(
            json!({"id": {"type": "string"}, "email": {"type": ANY_BUT_NULL}, "age": {}}),
            &["id", "email", "age"],
        );
        let new = schema(
            json!({"id": {"type": "string", "format": "uuid"}, "age": {"type": "number"}, "phone": {"type": "string"}}),
            &["id", "age", "phone"],
        );
        assert_eq!(
            breaks(&old, &new),
            vec![
                Break::Retyped {
                    field: "age".into(),
                    from: "any value".into(),
                    to: "number".into()
                },
                Break::Removed("email".into()),
                Break::Retyped {
                    field: "id".into(),
                    from: "string".into(),
                    to: "string (a UUID)".into()
                },
                Break::NowRequired("phone".into()),
            ]
        );
        assert_eq!(
            Break::Removed("email".into()).to_string(),
            "field `email` was removed: readers of the topic (a sink column, another consumer) stop getting it"
        );
    }

    #[test]
    fn an_optional_field_made_required_is_a_break_and_a_required_one_made_optional_is_not() {
        let optional = schema(json!({"id": {}, "n": {}}), &["id"]);
        let required = schema(json!({"id": {}, "n": {}}), &["id", "n"]);
        assert_eq!(
            breaks(&optional, &required),
            vec![Break::NowRequired("n".into())]
        );
        assert_eq!(breaks(&required, &optional), vec![]);
    }
}
