//! The file format of `variables export` / `variables import` (Airflow's): a JSON object of
//! key → value, or key → `{"value": ..., "description": "..."}` when there is a
//! description; a value that is JSON is written as JSON, anything else as a string. Keys
//! sorted, 4-space indent, as Airflow writes it.

use serde_json::{Map, Value};

/// A variable as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVariable {
    pub key: String,
    pub value: String,
    pub description: Option<String>,
}

/// The export document of `vars`, as Airflow writes it (keys sorted, 4-space indent).
pub fn export_json(vars: &[StoredVariable]) -> String {
    let mut out = Map::new();
    for v in vars {
        let parsed = serde_json::from_str::<Value>(&v.value)
            .ok()
            .filter(|p| !p.is_string())
            .unwrap_or_else(|| Value::String(v.value.clone()));
        let entry = match &v.description {
            Some(d) if !d.is_empty() => serde_json::json!({"value": parsed, "description": d}),
            _ if parsed.as_object().is_some_and(|o| o.contains_key("value")) => {
                serde_json::json!({"value": parsed, "description": null})
            }
            _ => parsed,
        };
        out.insert(v.key.clone(), entry);
    }
    let mut sorted: Vec<(String, Value)> = out.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let obj: Map<String, Value> = sorted.into_iter().collect();
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&Value::Object(obj), &mut ser).unwrap_or_default();
    String::from_utf8(buf).unwrap_or_default() + "\n"
}

/// `(key, value text, description)` of each entry of an import document.
pub fn parse_import(text: &str) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("the variables file is not valid JSON: {e}"))?;
    let Value::Object(map) = doc else {
        anyhow::bail!("the variables file must be a JSON object of key → value");
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let (value, description) = match v {
                Value::Object(mut o) if o.contains_key("value") => {
                    let d = o
                        .remove("description")
                        .and_then(|d| d.as_str().map(String::from));
                    (o.remove("value").unwrap_or(Value::Null), d)
                }
                other => (other, None),
            };
            let text = match value {
                Value::String(s) => s,
                other => serde_json::to_string_pretty(&other).unwrap_or_default(),
            };
            (k, text, description)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_and_import_round_trip_in_airflows_format() {
        let v = |k: &str, val: &str, d: Option<&str>| StoredVariable {
            key: k.into(),
            value: val.into(),
            description: d.map(String::from),
        };
        let vars = [
            v("b", "plain text", None),
            v("a", r#"{"x": [1, 2]}"#, Some("cfg")),
            v("n", "42", None),
        ];
        let text = export_json(&vars);
        assert!(text.starts_with("{\n    \"a\": {\n"), "{text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["a"]["value"]["x"][1], 2);
        assert_eq!(doc["b"], "plain text");
        assert_eq!(doc["n"], 42);
        let back = parse_import(&text).unwrap();
        assert_eq!(back[0].0, "a");
        assert_eq!(back[0].2.as_deref(), Some("cfg"));
        assert_eq!(
            serde_json::from_str::<Value>(&back[0].1).unwrap()["x"][0],
            1
        );
        assert_eq!(back[1].1, "plain text");
        assert_eq!(back[2].1, "42");
    }
}
