//! Task log lines and secret masking. A line is masked before it leaves the process that
//! produced it, so no secret reaches the database, a page or an API answer.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum LogStream {
    /// updraft's own messages about the task (start, retries, outcome).
    System,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::System => "system",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of a try's log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub stream: LogStream,
    pub text: String,
}

impl LogLine {
    /// A line of updraft's own, stamped now.
    pub fn system(text: impl Into<String>) -> LogLine {
        LogLine {
            at: Utc::now(),
            stream: LogStream::System,
            text: text.into(),
        }
    }
}

/// The text that replaces a secret.
pub const MASK: &str = "***";

/// Secrets shorter than this are not masked, as in Airflow (`min_length_masked_secret`):
/// masking `abc` everywhere would mangle logs and data more than it protects.
pub const MIN_MASKED_LEN: usize = 5;

/// Strings that must never be shown. Longer secrets are replaced first, so a secret that
/// contains another is masked whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut s = Secrets::default();
        s.extend(values);
        s
    }

    /// Adds secrets; ones shorter than [`MIN_MASKED_LEN`] characters are ignored.
    pub fn extend(&mut self, values: impl IntoIterator<Item = String>) {
        self.values.extend(
            values
                .into_iter()
                .filter(|v| v.chars().count() >= MIN_MASKED_LEN),
        );
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.values.dedup();
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.values {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }
}

/// The password part of `scheme://user:password@host...`, if any.
pub fn password_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let userinfo = rest.split('@').next().filter(|_| rest.contains('@'))?;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// `%XX` escapes decoded, as a URL's password is before it is used; `None` when the result
/// is not UTF-8.
pub fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Replaces the password in a connection URI with `***`, for logs and pages.
pub fn mask_uri(uri: &str) -> String {
    match password_of(uri) {
        Some(pw) => uri.replacen(&format!(":{pw}@"), ":***@", 1),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_uris_and_secrets() {
        assert_eq!(
            mask_uri("postgres://u:s3cret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(mask_uri("postgres://db/x"), "postgres://db/x");
        assert_eq!(password_of("kafka://b:9092"), None);
        let s = Secrets::new([
            "abcde".to_string(),
            "abcdefgh".to_string(),
            "abc".to_string(),
            String::new(),
        ]);
        assert_eq!(
            s.mask("x abcdefgh y abcde z abc"),
            "x *** y *** z abc",
            "longer first; under five characters is not masked, as in Airflow"
        );
        assert!(matches!(s.mask("nothing"), Cow::Borrowed(_)));
        assert!(!Secrets::new([String::new()]).mask("").contains('*'));
        assert_eq!(
            percent_decoded("p%40ss%3Aw0rd").as_deref(),
            Some("p@ss:w0rd")
        );
        assert_eq!(percent_decoded("100%").as_deref(), Some("100%"));
    }
}
