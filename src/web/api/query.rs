//! Query strings of the REST API, read the way Airflow documents them, with two rules of
//! updraft's own: a parameter an endpoint does not implement is a 400 that names it (never
//! silently ignored, so a client asking for failed runs cannot get all runs), and an empty
//! value (`limit=`, as `airflowctl` sends) counts as absent.
//!
//! Every endpoint declares its parameters once, as [`Params`]; the handler parses with them
//! and the OpenAPI document lists them. Use it like this:
//!
//! ```ignore
//! pub fn params() -> Params {
//!     Params::new().page().order_by(RUN_SORT).list("state").ranges("logical_date", Kind::DateTime)
//! }
//! let q = Query::parse(raw.as_deref(), &params())?;
//! let states = q.list("state");
//! let sort = q.order_by(RUN_SORT, &["id"])?;
//! ```
//!
//! What the readers accept:
//! - `limit`/`offset` ([`Query::page`]): integers ≥ 0; `limit` defaults to 50 and is capped at
//!   100 (Airflow's `fallback_page_limit` and `maximum_page_limit`).
//! - `order_by` ([`Query::order_by`]): repeatable, `-` for descending, at most 10, each one of
//!   the endpoint's fields (else 400 with Airflow's message).
//! - `*_pattern` ([`Query::like`]): case-insensitive substring with `%`/`_` wildcards, `|` for
//!   any of several, `~` for all; `*_prefix_pattern`: case-sensitive prefix, literal.
//! - `<field>_gte/_gt/_lte/_lt` ([`Query::time_range`], [`Query::num_range`]): ISO 8601
//!   datetimes or numbers.
//! - lists ([`Query::list`]): the parameter repeated (`state=failed&state=success`).
//! - malformed values: 422 with FastAPI's `{"detail": [{type, loc, msg, input}]}`.

use chrono::{DateTime, Utc};

use crate::db::api::{Like, Page, Range, Sort, TimeRange};
use crate::web::error::ApiError;

/// Airflow's `[api] maximum_page_limit`.
pub const MAX_LIMIT: i64 = 100;
/// Airflow's `[api] fallback_page_limit`.
pub const DEFAULT_LIMIT: i64 = 50;
/// Airflow's `MAX_SORT_PARAMS`.
const MAX_SORT: usize = 10;

/// A parameter's type, for parsing errors and the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Number,
    Bool,
    DateTime,
    /// Repeatable string.
    StrList,
    /// Repeatable integer.
    IntList,
}

impl Kind {
    /// The JSON schema of the parameter.
    pub fn schema(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            // What the request guard (`web::guard`) lets through: no NUL, 1,024 characters.
            Kind::Str => json!({"type": "string", "pattern": "^[^\\u0000]*$", "maxLength": 1024}),
            Kind::Int => json!({"type": "integer"}),
            Kind::Number => json!({"type": "number"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::DateTime => json!({"type": "string", "format": "date-time"}),
            Kind::StrList => {
                json!({"type": "array", "items": {"type": "string", "pattern": "^[^\\u0000]*$", "maxLength": 1024}})
            }
            Kind::IntList => json!({"type": "array", "items": {"type": "integer"}}),
        }
    }
}

/// The query parameters an endpoint implements.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub names: Vec<(String, Kind)>,
    /// `order_by`'s fields, when the endpoint sorts.
    pub sort_fields: Vec<&'static str>,
}

impl Params {
    pub fn new() -> Self {
        Params::default()
    }

    pub fn p(mut self, name: &str, kind: Kind) -> Self {
        self.names.push((name.to_string(), kind));
        self
    }

    pub fn list(self, name: &str) -> Self {
        self.p(name, Kind::StrList)
    }

    /// `limit` and `offset`.
    pub fn page(self) -> Self {
        self.p("limit", Kind::Int).p("offset", Kind::Int)
    }

    /// `order_by`, with the fields of a sort table.
    pub fn order_by(mut self, fields: &[(&'static str, &str)]) -> Self {
        self.sort_fields = fields.iter().map(|(f, _)| *f).collect();
        self.p("order_by", Kind::StrList)
    }

    /// `<field>_gte`, `_gt`, `_lte`, `_lt`.
    pub fn ranges(mut self, field: &str, kind: Kind) -> Self {
        for suffix in ["gte", "gt", "lte", "lt"] {
            self = self.p(&format!("{field}_{suffix}"), kind);
        }
        self
    }

    /// `<field>_pattern` and `<field>_prefix_pattern`.
    pub fn patterns(self, field: &str) -> Self {
        self.p(&format!("{field}_pattern"), Kind::Str)
            .p(&format!("{field}_prefix_pattern"), Kind::Str)
    }

    fn kind(&self, name: &str) -> Option<Kind> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }
}

/// A parsed query string (empty values dropped).
#[derive(Debug, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn bad(name: &str, kind: &str, msg: &str, input: &str) -> ApiError {
    ApiError::validation(&["query", name], kind, msg, input)
}

impl Query {
    /// Parses `raw`, refusing parameters `params` does not list.
    pub fn parse(raw: Option<&str>, params: &Params) -> Result<Query, ApiError> {
        let all: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        let mut unknown: Vec<&str> = all
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| params.kind(k).is_none())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            let known: Vec<&str> = params.names.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "query parameter{} {} not supported by this endpoint; it takes: {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if known.is_empty() {
                    "no parameters".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        Ok(Query {
            pairs: all.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        })
    }

    /// The value of a parameter given once (the last, if repeated).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| bad(name, "int_parsing", INT_PARSING, v))
            })
            .transpose()
    }

    pub fn ints(&self, name: &str) -> Result<Vec<i64>, ApiError> {
        self.list(name)
            .iter()
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| bad(name, "int_parsing", INT_PARSING, v))
            })
            .collect()
    }

    pub fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.trim().parse::<f64>().map_err(|_| {
                    bad(
                        name,
                        "float_parsing",
                        "Input should be a valid number, unable to parse string as a number",
                        v,
                    )
                })
            })
            .transpose()
    }

    /// pydantic's boolean words.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.str(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
                "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
                _ => Err(bad(
                    name,
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                    v,
                )),
            })
            .transpose()
    }

    pub fn datetime(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.str(name).map(|v| parse_datetime(name, v)).transpose()
    }

    pub fn time_range(&self, field: &str) -> Result<TimeRange, ApiError> {
        Ok(Range {
            gte: self.datetime(&format!("{field}_gte"))?,
            gt: self.datetime(&format!("{field}_gt"))?,
            lte: self.datetime(&format!("{field}_lte"))?,
            lt: self.datetime(&format!("{field}_lt"))?,
        })
    }

    pub fn num_range(&self, field: &str) -> Result<Range<f64>, ApiError> {
        Ok(Range {
            gte: self.number(&format!("{field}_gte"))?,
            gt: self.number(&format!("{field}_gt"))?,
            lte: self.number(&format!("{field}_lte"))?,
            lt: self.number(&format!("{field}_lt"))?,
        })
    }

    /// `limit` (default 50, capped at 100) and `offset` (default 0).
    pub fn page(&self) -> Result<Page, ApiError> {
        let non_negative = |name: &str, v: Option<i64>| -> Result<Option<i64>, ApiError> {
            match v {
                Some(n) if n < 0 => Err(bad(
                    name,
                    "greater_than_equal",
                    "Input should be greater than or equal to 0",
                    &n.to_string(),
                )),
                other => Ok(other),
            }
        };
        Ok(Page {
            limit: non_negative("limit", self.int("limit")?)?
                .unwrap_or(DEFAULT_LIMIT)
                .min(MAX_LIMIT),
            offset: non_negative("offset", self.int("offset")?)?.unwrap_or(0),
        })
    }

    /// `order_by` against the endpoint's fields; `default` when absent.
    pub fn order_by(
        &self,
        fields: &[(&'static str, &str)],
        default: &[&'static str],
    ) -> Result<Vec<Sort>, ApiError> {
        let given = self.list("order_by");
        if given.len() > MAX_SORT {
            return Err(ApiError::bad_request(format!(
                "Ordering with more than {MAX_SORT} parameters is not allowed. Provided: {given:?}"
            )));
        }
        let wanted: Vec<String> = if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given
        };
        wanted
            .iter()
            .map(|w| {
                let (desc, name) = match w.strip_prefix('-') {
                    Some(n) => (true, n),
                    None => (false, w.as_str()),
                };
                let field = fields.iter().map(|(f, _)| *f).find(|f| *f == name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Ordering with '{name}' is disallowed or the attribute does not exist on the model"
                    ))
                })?;
                Ok(Sort { field, desc })
            })
            .collect()
    }

    /// `<field>_pattern` and `<field>_prefix_pattern`, as filters.
    pub fn likes(&self, field: &str) -> Vec<Like> {
        let mut out = Vec::new();
        if let Some(l) = self
            .str(&format!("{field}_pattern"))
            .and_then(Like::substring)
        {
            out.push(l);
        }
        if let Some(l) = self
            .str(&format!("{field}_prefix_pattern"))
            .and_then(Like::prefix)
        {
            out.push(l);
        }
        out
    }
}

/// An ISO 8601 datetime (a `Z` or offset; without one, UTC), or a date.
/// An integer path parameter, refused as FastAPI does (`int_parsing` at `["path", name]`).
pub fn path_int<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::validation(&["path", name], "int_parsing", INT_PARSING, raw))
}

const INT_PARSING: &str = "Input should be a valid integer, unable to parse string as an integer";

pub fn parse_datetime(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    let t = v.trim().replace(' ', "T");
    if let Ok(d) = DateTime::parse_from_rfc3339(&t) {
        return Ok(d.to_utc());
    }
    // `+0000` offsets, as Airflow's Python client writes them.
    if let Ok(d) = DateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Ok(d.to_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(&t, f) {
            return Ok(d.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(bad(
        name,
        "datetime_from_date_parsing",
        "Input should be a valid datetime or date, invalid character in year",
        v,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::new()
            .page()
            .order_by(&[("id", "r.id"), ("state", "r.state")])
            .list("state")
            .ranges("logical_date", Kind::DateTime)
            .patterns("run_id")
    }

    #[test]
    fn unknown_parameters_are_named_and_empty_ones_are_absent() {
        let err = Query::parse(Some("state=failed&colour=red&size=2"), &params()).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(err.detail.contains("`colour`, `size`"), "{}", err.detail);
        let q = Query::parse(Some("limit=&offset=&state=failed&state=success"), &params()).unwrap();
        assert_eq!(
            q.page().unwrap(),
            Page {
                limit: 50,
                offset: 0
            }
        );
        assert_eq!(q.list("state"), ["failed", "success"]);
    }

    #[test]
    fn paging_ordering_and_ranges() {
        let q = Query::parse(
            Some("limit=500&offset=3&order_by=-state&order_by=id&logical_date_gte=2024-01-01"),
            &params(),
        )
        .unwrap();
        assert_eq!(
            q.page().unwrap(),
            Page {
                limit: 100,
                offset: 3
            }
        );
        let sort = q
            .order_by(&[("id", "r.id"), ("state", "r.state")], &["id"])
            .unwrap();
        assert_eq!(
            sort,
            [
                Sort {
                    field: "state",
                    desc: true
                },
                Sort {
                    field: "id",
                    desc: false
                }
            ]
        );
        assert!(q.time_range("logical_date").unwrap().gte.is_some());
        for written in [
            "2000-01-01T00:00:00.000000+0000",
            "2000-01-01T00:00:00Z",
            "2000-01-01 00:00:00+00:00",
        ] {
            assert_eq!(
                parse_datetime("x", written).unwrap().to_rfc3339(),
                "2000-01-01T00:00:00+00:00"
            );
        }
        let q = Query::parse(Some("order_by=colour"), &params()).unwrap();
        let err = q.order_by(&[("id", "r.id")], &["id"]).unwrap_err();
        assert!(err.detail.contains("Ordering with 'colour' is disallowed"));
        let err = Query::parse(Some("limit=x"), &params())
            .unwrap()
            .page()
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        let err = Query::parse(Some("limit=-1"), &params())
            .unwrap()
            .page()
            .unwrap_err();
        assert_eq!(err.errors.unwrap()[0]["type"], "greater_than_equal");
    }
}
