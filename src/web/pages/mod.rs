//! HTML pages. Each page is a struct next to its handler; display logic lives in methods on
//! it or on small row views, not in templates.

use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};

use super::AppState;

pub mod audit;
pub mod backfills;
pub mod connections;
pub mod dag_detail;
pub mod dags;
pub mod import_errors;
pub mod logs;
pub mod operate;
pub mod pools;
pub mod replay;
pub mod runs;
pub mod streams;
pub mod trigger;
pub mod variables;

use axum::response::Response;

use super::error::WebError;
pub use super::page::Chrome;

/// A page as an HTML response.
pub fn render(page: &impl askama::Template) -> Result<Response, WebError> {
    Ok(super::page::render(page)?)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/dags") }))
        .route("/dags", get(dags::list))
        .route("/dags/{dag_id}", get(dag_detail::show))
        .route("/dags/{dag_id}/pause", post(dags::pause))
        .route(
            "/dags/{dag_id}/trigger",
            get(trigger::form).post(trigger::submit),
        )
        .route("/dags/{dag_id}/runs/{run_id}", get(runs::show))
        .route(
            "/dags/{dag_id}/runs/{run_id}/action",
            post(operate::run_action),
        )
        .route("/dags/{dag_id}/runs/{run_id}/note", post(operate::note))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/action",
            post(operate::task_action),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/{try_number}",
            get(logs::show),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/{try_number}/stream",
            get(logs::stream),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs/{try_number}/download",
            get(logs::download),
        )
        .route("/import-errors", get(import_errors::list))
        .route("/streams", get(streams::list))
        .route("/streams/topics/{topic}", get(streams::topic))
        .route(
            "/dags/{dag_id}/tasks/{task_id}/replay",
            post(replay::replay),
        )
        .route("/audit-log", get(audit::list))
        .route(
            "/dags/{dag_id}/backfills",
            get(backfills::show).post(backfills::create),
        )
        .route(
            "/dags/{dag_id}/backfills/{id}/{what}",
            post(backfills::steer),
        )
        .merge(variables::routes())
        .merge(connections::routes())
        .merge(pools::routes())
}

/// `2026-11-21 17:09:43 UTC`, or an em dash. Pages show UTC; `app.js` rewrites these into
/// the browser's zone when the user switches to local time.
pub fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// `1h 02m`, `3m 04s`, `5.2s`, or an em dash when not started.
pub fn fmt_duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    let (Some(s), Some(e)) = (start, end) else {
        return "—".into();
    };
    let ms = (e - s).num_milliseconds().max(0);
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Percent-encodes one path segment (run ids contain `:` and `+`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Page numbers for a list: 1-based current page, page count.
#[derive(Debug, Clone)]
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
}

impl Pager {
    pub fn new(page: i64, per_page: i64, total: i64) -> Self {
        Pager {
            page,
            pages: ((total + per_page - 1) / per_page).max(1),
            total,
        }
    }
    pub fn has_prev(&self) -> bool {
        self.page > 1
    }
    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        let s = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            fmt_duration(Some(s), Some(s + chrono::Duration::milliseconds(5200))),
            "5.2s"
        );
        assert_eq!(
            fmt_duration(Some(s), Some(s + chrono::Duration::seconds(184))),
            "3m 04s"
        );
        assert_eq!(
            fmt_duration(Some(s), Some(s + chrono::Duration::seconds(3720))),
            "1h 02m"
        );
        assert_eq!(fmt_duration(Some(s), None), "—");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(
            seg("manual__2026-01-01T00:00:00+00:00"),
            "manual__2026-01-01T00%3A00%3A00%2B00%3A00"
        );
    }

    #[test]
    fn pager_counts_pages() {
        let p = Pager::new(1, 50, 101);
        assert_eq!(p.pages, 3);
        assert!(!p.has_prev() && p.has_next());
        assert_eq!(Pager::new(1, 50, 0).pages, 1);
    }
}
