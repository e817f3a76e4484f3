//! The layering: defaults < config file < environment < flags, merged by figment, which also
//! remembers which layer each value came from. The config file is checked first against the
//! settings' types, so a mistake in it is reported with its file, key, line and column.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::keys::{self, Kind, CONFIG_ENV, KEYS};
use super::{Connection, Settings};

/// What the settings are loaded from.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The process environment, captured once at start (tests pass their own).
    pub env: Vec<(String, String)>,
    pub flags: Flags,
    /// `--config`; else `UPDRAFT_CONFIG`; else `<home>/updraft.toml`, which may be absent.
    pub config: Option<PathBuf>,
}

impl Sources {
    /// This process's environment and the given flags.
    pub fn from_process(flags: Flags, config: Option<PathBuf>) -> Sources {
        Sources {
            env: std::env::vars().collect(),
            flags,
            config,
        }
    }
}

/// Settings given as command-line flags (the last layer).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub dags_folder: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub database_url: Option<String>,
    pub slots: Option<usize>,
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
    /// `Some(true)` when `--secure-cookies` was given.
    pub secure_cookies: Option<bool>,
}

impl Flags {
    fn values(&self) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        let path = |p: &PathBuf| Value::from(p.to_string_lossy().into_owned());
        if let Some(v) = &self.dags_folder {
            out.push(("core.dags_folder", path(v)));
        }
        if let Some(v) = &self.home {
            out.push(("core.home", path(v)));
        }
        if let Some(v) = &self.database_url {
            out.push(("database.url", Value::from(v.clone())));
        }
        if let Some(v) = self.slots {
            out.push(("worker.slots", Value::from(v as u64)));
        }
        if let Some(v) = self.host {
            out.push(("webserver.host", Value::from(v.to_string())));
        }
        if let Some(v) = self.port {
            out.push(("webserver.port", Value::from(v as u64)));
        }
        if let Some(v) = self.secure_cookies {
            out.push(("webserver.secure_cookies", Value::from(v)));
        }
        out
    }
}

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why the settings could not be loaded; each says where to look.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}:{line}:{column}: `{key}`: {message}")]
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("cannot read the config file {path}: {error}")]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// One layer of values, named so `config list` can say where each came from.
struct Layer {
    name: &'static str,
    source: Option<PathBuf>,
    values: Dict,
}

impl Layer {
    fn new(name: &'static str, source: Option<PathBuf>) -> Layer {
        Layer {
            name,
            source,
            values: Dict::new(),
        }
    }

    fn insert(&mut self, key: &str, value: Value) {
        let Some((section, name)) = key.split_once('.') else {
            return;
        };
        let entry = self
            .values
            .entry(section.to_string())
            .or_insert_with(|| Value::from(Dict::new()));
        if let Value::Dict(_, d) = entry {
            d.insert(name.to_string(), value);
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let m = Metadata::named(self.name);
        match &self.source {
            Some(p) => m.source(figment::Source::File(p.clone())),
            None => m,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

const DEFAULT: &str = "default";
const FILE: &str = "file";
const ENV: &str = "env";
const FLAG: &str = "flag";

/// The default home: `$UPDRAFT_HOME` is a setting like any other; without it, root gets
/// `/var/lib/updraft` (a private cluster runs as the `postgres` user, who cannot enter
/// /root) and everyone else `~/.updraft`.
fn default_home(env: &[(String, String)]) -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/updraft");
    }
    env.iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, h)| PathBuf::from(h).join(".updraft"))
        .unwrap_or_else(|| PathBuf::from(".updraft"))
}

fn env_value(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.clone())
}

pub(super) fn load(sources: Sources) -> Result<Settings, SettingsError> {
    let env = &sources.env;
    let mut defaults = Settings::default();
    defaults.core.home = default_home(env);

    let home = sources
        .flags
        .home
        .clone()
        .or_else(|| env_value(env, "UPDRAFT_HOME").map(PathBuf::from))
        .unwrap_or_else(|| defaults.core.home.clone());
    let (config, explicit) = match sources
        .config
        .clone()
        .or_else(|| env_value(env, CONFIG_ENV).map(PathBuf::from))
    {
        Some(p) => (p, true),
        None => (home.join("updraft.toml"), false),
    };
    let file_layer = read_file(&config, explicit)?;

    let mut env_layer = Layer::new(ENV, None);
    for k in KEYS {
        let Some(text) =
            env_value(env, k.env).or_else(|| k.env_alias.and_then(|a| env_value(env, a)))
        else {
            continue;
        };
        let value = match k.kind {
            Kind::Text => Value::from(text),
            Kind::Int => match text.trim().parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    return Err(SettingsError::Invalid {
                        origin: format!("environment variable {}", k.env),
                        key: k.key.into(),
                        message: format!("`{text}` is not a whole number"),
                    })
                }
            },
            Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Value::from(true),
                "0" | "false" | "no" | "off" => Value::from(false),
                _ => {
                    return Err(SettingsError::Invalid {
                        origin: format!("environment variable {}", k.env),
                        key: k.key.into(),
                        message: format!("`{text}` is not true or false"),
                    })
                }
            },
        };
        env_layer.insert(k.key, value);
    }
    let mut flag_layer = Layer::new(FLAG, None);
    for (key, value) in sources.flags.values() {
        flag_layer.insert(key, value);
    }

    let figment = Figment::new()
        .merge(Layer {
            name: DEFAULT,
            source: None,
            values: match figment::providers::Serialized::defaults(&defaults).data() {
                Ok(mut m) => m.remove(&Profile::Default).unwrap_or_default(),
                Err(e) => return Err(figment_error(e)),
            },
        })
        .merge(file_layer)
        .merge(env_layer)
        .merge(flag_layer);
    let mut settings: Settings = figment.extract().map_err(figment_error)?;

    for k in KEYS {
        let origin = match figment.find_metadata(k.key) {
            Some(m) if m.name == FILE => Origin::File(config.clone()),
            Some(m) if m.name == ENV => match k.env_alias {
                Some(alias) if env_value(env, k.env).is_none() => Origin::Env(alias),
                _ => Origin::Env(k.env),
            },
            Some(m) if m.name == FLAG => Origin::Flag(k.flag.unwrap_or("?")),
            _ => Origin::Default,
        };
        settings.origins.insert(k.key.to_string(), origin);
    }
    settings.config_file = Some(config);
    if let Some(text) = &settings.core.fernet_key {
        if let Err(e) = crate::core::fernet::Vault::from_setting(Some(text)) {
            return Err(SettingsError::Invalid {
                origin: settings
                    .origins
                    .get("core.fernet_key")
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                key: "core.fernet_key".into(),
                message: e.to_string(),
            });
        }
    }

    for (key, value) in env {
        if let Some(name) = key
            .strip_prefix("AIRFLOW_CONN_")
            .or_else(|| key.strip_prefix("UPDRAFT_CONN_"))
        {
            let parsed = Connection::from_env_value(&name.to_lowercase(), value)
                .map_err(|e| format!("environment variable {key}: {e}"));
            settings.env_connections.insert(name.to_lowercase(), parsed);
        } else if let Some(name) = key
            .strip_prefix("AIRFLOW_VAR_")
            .or_else(|| key.strip_prefix("UPDRAFT_VAR_"))
        {
            settings
                .env_variables
                .insert(name.to_lowercase(), value.clone());
        }
    }
    // updraft's own credentials, so tasks neither get nor print them.
    let mut own = settings
        .database
        .url
        .as_deref()
        .map(super::url_passwords)
        .unwrap_or_default();
    own.extend(env_value(env, "PGPASSWORD"));
    settings.task_env = super::TaskEnv::capture(env, &own);
    settings.own_secrets = own;
    Ok(settings)
}

/// The config file as a layer, after checking it against the settings' types. An absent
/// default file is an empty layer; an absent file that was asked for is an error.
fn read_file(path: &Path, explicit: bool) -> Result<Layer, SettingsError> {
    let mut layer = Layer::new(FILE, Some(path.to_path_buf()));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(layer),
        Err(error) => {
            return Err(SettingsError::Unreadable {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    if let Err(e) = toml::from_str::<Settings>(&text) {
        return Err(file_error(path, &text, &e));
    }
    layer.values = toml::from_str::<Dict>(&text).map_err(|e| file_error(path, &text, &e))?;
    Ok(layer)
}

/// A TOML error as `file:line:column: `key`: message`, the key found from the error's
/// position (the `[section]` above it and the name before `=` on its line).
fn file_error(path: &Path, text: &str, e: &toml::de::Error) -> SettingsError {
    let at = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let line_start = text[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let section = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && l.ends_with(']')).then(|| l[1..l.len() - 1].trim().to_string())
    });
    let name = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .or_else(|| {
            let l = line_text.trim();
            (l.starts_with('[') && l.ends_with(']')).then(|| l[1..l.len() - 1].trim().to_string())
        })
        .unwrap_or_default();
    let key = match (section, name.is_empty()) {
        (Some(s), false) if !name.contains('.') && !line_text.trim().starts_with('[') => {
            format!("{s}.{name}")
        }
        (_, false) => name,
        (Some(s), true) => s,
        (None, true) => String::new(),
    };
    let mut message = e.message().trim().to_string();
    if let Some(k) = keys::find(&key) {
        message.push_str(&format!(" ({})", k.doc));
    }
    SettingsError::File {
        path: path.to_path_buf(),
        line,
        column,
        key,
        message,
    }
}

fn figment_error(e: figment::Error) -> SettingsError {
    let key = e.path.join(".");
    let origin = match e.metadata.as_ref().map(|m| m.name.as_ref()) {
        Some(ENV) => keys::find(&key)
            .map(|k| format!("environment variable {}", k.env))
            .unwrap_or_else(|| "the environment".into()),
        Some(FLAG) => keys::find(&key)
            .and_then(|k| k.flag)
            .map(|f| format!("flag {f}"))
            .unwrap_or_else(|| "a flag".into()),
        Some(FILE) => "the config file".into(),
        _ => "settings".into(),
    };
    SettingsError::Invalid {
        origin,
        key,
        message: e.kind.to_string(),
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
