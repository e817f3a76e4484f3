//! Encryption of stored secrets (connection passwords and extras, variable values) with
//! Fernet, the format of Python's `cryptography` and so of Airflow's `[core] fernet_key`: a
//! database written by one can be read by the other with the same key.
//!
//! A key setting holds one key or several, comma-separated, newest first (Airflow's
//! `MultiFernet`): values are encrypted with the first and decrypted with whichever matches,
//! so a key is rotated by putting the new one first, running `updraft rotate-fernet-key`
//! (which re-encrypts everything with it), then dropping the old one.
//!
//! Without a key, a [`Vault`] refuses to store secrets rather than storing them in plain
//! text; what is not secret (a variable whose name does not look sensitive) is stored as is,
//! flagged unencrypted, as Airflow does without a key.

use std::sync::Arc;

/// The setting's environment variable, named in messages so users know what to set.
pub const KEY_ENV: &str = "UPDRAFT_FERNET_KEY";

/// Why a key setting cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Fernet key {position} of {count} is not valid: a key is 32 bytes in URL-safe base64 (44 characters, e.g. from `updraft config generate-fernet-key`)")]
pub struct KeyError {
    pub position: usize,
    pub count: usize,
}

/// Why a secret cannot be stored or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("no Fernet key is configured, so updraft will not store {what}: set {KEY_ENV} (or AIRFLOW__CORE__FERNET_KEY, or `fernet_key` under [core] in updraft.toml) to a key from `updraft config generate-fernet-key`")]
    NoKeyToStore { what: String },
    #[error("{what} is stored encrypted but no Fernet key is configured: set {KEY_ENV} to the key it was stored with")]
    NoKeyToRead { what: String },
    #[error("{what} cannot be decrypted: none of the {count} configured Fernet key(s) matches the one it was stored with; add that key to {KEY_ENV} (comma-separated, newest first)")]
    WrongKey { what: String, count: usize },
    #[error("{what} decrypts to bytes that are not UTF-8 text")]
    NotText { what: String },
}

/// One or more Fernet keys, newest first.
pub struct FernetKeys {
    multi: fernet::MultiFernet,
    count: usize,
}

impl std::fmt::Debug for FernetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FernetKeys({} key(s))", self.count)
    }
}

impl FernetKeys {
    /// Parses `key1,key2,...` (blanks around commas ignored, empty entries skipped).
    pub fn parse(text: &str) -> Result<FernetKeys, KeyError> {
        let parts: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let count = parts.len();
        if count == 0 {
            return Err(KeyError { position: 1, count });
        }
        let keys = parts
            .iter()
            .enumerate()
            .map(|(i, k)| {
                fernet::Fernet::new(k).ok_or(KeyError {
                    position: i + 1,
                    count,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FernetKeys {
            multi: fernet::MultiFernet::new(keys),
            count,
        })
    }

    /// A new random key, in the text form the setting takes.
    pub fn generate_key() -> String {
        fernet::Fernet::generate_key()
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// A token of `plain`, with the first (newest) key.
    pub fn encrypt(&self, plain: &str) -> String {
        self.multi.encrypt(plain.as_bytes())
    }

    /// The text in `token`, decrypted with whichever key matches; `what` names the value in
    /// errors.
    pub fn decrypt(&self, token: &str, what: &str) -> Result<String, VaultError> {
        let bytes = self
            .multi
            .decrypt(token.trim())
            .map_err(|_| VaultError::WrongKey {
                what: what.to_string(),
                count: self.count,
            })?;
        String::from_utf8(bytes).map_err(|_| VaultError::NotText {
            what: what.to_string(),
        })
    }
}

/// How a value is kept in the database: its text and whether that text is a Fernet token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub text: String,
    pub encrypted: bool,
}

/// What this process can do with secrets: the configured keys, or none. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Vault {
    keys: Option<Arc<FernetKeys>>,
}

impl Vault {
    /// A vault without keys: secrets are refused, plain values kept as they are.
    pub fn without_keys() -> Vault {
        Vault { keys: None }
    }

    pub fn new(keys: FernetKeys) -> Vault {
        Vault {
            keys: Some(Arc::new(keys)),
        }
    }

    /// The vault for a key setting (`None` or blank: no keys).
    pub fn from_setting(text: Option<&str>) -> Result<Vault, KeyError> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Vault::without_keys()),
            Some(t) => FernetKeys::parse(t).map(Vault::new),
        }
    }

    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    pub fn key_count(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.count())
    }

    /// Seals a value for storage. With keys, every value is encrypted (as Airflow does);
    /// without, a `secret` is refused and anything else kept as plain text.
    pub fn seal(&self, plain: &str, secret: bool, what: &str) -> Result<Sealed, VaultError> {
        match &self.keys {
            Some(k) => Ok(Sealed {
                text: k.encrypt(plain),
                encrypted: true,
            }),
            None if secret => Err(VaultError::NoKeyToStore {
                what: what.to_string(),
            }),
            None => Ok(Sealed {
                text: plain.to_string(),
                encrypted: false,
            }),
        }
    }

    /// The plain text of a stored value.
    pub fn open(&self, stored: &str, encrypted: bool, what: &str) -> Result<String, VaultError> {
        if !encrypted {
            return Ok(stored.to_string());
        }
        match &self.keys {
            Some(k) => k.decrypt(stored, what),
            None => Err(VaultError::NoKeyToRead {
                what: what.to_string(),
            }),
        }
    }

    /// Re-encrypts a stored value with the newest key (decrypting with any). A plain value
    /// is encrypted too, so that rotating once after setting a first key leaves nothing in
    /// plain text.
    pub fn rotate(&self, stored: &str, encrypted: bool, what: &str) -> Result<Sealed, VaultError> {
        let plain = self.open(stored, encrypted, what)?;
        self.seal(&plain, true, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_with_the_first_key_and_decrypts_with_any() {
        let (a, b) = (FernetKeys::generate_key(), FernetKeys::generate_key());
        let old = Vault::from_setting(Some(&a)).unwrap();
        let token = old.seal("s3cret", true, "x").unwrap();
        assert!(token.encrypted && !token.text.contains("s3cret"));
        let both = Vault::from_setting(Some(&format!("{b}, {a}"))).unwrap();
        assert_eq!(both.key_count(), 2);
        assert_eq!(both.open(&token.text, true, "x").unwrap(), "s3cret");
        let rotated = both.rotate(&token.text, true, "x").unwrap();
        let new_only = Vault::from_setting(Some(&b)).unwrap();
        assert_eq!(new_only.open(&rotated.text, true, "x").unwrap(), "s3cret");
        let err = new_only
            .open(&token.text, true, "the password")
            .unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { count: 1, .. }));
        assert!(err.to_string().contains("the password"), "{err}");
    }

    fn fixture_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/airflow/fernet.json")
    }

    /// Tokens Airflow 3.3.2 wrote decrypt here, and tokens updraft wrote (kept in the same
    /// fixture) were decrypted by Airflow when `scripts/airflow-fixtures/connections_fernet.py`
    /// made it.
    #[test]
    fn reads_what_airflow_wrote_and_airflow_reads_what_updraft_wrote() {
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture_path()).unwrap()).unwrap();
        let vault = Vault::from_setting(f["fernet_key"].as_str()).unwrap();
        for side in ["from_airflow", "from_updraft"] {
            let cases = f[side].as_array().unwrap();
            assert!(cases.len() >= 4, "{side}");
            for c in cases {
                let plain = vault
                    .open(c["token"].as_str().unwrap(), true, "fixture")
                    .unwrap();
                assert_eq!(plain, c["plain"].as_str().unwrap(), "{side}");
            }
        }
        let newest_only = f["fernet_key"].as_str().unwrap().split(',').next().unwrap();
        let newest = Vault::from_setting(Some(newest_only)).unwrap();
        let last = &f["from_airflow"].as_array().unwrap().last().unwrap()["token"];
        assert!(
            newest.open(last.as_str().unwrap(), true, "x").is_err(),
            "made with the old key"
        );
    }

    /// Rewrites `from_updraft` in the fixture (then rerun the Python script to verify it).
    #[test]
    #[ignore = "rewrites the committed fixture"]
    fn fernet_fixture() {
        let mut f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture_path()).unwrap()).unwrap();
        let vault = Vault::from_setting(f["fernet_key"].as_str()).unwrap();
        let plain = ["updraft-p@ss", "{\"api_token\": \"t\"}", "ünïcødé ✓", ""];
        f["from_updraft"] = plain
            .iter()
            .map(|p| serde_json::json!({"plain": p, "token": vault.seal(p, true, "x").unwrap().text}))
            .collect();
        std::fs::write(
            fixture_path(),
            serde_json::to_string_pretty(&f).unwrap() + "\n",
        )
        .unwrap();
    }

    #[test]
    fn without_a_key_secrets_are_refused_and_plain_values_kept() {
        let v = Vault::from_setting(Some("  ")).unwrap();
        assert!(!v.has_keys());
        let err = v.seal("pw", true, "a password").unwrap_err().to_string();
        assert!(err.contains(KEY_ENV) && err.contains("a password"), "{err}");
        assert_eq!(
            v.seal("eu", false, "x").unwrap(),
            Sealed {
                text: "eu".into(),
                encrypted: false
            }
        );
        assert!(matches!(
            v.open("gAAAA", true, "x"),
            Err(VaultError::NoKeyToRead { .. })
        ));
        let bad = Vault::from_setting(Some("nope")).unwrap_err();
        assert_eq!(
            bad,
            KeyError {
                position: 1,
                count: 1
            }
        );
    }
}
