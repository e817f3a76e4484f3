//! `updraft variables get|set|delete|list|import|export`, like Airflow's. Import and export
//! use Airflow's `variables export` format: `{"key": value}`, or `{"key": {"value": value,
//! "description": "..."}}` when there is a description; a value that is JSON is written as
//! JSON, anything else as a string.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Map, Value};

use super::table::{self, Output};
use crate::cli::pool_for;
use crate::db::variables::{self as db, OnConflict};
use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum VariablesCommand {
    /// Print a variable's value.
    Get {
        key: String,
        /// Print the value parsed as JSON (pretty).
        #[arg(long)]
        json: bool,
        /// Printed when the variable does not exist (instead of failing).
        #[arg(long, short = 'd')]
        default: Option<String>,
    },
    /// Create or update a variable.
    Set {
        key: String,
        value: String,
        #[arg(long)]
        description: Option<String>,
        /// The value is JSON: check it and store it formatted.
        #[arg(long, short = 'j')]
        json: bool,
    },
    /// Delete a variable.
    Delete { key: String },
    /// List variable keys (with `--show-values`, values too; sensitive ones masked unless
    /// `--show-secrets`).
    List {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        #[arg(long)]
        show_values: bool,
        #[arg(long)]
        show_secrets: bool,
    },
    /// Import variables from a JSON file (`-` for standard input).
    Import {
        file: PathBuf,
        /// What to do with keys that already exist.
        #[arg(long, short = 'a', value_enum, default_value = "overwrite")]
        action_on_existing_key: OnExisting,
    },
    /// Export every variable to a JSON file (`-` for standard output), secrets included.
    Export { file: PathBuf },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExisting {
    Overwrite,
    Fail,
    Skip,
}

/// The export document of `vars`, as Airflow writes it (keys sorted, 4-space indent).
pub fn export_json(vars: &[db::Variable]) -> String {
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
    let doc: Value = serde_json::from_str(text).context("the variables file is not valid JSON")?;
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

pub async fn run(settings: &Settings, cmd: VariablesCommand) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let vault = settings.vault()?;
    match cmd {
        VariablesCommand::Get { key, json, default } => match db::get(&pool, &vault, &key).await? {
            Some(v) if json => {
                let parsed: Value = serde_json::from_str(&v.value)
                    .with_context(|| format!("variable `{key}` is not JSON"))?;
                println!("{}", serde_json::to_string_pretty(&parsed)?);
            }
            Some(v) => println!("{}", v.value),
            None => match default {
                Some(d) => println!("{d}"),
                None => {
                    eprintln!("Variable {key} does not exist");
                    return Ok(1);
                }
            },
        },
        VariablesCommand::Set {
            key,
            value,
            description,
            json,
        } => {
            let value = if json {
                let v: Value = serde_json::from_str(&value)
                    .with_context(|| format!("--json was given but `{value}` is not JSON"))?;
                serde_json::to_string_pretty(&v)?
            } else {
                value
            };
            db::put(
                &pool,
                &vault,
                &key,
                &value,
                description.as_deref(),
                OnConflict::Overwrite,
            )
            .await?;
            println!("Variable {key} created");
        }
        VariablesCommand::Delete { key } => {
            if !db::delete(&pool, &key).await? {
                eprintln!("Variable {key} does not exist");
                return Ok(1);
            }
            println!("Variable {key} deleted");
        }
        VariablesCommand::List {
            output,
            show_values,
            show_secrets,
        } => {
            let vars = db::all(&pool, &vault).await?;
            if show_values {
                let rows: Vec<Vec<String>> = vars
                    .iter()
                    .map(|v| {
                        let value = if show_secrets {
                            v.value.clone()
                        } else {
                            crate::web::api::variables::shown_value(&v.key, &v.value)
                        };
                        vec![
                            v.key.clone(),
                            value,
                            v.description.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table::print(output, &["key", "val", "description"], &rows);
            } else {
                let rows: Vec<Vec<String>> = vars.iter().map(|v| vec![v.key.clone()]).collect();
                table::print(output, &["key"], &rows);
            }
        }
        VariablesCommand::Import {
            file,
            action_on_existing_key,
        } => {
            let entries = parse_import(&table::read_input(&file)?)?;
            let keys: Vec<String> = entries.iter().map(|(k, _, _)| k.clone()).collect();
            let existing = db::existing(&pool, &keys).await?;
            if action_on_existing_key == OnExisting::Fail && !existing.is_empty() {
                eprintln!("Failed. These keys: {existing:?} already exists.");
                return Ok(1);
            }
            let (mut done, mut failed, mut skipped) = (0, 0, Vec::new());
            for (key, value, description) in &entries {
                let on_conflict = match action_on_existing_key {
                    OnExisting::Skip => OnConflict::Keep,
                    _ => OnConflict::Overwrite,
                };
                match db::put(
                    &pool,
                    &vault,
                    key,
                    value,
                    description.as_deref(),
                    on_conflict,
                )
                .await
                {
                    Ok(true) => done += 1,
                    Ok(false) => skipped.push(key.clone()),
                    Err(e) => {
                        eprintln!("Variable import failed: {key}: {e}");
                        failed += 1;
                    }
                }
            }
            println!(
                "{done} of {} variables successfully updated.",
                entries.len()
            );
            if failed > 0 {
                println!("{failed} variable(s) failed to be updated.");
            }
            if !skipped.is_empty() {
                println!("The variables with these keys: {skipped:?} were skipped because they already exists");
            }
            return Ok(i32::from(failed > 0));
        }
        VariablesCommand::Export { file } => {
            let vars = db::all(&pool, &vault).await?;
            table::write_output(&file, &export_json(&vars))?;
            if file.as_os_str() != "-" {
                println!(
                    "{} variables successfully exported to {}",
                    vars.len(),
                    file.display()
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_and_import_round_trip_in_airflows_format() {
        let v = |k: &str, val: &str, d: Option<&str>| db::Variable {
            key: k.into(),
            value: val.into(),
            description: d.map(String::from),
            is_encrypted: true,
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
