//! Replay from the topic page: a sink task's consumer group moved to the beginning, an
//! offset or a time, optionally on one partition. The first post answers a confirmation page
//! that lists each partition's committed offset now and the offset it will move to (a dry
//! run against the brokers); only its "confirm" post moves the group, and writes the audit
//! log. Viewers see no form, and `require_auth` refuses their posts anyway.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::streams::topic_href;
use super::{fmt_time, render, Chrome};
use crate::operators::sink::replay::{self, PartitionReset, ReplayTo, SinkGroup};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::AppState;

/// How long the brokers get per request of a replay.
const KAFKA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The replay form (and, with `confirm`, the confirmation page's).
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ReplayForm {
    /// `beginning`, `offset` or `timestamp`.
    to: String,
    offset: String,
    /// RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC (what a `datetime-local` input sends).
    timestamp: String,
    /// One partition, or empty for all.
    partition: String,
    confirm: Option<String>,
}

/// Reads the form into where to move the group and which partitions.
pub fn parse_form(f: &ReplayForm) -> Result<(ReplayTo, Option<Vec<i32>>), String> {
    let to = match f.to.as_str() {
        "beginning" => ReplayTo::Beginning,
        "offset" => match f.offset.trim().parse::<i64>() {
            Ok(o) if o >= 0 => ReplayTo::Offset(o),
            _ => {
                return Err(format!(
                    "the offset must be a whole number ≥ 0, not `{}`",
                    f.offset.trim()
                ))
            }
        },
        "timestamp" => ReplayTo::Timestamp(parse_time(f.timestamp.trim()).ok_or_else(|| {
            format!(
                "the time must look like 2026-12-03T18:00 (UTC) or carry its offset, not `{}`",
                f.timestamp.trim()
            )
        })?),
        other => {
            return Err(format!(
                "replay to `beginning`, `offset` or `timestamp`, not `{other}`"
            ))
        }
    };
    let partitions = match f.partition.trim() {
        "" => None,
        p => match p.parse::<i32>() {
            Ok(p) if p >= 0 => Some(vec![p]),
            _ => {
                return Err(format!(
                    "the partition must be a whole number ≥ 0, not `{p}`"
                ))
            }
        },
    };
    Ok((to, partitions))
}

fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.to_utc());
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
    .map(|t| t.and_utc())
}

/// Where the group goes, in words.
fn describe(to: ReplayTo, partitions: &Option<Vec<i32>>) -> String {
    let to = match to {
        ReplayTo::Beginning => "to the beginning".to_string(),
        ReplayTo::Offset(o) => format!("to offset {o}"),
        ReplayTo::Timestamp(t) => format!("to {}", fmt_time(Some(t))),
    };
    match partitions {
        Some(ps) => format!("{to} on partition {}", ps[0]),
        None => format!("{to} on every partition"),
    }
}

/// A partition's move, for the pages.
pub struct Move {
    pub partition: i32,
    pub previous: String,
    pub offset: i64,
}

fn moves(resets: &[PartitionReset]) -> Vec<Move> {
    resets
        .iter()
        .map(|r| Move {
            partition: r.partition,
            previous: r
                .previous
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into()),
            offset: r.offset,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "streams/replay.html")]
pub struct ReplayPage {
    pub chrome: Chrome,
    pub dag_id: String,
    pub task_id: String,
    pub target: SinkGroup,
    pub topic_href: String,
    /// Where the group goes, in words.
    pub what: String,
    /// Awaiting confirmation (else: done, or failed).
    pub confirming: bool,
    pub moves: Vec<Move>,
    /// Why the replay was refused or failed.
    pub error: Option<String>,
    /// The DAG runs continuously and is not paused: its sink is (or will soon be) a live
    /// member of the group.
    pub live_stream: bool,
    pub form: ReplayFormEcho,
}

/// The form's fields, echoed by the confirmation page's hidden inputs.
pub struct ReplayFormEcho {
    pub to: String,
    pub offset: String,
    pub timestamp: String,
    pub partition: String,
}

/// `POST /dags/{dag_id}/tasks/{task_id}/replay`: the confirmation page, or (confirmed) the
/// replay and its result.
pub async fn replay(
    State(st): State<AppState>,
    user: CurrentUser,
    Path((dag_id, task_id)): Path<(String, String)>,
    Form(f): Form<ReplayForm>,
) -> Result<Response, WebError> {
    let dag = crate::db::dags::current_spec(&st.pool, &dag_id)
        .await?
        .ok_or_else(|| WebError::NotFound(format!("DAG `{dag_id}` not found.")))?;
    let target = crate::dag::streams::sink_group(&dag, &task_id, &st.settings.operator_env)
        .map_err(WebError::BadRequest)?;
    let (to, partitions) = parse_form(&f).map_err(WebError::BadRequest)?;
    let live_stream = dag.schedule == crate::core::Schedule::Continuous
        && crate::db::dags::is_paused(&st.pool, &dag_id).await? == Some(false);
    let confirmed = f.confirm.as_deref() == Some("yes");
    let what = describe(to, &partitions);
    let outcome = if confirmed {
        replay::replay(&target, to, partitions, KAFKA_TIMEOUT).await
    } else {
        replay::plan(&target, to, partitions, KAFKA_TIMEOUT).await
    };
    if confirmed {
        if let Ok(resets) = &outcome {
            let extra = json!({"group": target.group, "topic": target.topic, "to": what, "partitions": resets});
            let at = (Some(dag_id.as_str()), None, Some(task_id.as_str()));
            crate::web::api::events::record(&st, &user, "ui", "replay", at, extra).await;
        }
    }
    let (moves, error) = match outcome {
        Ok(r) => (moves(&r), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let refused = error.is_some();
    let page = ReplayPage {
        chrome: user.chrome(),
        topic_href: topic_href(&target.topic, Some(&target.servers)),
        dag_id,
        task_id,
        target,
        what,
        confirming: !confirmed,
        moves,
        error,
        live_stream,
        form: ReplayFormEcho {
            to: f.to,
            offset: f.offset,
            timestamp: f.timestamp,
            partition: f.partition,
        },
    };
    let res = render(&page)?;
    Ok(if refused {
        (StatusCode::CONFLICT, res).into_response()
    } else {
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(to: &str, offset: &str, timestamp: &str, partition: &str) -> ReplayForm {
        ReplayForm {
            to: to.into(),
            offset: offset.into(),
            timestamp: timestamp.into(),
            partition: partition.into(),
            confirm: None,
        }
    }

    #[test]
    fn the_form_reads_into_a_replay() {
        assert_eq!(
            parse_form(&form("beginning", "", "", "")),
            Ok((ReplayTo::Beginning, None))
        );
        assert_eq!(
            parse_form(&form("offset", " 42 ", "", "1")),
            Ok((ReplayTo::Offset(42), Some(vec![1])))
        );
        let t = DateTime::parse_from_rfc3339("2026-12-03T18:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            parse_form(&form("timestamp", "", "2026-12-03T18:00", "")),
            Ok((ReplayTo::Timestamp(t), None))
        );
        assert_eq!(
            parse_form(&form("timestamp", "", "2026-12-03T19:00:00+01:00", "")),
            Ok((ReplayTo::Timestamp(t), None))
        );
        for bad in [
            form("offset", "-1", "", ""),
            form("offset", "", "", ""),
            form("timestamp", "", "yesterday", ""),
            form("beginning", "", "", "x"),
            form("end", "", "", ""),
        ] {
            assert!(parse_form(&bad).is_err());
        }
        assert_eq!(
            describe(ReplayTo::Offset(3), &Some(vec![2])),
            "to offset 3 on partition 2"
        );
    }
}
