//! `updraft config list`: every effective setting, where it came from, secrets masked (like
//! `airflow config list`).

use crate::cli::ConfigCommand;
use crate::settings::{keys, Settings};

pub fn run(settings: &Settings, cmd: ConfigCommand) -> anyhow::Result<i32> {
    let json = match cmd {
        ConfigCommand::List { json } => json,
        ConfigCommand::GenerateFernetKey => {
            println!("{}", crate::core::fernet::FernetKeys::generate_key());
            return Ok(0);
        }
    };
    let rows = keys::list(settings);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if let Some(file) = &settings.config_file {
        let state = if file.exists() { "" } else { " (absent)" };
        println!("# config file: {}{state}", file.display());
    }
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|r| r.value.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for r in rows {
        let value = if r.value.is_empty() {
            "(unset)"
        } else {
            &r.value
        };
        println!("{:<width$}  {:<value_width$}  {}", r.key, value, r.source);
    }
    Ok(0)
}
