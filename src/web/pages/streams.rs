//! The topic monitor, Confluent Control Center's part for updraft's DAGs: `/streams` lists
//! every topic the DAGs publish to or consume from with its brokers, tasks, partition
//! offsets and consumer-group lag; `/streams/topics/{topic}` adds the messages/s chart, the
//! latest messages of a partition (paged by offset) and, for editors, replay per sink group
//! (see [`super::replay`]). A broker that does not answer is shown as that topic's error.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::{fmt_time, render, seg, Chrome};
use crate::dag::streams::TopicUse;
use crate::operators::kafka::browse::{self, Page, PageRequest, Record};
use crate::operators::kafka::monitor::{GroupPartition, TopicOffsets};
use crate::web::auth::CurrentUser;
use crate::web::error::WebError;
use crate::web::streams::chart::{self, Chart};
use crate::web::streams::{self as monitor, rates, Lookup, TopicKey, TopicView};
use crate::web::AppState;

/// How long the brokers get per request of a page.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages per page of the browser.
pub const MESSAGES_PER_PAGE: usize = 20;

/// The topic page's address; `servers` only when the name alone is ambiguous.
pub fn topic_href(topic: &str, servers: Option<&str>) -> String {
    match servers {
        Some(s) => format!("/streams/topics/{}?servers={}", seg(topic), seg(s)),
        None => format!("/streams/topics/{}", seg(topic)),
    }
}

fn dag_href(dag_id: &str) -> String {
    format!("/dags/{}", seg(dag_id))
}

/// One topic as the pages show it.
pub struct TopicBox {
    pub view: TopicView,
    pub href: String,
}

impl TopicBox {
    fn new(view: TopicView, ambiguous: bool) -> TopicBox {
        let servers = ambiguous.then_some(view.key.servers.as_str());
        let href = topic_href(&view.key.topic, servers);
        TopicBox { view, href }
    }
    pub fn offsets(&self) -> Option<&TopicOffsets> {
        self.view.offsets.as_ref().ok()
    }
    pub fn error(&self) -> Option<&str> {
        self.view.offsets.as_ref().err().map(String::as_str)
    }
    pub fn end_total(&self) -> i64 {
        self.offsets()
            .map(|o| o.partitions.iter().map(|p| p.end).sum())
            .unwrap_or(0)
    }
    pub fn dag_href(&self, u: &TopicUse) -> String {
        dag_href(&u.dag_id)
    }
    pub fn role(&self, u: &TopicUse) -> &'static str {
        match u.role {
            crate::dag::streams::Role::Publishes => "publishes",
            crate::dag::streams::Role::Consumes => "consumes",
        }
    }
    pub fn group_lag(&self, parts: &[GroupPartition]) -> i64 {
        parts.iter().map(|p| p.lag).sum()
    }
    pub fn committed(&self, p: &GroupPartition) -> String {
        p.committed
            .map(|c| c.to_string())
            .unwrap_or_else(|| "—".into())
    }
}

#[derive(Template)]
#[template(path = "streams/list.html")]
pub struct StreamsPage {
    pub chrome: Chrome,
    pub topics: Vec<TopicBox>,
}

/// `GET /streams`: every topic the DAGs use.
pub async fn list(State(st): State<AppState>, user: CurrentUser) -> Result<Response, WebError> {
    let views = monitor::topic_views(&st.pool, &st.settings.operator_env, KAFKA_TIMEOUT).await?;
    let keys: Vec<TopicKey> = views.iter().map(|v| v.key.clone()).collect();
    let topics = views
        .into_iter()
        .map(|v| {
            let ambiguous = monitor::is_ambiguous(&keys, &v.key.topic);
            TopicBox::new(v, ambiguous)
        })
        .collect();
    render(&StreamsPage {
        chrome: user.chrome(),
        topics,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TopicQuery {
    servers: Option<String>,
    partition: Option<String>,
    before: Option<String>,
}

fn parse_num<T: std::str::FromStr>(name: &str, v: Option<&str>) -> Result<Option<T>, WebError> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            WebError::BadRequest(format!("`{name}` must be a whole number ≥ 0, not `{v}`"))
        }),
    }
}

/// A sink group's replay form on the topic page.
pub struct ReplayTarget {
    pub group: String,
    pub dag_id: String,
    pub task_id: String,
    pub action: String,
}

#[derive(Template)]
#[template(path = "streams/topic.html")]
pub struct TopicPage {
    pub chrome: Chrome,
    /// The topic (named as `streams/_topic.html`, which the list page shares, expects).
    pub t: TopicBox,
    pub chart: Chart,
    /// Samples so far and the interval between them, for the chart's caption.
    pub samples: usize,
    pub interval_secs: u64,
    pub window_minutes: u64,
    pub partition: i32,
    pub partitions: Vec<i32>,
    /// The page of messages, or why it could not be read; `None` when the topic has none.
    pub messages: Option<Result<Page, String>>,
    pub replays: Vec<ReplayTarget>,
}

impl TopicPage {
    /// The topic page's address with `partition` and `before` set.
    fn at(&self, partition: i32, before: Option<i64>) -> String {
        let sep = if self.t.href.contains('?') { '&' } else { '?' };
        let mut href = format!("{}{sep}partition={partition}", self.t.href);
        if let Some(b) = before {
            href.push_str(&format!("&before={b}"));
        }
        href.push_str("#messages");
        href
    }
    pub fn is_current(&self, p: &i32) -> bool {
        *p == self.partition
    }
    pub fn partition_href(&self, p: &i32) -> String {
        self.at(*p, None)
    }
    pub fn older_href(&self, page: &Page) -> Option<String> {
        page.older().map(|b| self.at(page.partition, Some(b)))
    }
    /// The next newer page: the one ending `MESSAGES_PER_PAGE` later, or the latest.
    pub fn newer_href(&self, page: &Page) -> Option<String> {
        page.has_newer().then(|| {
            let b = page.before + MESSAGES_PER_PAGE as i64;
            self.at(page.partition, (b < page.end).then_some(b))
        })
    }
    pub fn time(&self, r: &Record) -> String {
        fmt_time(r.timestamp)
    }
}

#[derive(Template)]
#[template(path = "streams/choose.html")]
pub struct ChoosePage {
    pub chrome: Chrome,
    pub topic: String,
    /// (brokers, link)
    pub choices: Vec<(String, String)>,
}

/// `GET /streams/topics/{topic}`: one topic in detail.
pub async fn topic(
    State(st): State<AppState>,
    user: CurrentUser,
    Path(topic): Path<String>,
    Query(q): Query<TopicQuery>,
) -> Result<Response, WebError> {
    let partition: Option<i32> = parse_num("partition", q.partition.as_deref())?;
    let before: Option<i64> = parse_num("before", q.before.as_deref())?;
    let servers = q.servers.as_deref().filter(|s| !s.is_empty());
    let known = monitor::known_topics(&st.pool, &st.settings.operator_env).await?;
    let (key, uses) = match monitor::find(known, &topic, servers) {
        Lookup::Found(k, uses) => (k, uses),
        Lookup::Ambiguous(all) => {
            return render(&ChoosePage {
                chrome: user.chrome(),
                choices: all
                    .into_iter()
                    .map(|s| {
                        let href = topic_href(&topic, Some(&s));
                        (s, href)
                    })
                    .collect(),
                topic,
            })
        }
        Lookup::Unknown => {
            return Err(WebError::NotFound(format!(
                "No active DAG publishes to or consumes from topic `{topic}`{}.",
                servers.map(|s| format!(" on {s}")).unwrap_or_default()
            )))
        }
    };
    let samples = st.rates.samples(&key);
    let chart = chart::draw(
        &rates::rates_of(&samples),
        Utc::now(),
        rates::WINDOW.as_secs() as i64,
    );
    let view = monitor::view(key, uses, KAFKA_TIMEOUT).await;
    let partitions: Vec<i32> = view
        .offsets
        .as_ref()
        .map(|o| o.partitions.iter().map(|p| p.partition).collect())
        .unwrap_or_default();
    let partition = partition
        .or_else(|| partitions.first().copied())
        .unwrap_or(0);
    let messages = if partitions.is_empty() {
        None
    } else {
        let page = browse::page(PageRequest {
            servers: view.key.servers.clone(),
            topic: view.key.topic.clone(),
            partition,
            before,
            limit: MESSAGES_PER_PAGE,
            timeout: KAFKA_TIMEOUT,
        })
        .await;
        Some(page.map_err(|e| e.to_string()))
    };
    let replays = view
        .sink_groups()
        .into_iter()
        .map(|(g, u)| ReplayTarget {
            group: g.to_string(),
            dag_id: u.dag_id.clone(),
            task_id: u.task_id.clone(),
            action: format!("/dags/{}/tasks/{}/replay", seg(&u.dag_id), seg(&u.task_id)),
        })
        .collect();
    render(&TopicPage {
        chrome: user.chrome(),
        t: TopicBox::new(view, servers.is_some()),
        chart,
        samples: samples.len(),
        interval_secs: rates::INTERVAL.as_secs(),
        window_minutes: rates::WINDOW.as_secs() / 60,
        partition,
        partitions,
        messages,
        replays,
    })
}
