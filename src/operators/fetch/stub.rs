//! A local stand-in for randomuser.me, for tests, the pipeline bench and offline demos.
//!
//! It serves `GET /api/?results=N` with N users built from a sample response (cycling through
//! the sample; copies after the first round get distinct usernames, emails and login uuids),
//! and can be scripted to answer the next requests with faults: 429 with `Retry-After`, 500,
//! an HTML page, randomuser.me's `{"error": ...}` body, or a slow answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One scripted answer, used once, in order, before normal service resumes.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 Too Many Requests with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 500 Internal Server Error.
    ServerError,
    /// This status (e.g. 404, 503) with a short text body.
    Status(u16),
    /// 200 with an HTML page.
    Html,
    /// 200 with `{"error": "..."}`, as randomuser.me does under load.
    ApiError,
    /// 200 with this exact body.
    Body(String),
    /// A normal answer after sleeping this long.
    Slow(Duration),
}

#[derive(Default)]
struct Inner {
    users: Vec<Value>,
    faults: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
}

/// A running stub; the server stops when the runtime that started it shuts down or the handle
/// is dropped.
pub struct RandomUserStub {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl RandomUserStub {
    /// Serves `sample` (a randomuser.me response: `{"results": [...]}`) on 127.0.0.1, port 0.
    pub async fn start(sample: &Value) -> anyhow::Result<RandomUserStub> {
        let users = sample
            .get("results")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the sample has no `results` list"))?;
        let inner = Arc::new(Inner {
            users,
            ..Default::default()
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RandomUserStub { addr, inner, task })
    }

    /// The URL to point `fetch` (or `DATASOURCE_URL`) at.
    pub fn url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// Answers the next requests with these faults, in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut q) = self.inner.faults.lock() {
            q.extend(faults);
        }
    }

    /// How many requests arrived so far.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// The users the stub serves for `results=n`, in order (for comparisons in tests).
    pub fn users(&self, n: usize) -> Vec<Value> {
        (0..n).map(|i| user(&self.inner.users, i)).collect()
    }
}

impl Drop for RandomUserStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `i`-th user: the sample's users in turn, made distinct after the first round.
fn user(users: &[Value], i: usize) -> Value {
    let mut u = users[i % users.len()].clone();
    let round = i / users.len();
    if round > 0 {
        if let Some(login) = u.get_mut("login").and_then(Value::as_object_mut) {
            if let Some(Value::String(name)) = login.get_mut("username") {
                name.push_str(&round.to_string());
            }
            login.insert("uuid".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        if let Some(Value::String(email)) = u.get_mut("email") {
            *email = format!("{round}.{email}");
        }
    }
    u
}

async fn serve(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let fault = inner.faults.lock().ok().and_then(|mut f| f.pop_front());
    match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after_secs.to_string())],
                "slow down",
            )
                .into_response()
        }
        Some(Fault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
            return (status, format!("stub status {code}")).into_response();
        }
        Some(Fault::Html) => {
            return (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Maintenance</body></html>",
            )
                .into_response()
        }
        Some(Fault::ApiError) => {
            return axum::Json(
                json!({"error": "Uh oh, something has gone wrong. Please tell us on GitHub"}),
            )
            .into_response()
        }
        Some(Fault::Body(b)) => {
            return ([(header::CONTENT_TYPE, "application/json")], b).into_response()
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let n = q
        .iter()
        .find(|(k, _)| k == "results")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 5_000);
    let results: Vec<Value> = (0..n).map(|i| user(&inner.users, i)).collect();
    let body = json!({
        "results": results,
        "info": {"seed": "updraft", "results": n, "page": 1, "version": "1.4"}
    });
    axum::Json(body).into_response()
}
