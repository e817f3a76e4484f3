//! Paging, filtering and ordering for the admin lists (variables, connections, pools), as
//! Airflow's list endpoints take them: `*_pattern` (case-insensitive substring, `|` for or,
//! `~` for all), `*_prefix_pattern` (case-sensitive prefix), repeatable `order_by` with `-`
//! for descending over a fixed set of fields, the primary key appended as a tie-breaker in
//! the first field's direction.

/// One page's filter and order. Columns come only from a table's whitelist, so the ORDER BY
/// text (which cannot be bound) holds nothing a caller wrote.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// ILIKE patterns, any of which may match (`%term%` each); empty: no filter.
    pub patterns: Vec<String>,
    /// A case-sensitive prefix.
    pub prefix: Option<String>,
    order: Vec<(&'static str, bool)>,
    pub limit: i64,
    pub offset: i64,
}

/// Why an `order_by` was refused (Airflow answers 400 with these texts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error("Ordering with more than 10 parameters is not allowed. Provided: {0:?}")]
    TooMany(Vec<String>),
    #[error("Ordering with '{0}' is disallowed or the attribute does not exist on the model")]
    Unknown(String),
}

impl ListQuery {
    /// `pattern` as Airflow reads `*_pattern`: `a|b` matches either, `~` (or nothing) all.
    pub fn new(pattern: Option<&str>, prefix: Option<&str>, limit: i64, offset: i64) -> ListQuery {
        let patterns = match pattern.map(str::trim) {
            None | Some("") | Some("~") => Vec::new(),
            Some(p) => p
                .split('|')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| format!("%{t}%"))
                .collect(),
        };
        ListQuery {
            patterns,
            prefix: prefix.filter(|p| !p.is_empty()).map(|p| {
                p.trim_end_matches(|c: char| !c.is_alphanumeric())
                    .to_string()
            }),
            order: Vec::new(),
            limit,
            offset,
        }
    }

    /// Applies `order_by` values (`field` or `-field`) against `allowed` (name → column).
    pub fn order_by(
        mut self,
        values: &[String],
        allowed: &[(&str, &'static str)],
    ) -> Result<ListQuery, OrderError> {
        if values.len() > 10 {
            return Err(OrderError::TooMany(values.to_vec()));
        }
        for v in values.iter().filter(|v| !v.is_empty()) {
            let (name, desc) = match v.strip_prefix('-') {
                Some(n) => (n, true),
                None => (v.as_str(), false),
            };
            let column = allowed
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
                .ok_or_else(|| OrderError::Unknown(name.to_string()))?;
            self.order.push((column, desc));
        }
        Ok(self)
    }

    /// `ORDER BY ...` with `pk` last, in the first field's direction.
    pub fn order_sql(&self, default: &'static str, pk: &'static str) -> String {
        let mut terms: Vec<(&str, bool)> = if self.order.is_empty() {
            vec![(default, false)]
        } else {
            self.order.clone()
        };
        let first_desc = terms[0].1;
        if !terms.iter().any(|(c, _)| *c == pk) {
            terms.push((pk, first_desc));
        }
        let list: Vec<String> = terms
            .iter()
            .map(|(c, d)| format!("{c} {}", if *d { "DESC" } else { "ASC" }))
            .collect();
        format!("ORDER BY {}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_order() {
        let q = ListQuery::new(Some("a|b"), Some("pre_"), 10, 0);
        assert_eq!(q.patterns, vec!["%a%", "%b%"]);
        assert_eq!(q.prefix.as_deref(), Some("pre"));
        assert!(ListQuery::new(Some("~"), None, 1, 0).patterns.is_empty());
        let allowed = [("key", "key"), ("id", "id")];
        let q = q.order_by(&["-key".into()], &allowed).unwrap();
        assert_eq!(q.order_sql("id", "id"), "ORDER BY key DESC, id DESC");
        let err = ListQuery::new(None, None, 1, 0)
            .order_by(&["val".into()], &allowed)
            .unwrap_err();
        assert!(err.to_string().contains("'val' is disallowed"));
    }
}

/// Why reading or writing an admin table failed: the database, or a secret that cannot be
/// sealed or opened (no key, wrong key).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Vault(#[from] crate::core::fernet::VaultError),
    #[error("{0}")]
    Invalid(String),
}
