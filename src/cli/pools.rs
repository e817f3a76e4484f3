//! `updraft pools set|get|delete|list|import|export`, like Airflow's. Files are Airflow's
//! format: `{"name": {"slots": 4, "description": "...", "include_deferred": false}}`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Map, Value};

use super::table::{self, Output};
use crate::cli::pool_for;
use crate::db::pools::{self as db, PoolSpec, PoolStats};
use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum PoolsCommand {
    /// Create or update a pool.
    Set {
        pool: String,
        /// Slots, or -1 for unlimited.
        #[arg(allow_hyphen_values = true)]
        slots: i64,
        description: String,
        #[arg(long)]
        include_deferred: bool,
    },
    /// Show a pool and its slots.
    Get {
        pool: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a pool (not `default_pool`).
    Delete { pool: String },
    /// List pools with running, queued and open slots.
    List {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Import pools from a JSON file (`-`: standard input); existing ones are updated.
    Import { file: PathBuf },
    /// Export every pool to a JSON file (`-`: standard output).
    Export { file: PathBuf },
}

fn rows(pools: &[PoolStats]) -> Vec<Vec<String>> {
    pools
        .iter()
        .map(|p| {
            vec![
                p.pool.clone(),
                p.slots.to_string(),
                p.description.clone(),
                p.include_deferred.to_string(),
                p.running_slots.to_string(),
                p.queued_slots.to_string(),
                p.open_slots().to_string(),
            ]
        })
        .collect()
}

const HEADERS: &[&str] = &[
    "pool",
    "slots",
    "description",
    "include_deferred",
    "running",
    "queued",
    "open",
];

/// Pools of an import document, and the names of entries that are not pools.
pub fn parse_import(text: &str) -> anyhow::Result<(Vec<PoolSpec>, Vec<String>)> {
    let doc: Value = serde_json::from_str(text).context("Invalid json file")?;
    let Value::Object(map) = doc else {
        anyhow::bail!("the pools file must be a JSON object of name → {{slots, description}}");
    };
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (name, v) in map {
        match (v.get("slots").and_then(Value::as_i64), v.get("description")) {
            (Some(slots), Some(d)) => ok.push(PoolSpec {
                slots: db::check_slots(slots)?,
                description: d.as_str().unwrap_or_default().to_string(),
                include_deferred: v
                    .get("include_deferred")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                name,
            }),
            _ => bad.push(name),
        }
    }
    Ok((ok, bad))
}

pub async fn run(settings: &Settings, cmd: PoolsCommand) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let everything = crate::db::listing::ListQuery::new(None, None, i64::MAX, 0);
    let all = || db::list(&pool, &everything);
    match cmd {
        PoolsCommand::Set {
            pool: name,
            slots,
            description,
            include_deferred,
        } => {
            let spec = PoolSpec {
                slots: db::check_slots(slots)?,
                name: name.clone(),
                description,
                include_deferred,
            };
            db::put(&pool, &spec, true).await?;
            println!("Pool {name} created");
        }
        PoolsCommand::Get { pool: name, output } => match db::get(&pool, &name).await? {
            Some(p) => table::print(output, HEADERS, &rows(&[p])),
            None => {
                eprintln!("Pool {name} does not exist");
                return Ok(1);
            }
        },
        PoolsCommand::Delete { pool: name } => match db::delete(&pool, &name).await {
            Ok(()) => println!("Pool {name} deleted"),
            Err(db::DeleteError::NotFound(_)) => {
                eprintln!("Pool {name} does not exist");
                return Ok(1);
            }
            Err(e) => return Err(e.into()),
        },
        PoolsCommand::List { output } => {
            let (pools, _) = all().await?;
            table::print(output, HEADERS, &rows(&pools));
        }
        PoolsCommand::Import { file } => {
            let (pools, bad) = parse_import(&table::read_input(&file)?)?;
            for p in &pools {
                db::put(&pool, p, true).await?;
            }
            if !bad.is_empty() {
                eprintln!("Failed to update pool(s): {}", bad.join(", "));
                return Ok(1);
            }
            println!("Uploaded {} pool(s)", pools.len());
        }
        PoolsCommand::Export { file } => {
            let (pools, _) = all().await?;
            let map: Map<String, Value> = pools
                .iter()
                .map(|p| {
                    let entry = serde_json::json!({"slots": p.slots, "description": p.description, "include_deferred": p.include_deferred});
                    (p.pool.clone(), entry)
                })
                .collect();
            table::write_output(
                &file,
                &(serde_json::to_string_pretty(&Value::Object(map))? + "\n"),
            )?;
            if file.as_os_str() != "-" {
                println!("Exported {} pools to {}", pools.len(), file.display());
            }
        }
    }
    Ok(0)
}
