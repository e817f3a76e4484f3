//! `updraft variables get|set|delete|list|import|export`, like Airflow's. Import and export
//! use Airflow's `variables export` format: `{"key": value}`, or `{"key": {"value": value,
//! "description": "..."}}` when there is a description; a value that is JSON is written as
//! JSON, anything else as a string.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::table::{self, Output};
use crate::cli::pool_for;
use crate::core::transfer::{export_json, parse_import};
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
            let count = vars.len();
            let text = export_json(&vars.into_iter().map(Into::into).collect::<Vec<_>>());
            table::write_output(&file, &text)?;
            if file.as_os_str() != "-" {
                println!(
                    "{count} variables successfully exported to {}",
                    file.display()
                );
            }
        }
    }
    Ok(0)
}
