use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;

use super::config::{Config, OnInvalid};
use super::mapping::{kind, lookup, Mapping};
use crate::core::log::mask_uri;
use crate::operators::{Outcome, TaskContext};

/// Why one request attempt failed, and whether another attempt may help.
#[derive(Debug)]
struct AttemptError {
    message: String,
    retryable: bool,
    /// A 429's `Retry-After`, when the server sent one in seconds.
    retry_after: Option<std::time::Duration>,
}

impl AttemptError {
    fn fatal(message: String) -> Self {
        AttemptError {
            message,
            retryable: false,
            retry_after: None,
        }
    }
    fn retry(message: String) -> Self {
        AttemptError {
            message,
            retryable: true,
            retry_after: None,
        }
    }
}

pub async fn run(config: Config, ctx: &TaskContext) -> anyhow::Result<Outcome> {
    crate::operators::ensure_valid(config.validate())?;
    let mapping = Mapping::compile(&config.fields.0)
        .map_err(|e| anyhow::anyhow!("invalid `with.fields`: {e:?}"))?;
    let url = config.resolve_url(&ctx.env)?;
    let client = reqwest::Client::builder()
        .timeout(config.timeout.std())
        .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let pages = config.pages();
    ctx.log.info(format!(
        "Fetching {} results from {} in {} request(s), at most {} at once",
        config.results,
        mask_uri(&url),
        pages.len(),
        config.concurrency
    ));
    let started = Instant::now();
    let results_path: Vec<String> = config.results_path.split('.').map(str::to_string).collect();

    let (client, url_ref, config_ref, path_ref) = (&client, &url, &config, &results_path);
    let requests: Vec<(usize, u32)> = pages.iter().copied().enumerate().collect();
    let fetches = futures::stream::iter(requests)
        .map(move |(i, n)| fetch_page(client, url_ref, n, i + 1, config_ref, path_ref, ctx))
        .buffered(config.concurrency.max(1))
        .try_collect::<Vec<Vec<Value>>>();

    let pages_out = tokio::select! {
        r = fetches => r?,
        _ = ctx.cancel.cancelled() => anyhow::bail!("fetch was cancelled"),
    };
    let fetched_in = started.elapsed();

    let now = chrono::Utc::now().to_rfc3339();
    let mut records = Vec::with_capacity(config.results as usize);
    let mut invalid = 0usize;
    let mut received = 0usize;
    for (i, item) in pages_out.iter().flatten().enumerate() {
        received += 1;
        match mapping.apply(item, &now) {
            Ok(r) => records.push(r),
            Err(why) => {
                invalid += 1;
                if config.on_invalid == OnInvalid::Fail {
                    anyhow::bail!("result #{i} cannot be mapped: {why}");
                }
                // Log the first few in full; the count covers the rest.
                if invalid <= 20 {
                    ctx.log.info(format!("Skipping result #{i}: {why}"));
                }
            }
        }
    }
    let secs = fetched_in.as_secs_f64().max(1e-9);
    ctx.log.info(format!(
        "Fetched {received} results in {:.3}s ({:.0}/s); {} records, {invalid} skipped as invalid",
        secs,
        received as f64 / secs,
        records.len()
    ));
    if received < config.results as usize {
        ctx.log.info(format!(
            "The API returned {received} results, fewer than the {} asked for",
            config.results
        ));
    }
    if records.is_empty() && config.results > 0 {
        anyhow::bail!(
            "none of the {received} results could be mapped to a record ({invalid} invalid)"
        );
    }
    Ok(Outcome::returning(Value::Array(records)))
}

/// One request with its retries; returns the list of results of that page.
async fn fetch_page(
    client: &reqwest::Client,
    url: &str,
    n: u32,
    page: usize,
    config: &Config,
    results_path: &[String],
    ctx: &TaskContext,
) -> anyhow::Result<Vec<Value>> {
    let mut query: Vec<(String, String)> = config
        .query
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    query.push(("results".into(), n.to_string()));
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match attempt_once(client, url, &query, results_path).await {
            Ok(items) => return Ok(items),
            Err(e) => e,
        };
        if !err.retryable || attempt > config.retries {
            let tries = if err.retryable {
                format!(" after {attempt} attempt(s)")
            } else {
                String::new()
            };
            anyhow::bail!(
                "request {page} to {} failed{tries}: {}",
                mask_uri(url),
                err.message
            );
        }
        let wait = err.retry_after.unwrap_or_else(|| backoff(config, attempt));
        ctx.log.info(format!(
            "Request {page} attempt {attempt} failed ({}); retrying in {:.2}s",
            err.message,
            wait.as_secs_f64()
        ));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.cancel.cancelled() => anyhow::bail!("fetch was cancelled"),
        }
    }
}

/// Exponential backoff with full jitter on the upper half: `base * 2^(attempt-1)`, capped.
fn backoff(config: &Config, attempt: u32) -> std::time::Duration {
    let base = config.backoff.std().as_secs_f64();
    let cap = config.max_backoff.std().as_secs_f64();
    let exp = (base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32)).min(cap);
    let jittered = exp * rand::rng().random_range(0.5..=1.0);
    std::time::Duration::from_secs_f64(jittered.max(0.0))
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    query: &[(String, String)],
    results_path: &[String],
) -> Result<Vec<Value>, AttemptError> {
    let resp = client.get(url).query(query).send().await.map_err(|e| {
        // Connection refused, DNS, TLS, timeouts: all worth another try.
        AttemptError::retry(format!("request error: {}", without_url(&e)))
    })?;
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| std::time::Duration::from_secs(s.min(300)));
        return Err(AttemptError {
            message: "HTTP 429 Too Many Requests".into(),
            retryable: true,
            retry_after,
        });
    }
    let body = resp.bytes().await.map_err(|e| {
        AttemptError::retry(format!("reading the body failed: {}", without_url(&e)))
    })?;
    if status.is_server_error() {
        return Err(AttemptError::retry(format!(
            "HTTP {status}: {}",
            snippet(&body)
        )));
    }
    if !status.is_success() {
        return Err(AttemptError::fatal(format!(
            "HTTP {status}: {}",
            snippet(&body)
        )));
    }
    let mut json: Value = serde_json::from_slice(&body).map_err(|e| {
        AttemptError::fatal(format!(
            "the response is not JSON ({e}); it starts with: {}",
            snippet(&body)
        ))
    })?;
    if let Some(error) = json.get("error") {
        // randomuser.me answers overload with 200 and `{"error": "..."}`; another try may work.
        let text = error
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        return Err(AttemptError::retry(format!(
            "the API returned an error: {text}"
        )));
    }
    if let Some(Value::Array(items)) = lookup_mut(&mut json, results_path) {
        // Moved out, not cloned: a page is up to 5,000 nested objects.
        return Ok(std::mem::take(items));
    }
    match lookup(&json, results_path) {
        Some(other) => Err(AttemptError::fatal(format!(
            "`{}` in the response is {}, not a list",
            results_path.join("."),
            kind(other)
        ))),
        None => Err(AttemptError::fatal(format!(
            "the response has no `{}` list; it starts with: {}",
            results_path.join("."),
            snippet(&body)
        ))),
    }
}

/// Like `lookup`, for taking the value out.
fn lookup_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
        _ => None,
    })
}

/// reqwest errors print the URL, which may carry credentials; keep only the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "transport error".to_string()
    };
    let mut source = std::error::Error::source(e);
    if let Some(s) = source.take() {
        msg.push_str(&format!(": {s}"));
    }
    msg
}

/// The first 120 characters of a body, on one line, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 120 {
        format!("{one_line}…")
    } else {
        one_line
    }
}
