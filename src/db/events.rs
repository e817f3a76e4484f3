//! The audit log (`event_log`): who changed what, when and from where. Written by the web
//! layer and the CLI after each change; read by `GET /api/v2/eventLogs` and the UI.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::api::{push_page, Page};

/// One change to record.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    pub event: &'a str,
    pub owner: Option<&'a str>,
    pub dag_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    /// `api`, `ui` or `cli`.
    pub source: &'a str,
    pub remote_addr: Option<String>,
    pub extra: serde_json::Value,
}

pub async fn record(pool: &PgPool, e: &Event<'_>) -> sqlx::Result<()> {
    let extra = if e.extra.is_null() {
        serde_json::json!({})
    } else {
        e.extra.clone()
    };
    sqlx::query(
        "INSERT INTO event_log (event, owner, dag_id, run_id, task_id, source, remote_addr, extra)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.event)
    .bind(e.owner)
    .bind(e.dag_id)
    .bind(e.run_id)
    .bind(e.task_id)
    .bind(e.source)
    .bind(&e.remote_addr)
    .bind(&extra)
    .execute(pool)
    .await?;
    Ok(())
}

/// A recorded change.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub event: String,
    pub owner: Option<String>,
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub source: String,
    pub remote_addr: Option<String>,
    pub extra: serde_json::Value,
}

/// Filters of the audit log (all optional), newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub dag_id: Option<String>,
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub owner: Option<String>,
    pub events: Vec<String>,
    pub excluded_events: Vec<String>,
    pub before: Option<DateTime<Utc>>,
    pub after: Option<DateTime<Utc>>,
    /// Oldest first instead.
    pub ascending: bool,
    pub page: Page,
}

fn push_where(b: &mut QueryBuilder<'_, Postgres>, q: &EventQuery) {
    b.push(" WHERE true");
    for (col, v) in [
        ("dag_id", &q.dag_id),
        ("run_id", &q.run_id),
        ("task_id", &q.task_id),
        ("owner", &q.owner),
    ] {
        if let Some(v) = v {
            b.push(" AND ").push(col).push(" = ").push_bind(v.clone());
        }
    }
    if !q.events.is_empty() {
        b.push(" AND event = ANY(")
            .push_bind(q.events.clone())
            .push(")");
    }
    if !q.excluded_events.is_empty() {
        b.push(" AND NOT (event = ANY(")
            .push_bind(q.excluded_events.clone())
            .push("))");
    }
    if let Some(t) = q.before {
        b.push(" AND at < ").push_bind(t);
    }
    if let Some(t) = q.after {
        b.push(" AND at > ").push_bind(t);
    }
}

/// One page of the log and how many entries match.
pub async fn list(pool: &PgPool, q: &EventQuery) -> sqlx::Result<(Vec<EventRow>, i64)> {
    let mut count = QueryBuilder::new("SELECT count(*) FROM event_log");
    push_where(&mut count, q);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut b = QueryBuilder::new(
        "SELECT id, at, event, owner, dag_id, run_id, task_id, source, remote_addr, extra FROM event_log",
    );
    push_where(&mut b, q);
    b.push(if q.ascending {
        " ORDER BY id"
    } else {
        " ORDER BY id DESC"
    });
    push_page(&mut b, q.page);
    Ok((b.build_query_as::<EventRow>().fetch_all(pool).await?, total))
}

/// One entry.
pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(
        "SELECT id, at, event, owner, dag_id, run_id, task_id, source, remote_addr, extra
         FROM event_log WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}
