//! Reads for the REST API's list endpoints, with Airflow's filters, ordering and paging.
//!
//! The web layer parses a query string into the typed filters here ([`Like`], [`Range`],
//! [`Sort`], [`Page`]) and the functions in the submodules turn them into SQL with
//! `sqlx::QueryBuilder`: every value is a bound parameter, and a condition is only added
//! when its filter is set. Sort keys are API field names checked by the web layer against the
//! endpoint's list; each query maps them to a column from its own fixed table, so no text
//! from a request ever becomes SQL.
//!
//! - [`dags`]: DAGs, tags, stats, versions, source.
//! - [`runs`]: DAG runs.
//! - [`task_instances`]: task instances (with their task's pool, queue and operator from
//!   the run's DAG version), tries, XComs.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

pub mod dags;
pub mod runs;
pub mod task_instances;

/// A `*_pattern` or `*_prefix_pattern` filter: the column matches any of the patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Like {
    patterns: Vec<String>,
    /// `ILIKE` (substring search) or `LIKE` (prefix search, case-sensitive).
    case_insensitive: bool,
}

/// Escapes `%`, `_` and `\` so text matches literally inside (I)LIKE … ESCAPE '\'.
fn literal(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

impl Like {
    /// Airflow's `*_pattern`: case-insensitive substring; `%` and `_` in the term are SQL
    /// wildcards (Airflow documents them so), a backslash is literal; `|` separates terms
    /// any of which may match; `~` matches everything (`None`).
    pub fn substring(term: &str) -> Option<Like> {
        if term == "~" {
            return None;
        }
        let terms: Vec<&str> = if term.contains('|') {
            term.split('|')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        } else {
            vec![term]
        };
        Some(Like {
            patterns: terms
                .iter()
                .map(|t| format!("%{}%", t.replace('\\', "\\\\")))
                .collect(),
            case_insensitive: true,
        })
    }

    /// Airflow's `*_prefix_pattern`: case-sensitive prefix, wildcards literal, `|` for any of
    /// several prefixes, `~` for everything; trailing non-alphanumerics of a term are
    /// dropped, as Airflow does.
    pub fn prefix(term: &str) -> Option<Like> {
        if term == "~" {
            return None;
        }
        let patterns: Vec<String> = term
            .split('|')
            .map(|t| t.trim().trim_end_matches(|c: char| !c.is_alphanumeric()))
            .map(|t| format!("{}%", literal(t)))
            .collect();
        Some(Like {
            patterns,
            case_insensitive: false,
        })
    }

    /// `column (I)LIKE ANY($n) ESCAPE '\'`.
    pub(crate) fn push(&self, b: &mut QueryBuilder<'_, Postgres>, column: &str) {
        let op = if self.case_insensitive {
            "ILIKE"
        } else {
            "LIKE"
        };
        b.push(" AND EXISTS (SELECT 1 FROM unnest(")
            .push_bind(self.patterns.clone())
            .push(format!(
                "::text[]) AS p(x) WHERE {column} {op} p.x ESCAPE '\\')"
            ));
    }
}

/// `<field>_gte`, `_gt`, `_lte`, `_lt`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Range<T> {
    pub gte: Option<T>,
    pub gt: Option<T>,
    pub lte: Option<T>,
    pub lt: Option<T>,
}

pub type TimeRange = Range<DateTime<Utc>>;

impl<T> Range<T>
where
    T: Clone + Send + for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + 'static,
{
    pub fn is_set(&self) -> bool {
        self.gte.is_some() || self.gt.is_some() || self.lte.is_some() || self.lt.is_some()
    }

    pub(crate) fn push(&self, b: &mut QueryBuilder<'_, Postgres>, column: &str) {
        for (op, v) in [
            (">=", &self.gte),
            (">", &self.gt),
            ("<=", &self.lte),
            ("<", &self.lt),
        ] {
            if let Some(v) = v {
                b.push(format!(" AND {column} {op} ")).push_bind(v.clone());
            }
        }
    }
}

/// One `order_by` entry: an API field name and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub field: &'static str,
    pub desc: bool,
}

/// `limit` and `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 50,
            offset: 0,
        }
    }
}

/// `ORDER BY` from `sort`, each field mapped through `columns` (fields missing there are
/// skipped; the web layer only lets known ones through), then `tiebreak` in the direction
/// of the first entry, as Airflow appends the primary key.
pub(crate) fn push_order(
    b: &mut QueryBuilder<'_, Postgres>,
    sort: &[Sort],
    columns: &[(&str, &str)],
    tiebreak: &str,
) {
    let mut parts: Vec<String> = Vec::new();
    for s in sort {
        if let Some((_, col)) = columns.iter().find(|(f, _)| *f == s.field) {
            let dir = if s.desc {
                "DESC NULLS LAST"
            } else {
                "ASC NULLS FIRST"
            };
            parts.push(format!("{col} {dir}"));
        }
    }
    let first_desc = sort.first().is_some_and(|s| s.desc);
    parts.push(format!(
        "{tiebreak} {}",
        if first_desc { "DESC" } else { "ASC" }
    ));
    b.push(" ORDER BY ").push(parts.join(", "));
}

pub(crate) fn push_page(b: &mut QueryBuilder<'_, Postgres>, page: Page) {
    b.push(" LIMIT ")
        .push_bind(page.limit)
        .push(" OFFSET ")
        .push_bind(page.offset);
}

/// `column = ANY($n)` for a non-empty list.
pub(crate) fn push_any(b: &mut QueryBuilder<'_, Postgres>, column: &str, values: &[String]) {
    if !values.is_empty() {
        b.push(format!(" AND {column} = ANY("))
            .push_bind(values.to_vec())
            .push("::text[])");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_as_airflow_reads_them() {
        assert_eq!(Like::substring("~"), None);
        assert_eq!(Like::substring("a%b").unwrap().patterns, ["%a%b%"]);
        assert_eq!(Like::substring("x|y").unwrap().patterns, ["%x%", "%y%"]);
        assert_eq!(Like::substring("a\\b").unwrap().patterns, ["%a\\\\b%"]);
        assert_eq!(Like::prefix("test_").unwrap().patterns, ["test%"]);
        assert_eq!(Like::prefix("a_b").unwrap().patterns, ["a\\_b%"]);
    }
}
