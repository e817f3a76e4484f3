//! `updraft connections add|get|delete|list|import|export|test`, like Airflow's: a connection
//! is given as `--conn-uri`, `--conn-json` or field by field; files are JSON
//! (`{"id": {"conn_type": ..., "host": ...}}`, Airflow's export format) or `.env`
//! (`ID=URI` or `ID=JSON` lines). Passwords are shown only with `--show-secrets`; exports
//! hold them (the file is written with mode 0600).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Map, Value};

use super::table::{self, Output};
use crate::cli::pool_for;
use crate::core::connection::Connection;
use crate::db::connections::{self as db, OnConflict};
use crate::settings::Settings;

#[derive(Subcommand, Debug)]
pub enum ConnectionsCommand {
    /// Add a connection (it must not exist yet).
    Add {
        conn_id: String,
        #[arg(long)]
        conn_uri: Option<String>,
        #[arg(long)]
        conn_json: Option<String>,
        #[arg(long)]
        conn_type: Option<String>,
        #[arg(long)]
        conn_host: Option<String>,
        #[arg(long)]
        conn_login: Option<String>,
        #[arg(long)]
        conn_password: Option<String>,
        #[arg(long)]
        conn_schema: Option<String>,
        #[arg(long)]
        conn_port: Option<i32>,
        /// A JSON object.
        #[arg(long)]
        conn_extra: Option<String>,
        #[arg(long)]
        conn_description: Option<String>,
    },
    /// Show a connection (password masked unless `--show-secrets`).
    Get {
        conn_id: String,
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
        #[arg(long)]
        show_secrets: bool,
    },
    /// Delete a connection.
    Delete { conn_id: String },
    /// List connections (id, type, host).
    List {
        #[arg(long, short = 'o', value_enum, default_value_t)]
        output: Output,
    },
    /// Import connections from a `.json` or `.env` file.
    Import {
        file: PathBuf,
        /// Replace connections that exist (default: keep them and say so).
        #[arg(long)]
        overwrite: bool,
    },
    /// Export every connection to a file (`-`: standard output), secrets included.
    Export {
        file: PathBuf,
        /// `json` or `env` (default: from the file's extension, else json).
        #[arg(long)]
        file_format: Option<String>,
        /// For `env`: `uri` (default) or `json`.
        #[arg(long)]
        serialization_format: Option<String>,
    },
    /// Connect with a stored connection and say whether it answered.
    Test { conn_id: String },
}

/// Airflow's export entry of a connection.
fn to_export(c: &Connection) -> Value {
    serde_json::json!({
        "conn_type": c.conn_type, "description": c.description, "login": c.login,
        "password": c.password, "host": c.host, "port": c.port, "schema": c.schema, "extra": c.extra,
    })
}

/// Connections of an import file: `.env` lines or a JSON object of id → fields.
pub fn parse_import(name: &str, text: &str) -> anyhow::Result<Vec<Connection>> {
    if name.ends_with(".env") {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, value) = line
                .split_once('=')
                .with_context(|| format!("{name}:{}: expected ID=URI", i + 1))?;
            out.push(
                Connection::from_env_value(id.trim(), value.trim())
                    .with_context(|| format!("{name}:{}", i + 1))?,
            );
        }
        return Ok(out);
    }
    let doc: Value =
        serde_json::from_str(text).with_context(|| format!("{name} is not valid JSON"))?;
    let Value::Object(map) = doc else {
        anyhow::bail!("{name} must be a JSON object of connection id → fields");
    };
    map.into_iter()
        .map(|(id, v)| {
            let mut fields = v;
            if let Some(o) = fields.as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
            Connection::from_json(&id, &fields.to_string())
                .with_context(|| format!("connection `{id}`"))
        })
        .collect()
}

fn show(c: &Connection, show_secrets: bool) -> Vec<(&'static str, String)> {
    let hide = |v: &Option<String>| match v {
        Some(_) if !show_secrets => crate::core::log::MASK.to_string(),
        other => other.clone().unwrap_or_default(),
    };
    let uri = if show_secrets {
        c.get_uri()
    } else {
        crate::core::Secrets::new(c.secrets())
            .mask(&c.get_uri())
            .into_owned()
    };
    vec![
        ("conn_id", c.conn_id.clone()),
        ("conn_type", c.conn_type.clone()),
        ("description", c.description.clone().unwrap_or_default()),
        ("host", c.host.clone().unwrap_or_default()),
        ("schema", c.schema.clone().unwrap_or_default()),
        ("login", c.login.clone().unwrap_or_default()),
        ("password", hide(&c.password)),
        ("port", c.port.map(|p| p.to_string()).unwrap_or_default()),
        (
            "extra",
            if show_secrets {
                c.extra.clone().unwrap_or_default()
            } else {
                crate::web::api::connections::shown_extra(c.extra.as_deref()).unwrap_or_default()
            },
        ),
        ("get_uri", uri),
    ]
}

pub async fn run(settings: &Settings, cmd: ConnectionsCommand) -> anyhow::Result<i32> {
    let pool = pool_for(settings).await?;
    let vault = settings.vault()?;
    match cmd {
        ConnectionsCommand::Add {
            conn_id,
            conn_uri,
            conn_json,
            conn_type,
            conn_host,
            conn_login,
            conn_password,
            conn_schema,
            conn_port,
            conn_extra,
            conn_description,
        } => {
            let mut conn = match (conn_uri, conn_json) {
                (Some(_), Some(_)) => anyhow::bail!("Cannot supply both conn-uri and conn-json"),
                (Some(uri), None) => Connection::from_uri(&conn_id, &uri)?,
                (None, Some(json)) => Connection::from_json(&conn_id, &json)?,
                (None, None) => Connection {
                    conn_id: conn_id.clone(),
                    conn_type: conn_type.clone().context(
                        "Must supply either conn-uri or conn-json if not supplying conn-type",
                    )?,
                    host: conn_host,
                    login: conn_login,
                    password: conn_password,
                    schema: conn_schema,
                    port: conn_port,
                    ..Default::default()
                },
            };
            if let Some(e) = conn_extra {
                conn.extra = Some(e);
            }
            if conn_description.is_some() {
                conn.description = conn_description;
            }
            if !db::put(&pool, &vault, &conn, OnConflict::Keep).await? {
                eprintln!("A connection with `conn_id`={conn_id} already exists.");
                return Ok(1);
            }
            println!(
                "Successfully added `conn_id`={conn_id} : {}",
                crate::core::Secrets::new(conn.secrets()).mask(&conn.get_uri())
            );
        }
        ConnectionsCommand::Get {
            conn_id,
            output,
            show_secrets,
        } => {
            let Some(c) = db::get(&pool, &vault, &conn_id).await? else {
                eprintln!("Connection not found.");
                return Ok(1);
            };
            let fields = show(&c.conn, show_secrets);
            let headers: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            let row: Vec<String> = fields.into_iter().map(|(_, v)| v).collect();
            table::print(output, &headers, &[row]);
        }
        ConnectionsCommand::Delete { conn_id } => {
            if !db::delete(&pool, &conn_id).await? {
                eprintln!("Did not find a connection with `conn_id`={conn_id}");
                return Ok(1);
            }
            println!("Successfully deleted connection with `conn_id`={conn_id}");
        }
        ConnectionsCommand::List { output } => {
            let rows: Vec<Vec<String>> = db::all(&pool, &vault)
                .await?
                .iter()
                .map(|c| {
                    vec![
                        c.conn.conn_id.clone(),
                        c.conn.conn_type.clone(),
                        c.conn.host.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table::print(output, &["conn_id", "conn_type", "host"], &rows);
        }
        ConnectionsCommand::Import { file, overwrite } => {
            let conns = parse_import(&file.to_string_lossy(), &table::read_input(&file)?)?;
            let on_conflict = if overwrite {
                OnConflict::Overwrite
            } else {
                OnConflict::Keep
            };
            let mut failed = false;
            for c in &conns {
                match db::put(&pool, &vault, c, on_conflict).await {
                    Ok(true) => println!("Imported connection {}", c.conn_id),
                    Ok(false) => println!(
                        "Could not import connection {}: connection already exists.",
                        c.conn_id
                    ),
                    Err(e) => {
                        eprintln!("Could not import connection {}: {e}", c.conn_id);
                        failed = true;
                    }
                }
            }
            return Ok(i32::from(failed));
        }
        ConnectionsCommand::Export {
            file,
            file_format,
            serialization_format,
        } => {
            let name = file.to_string_lossy().to_string();
            let format = file_format
                .map(|f| f.trim_start_matches('.').to_lowercase())
                .unwrap_or_else(|| {
                    if name.ends_with(".env") {
                        "env".into()
                    } else {
                        "json".into()
                    }
                });
            let conns = db::all(&pool, &vault).await?;
            let text = match format.as_str() {
                "env" => {
                    let json_form = serialization_format.as_deref() == Some("json");
                    conns
                        .iter()
                        .map(|c| {
                            let v = if json_form {
                                to_export(&c.conn).to_string()
                            } else {
                                c.conn.get_uri()
                            };
                            format!("{}={v}\n", c.conn.conn_id)
                        })
                        .collect::<String>()
                }
                "json" => {
                    let map: Map<String, Value> = conns
                        .iter()
                        .map(|c| (c.conn.conn_id.clone(), to_export(&c.conn)))
                        .collect();
                    serde_json::to_string_pretty(&Value::Object(map))? + "\n"
                }
                other => anyhow::bail!("unsupported file format `{other}`: use json or env"),
            };
            table::write_output(&file, &text)?;
            if name != "-" {
                println!("Connections successfully exported to {name}.");
            }
        }
        ConnectionsCommand::Test { conn_id } => {
            let env = settings.operator_env();
            let conn = match env.env_connections.get(&conn_id.to_lowercase()) {
                Some(Ok(c)) => c.clone(),
                Some(Err(e)) => anyhow::bail!("{e}"),
                None => match db::get(&pool, &vault, &conn_id).await? {
                    Some(c) => c.conn,
                    None => {
                        eprintln!("Connection not found.");
                        return Ok(1);
                    }
                },
            };
            println!("Retrieving connection: {conn_id:?}\n\nTesting...");
            match crate::operators::conn_test::test_connection(&conn).await {
                Ok(m) => println!("\nConnection success! {m}"),
                Err(m) => {
                    println!("\nConnection failed!\n{m}");
                    return Ok(1);
                }
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_json_and_env_files() {
        let json = r#"{"pg": {"conn_type": "postgres", "host": "db", "port": 5432, "password": "p", "extra": null},
                       "api": {"conn_type": "http", "host": "api.example.com", "extra": "{\"k\": \"v\"}"}}"#;
        let c = parse_import("x.json", json).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].port, Some(5432));
        assert_eq!(c[1].extra_dejson()["k"], "v");
        let env = "# comment\nkafka_default=kafka://k1:9092,k2:9092\nhttp_x={\"conn_type\": \"http\", \"host\": \"h\"}\n";
        let c = parse_import("c.env", env).unwrap();
        assert_eq!(c[0].host.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(c[1].conn_type, "http");
        assert_eq!(to_export(&c[1])["host"], "h");
    }
}
