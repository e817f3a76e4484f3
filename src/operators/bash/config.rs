use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of the `bash` operator (Airflow's `BashOperator`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The command, run with `bash -c`. Literal unless wrapped in `$t`.
    pub bash_command: String,
    /// Environment variables for the command. Without `append_env` they replace the worker's
    /// environment, as in Airflow.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Add `env` to the worker's environment instead of replacing it.
    #[serde(default)]
    pub append_env: bool,
    /// Working directory; a temporary directory when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Exit codes that mark the task skipped instead of failed (Airflow's default: 99).
    #[serde(default = "default_skip_codes", deserialize_with = "one_or_many")]
    pub skip_on_exit_code: Vec<i32>,
    /// Push the last line of stdout as the XCom `return_value`.
    #[serde(default = "yes")]
    pub do_xcom_push: bool,
    /// How the command's output is decoded (Airflow's `output_encoding`): `utf-8` (default),
    /// `latin-1` or `ascii`. Bytes that do not decode show as `\xNN`, as Airflow's
    /// `backslashreplace` does.
    #[serde(default)]
    pub output_encoding: OutputEncoding,
}

/// The encodings `output_encoding` accepts, named as Python names them (case, `-` and `_` do
/// not matter: `UTF8`, `utf_8`, `latin1`, `iso-8859-1`, `us-ascii`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub enum OutputEncoding {
    #[default]
    Utf8,
    Latin1,
    Ascii,
}

impl<'de> Deserialize<'de> for OutputEncoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let norm: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        match norm.as_str() {
            "utf8" => Ok(OutputEncoding::Utf8),
            "latin1" | "iso88591" | "l1" | "8859" | "cp819" => Ok(OutputEncoding::Latin1),
            "ascii" | "usascii" | "646" => Ok(OutputEncoding::Ascii),
            _ => Err(serde::de::Error::custom(format!(
                "unsupported output_encoding `{raw}`; use utf-8, latin-1 or ascii"
            ))),
        }
    }
}

impl OutputEncoding {
    /// Decodes one line; undecodable bytes become `\xNN`.
    pub fn decode(self, bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len());
        match self {
            OutputEncoding::Latin1 => out.extend(bytes.iter().map(|&b| b as char)),
            OutputEncoding::Ascii => {
                for &b in bytes {
                    if b.is_ascii() {
                        out.push(b as char);
                    } else {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
            }
            OutputEncoding::Utf8 => {
                for chunk in bytes.utf8_chunks() {
                    out.push_str(chunk.valid());
                    for b in chunk.invalid() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
            }
        }
        out
    }
}

fn default_skip_codes() -> Vec<i32> {
    vec![99]
}

fn yes() -> bool {
    true
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(i32),
        Many(Vec<i32>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(c) => vec![c],
        Raw::Many(v) => v,
    })
}
