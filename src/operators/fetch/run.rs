use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde_json::Value;

use super::config::{Config, OnInvalid};
use super::mapping::{kind, lookup, Mapping};
use crate::core::log::mask_uri;
use crate::operators::error::classify;
use crate::operators::retry::{retry, RetryPolicy};
use crate::operators::{OperatorError, Outcome, Reason, TaskContext};

/// Fails the try on a permanent problem (bad arguments, a 4xx, a body that is not what
/// `results_path` says, a mapping the data cannot fill when `on_invalid: fail`); retries each
/// request on a transient one per `retries`/`backoff`/`max_backoff`, and fails the try with
/// a transient error once they are spent, so the task's policy can take over.
pub async fn run(config: Config, ctx: &TaskContext) -> Result<Outcome, OperatorError> {
    crate::operators::ensure_valid(config.validate())?;
    let mapping = Mapping::compile(&config.fields.0)
        .map_err(|e| OperatorError::config(format!("invalid `with.fields`: {e:?}")))?;
    let url = config.resolve_url(&ctx.env)?;
    if let Err(e) = reqwest::Url::parse(&url) {
        // `with.url` was checked above; this one came from DATASOURCE_URL or a connection.
        return Err(
            OperatorError::config(format!("`{}` is not a valid URL: {e}", mask_uri(&url))).hint(
                "fix DATASOURCE_URL or the `http_conn_id` connection, or set `url` on the task",
            ),
        );
    }
    let client = reqwest::Client::builder()
        .timeout(config.timeout.std())
        .user_agent(concat!("updraft/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| classify::reqwest_error("could not build the HTTP client", &e))?;
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
        _ = ctx.cancel.cancelled() => return Err(OperatorError::cancelled("fetch")),
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
                    return Err(OperatorError::new(
                        Reason::Schema,
                        format!("result #{i} cannot be mapped: {why}"),
                    )
                    .hint("fix `with.fields`, mark the path optional with `?`, or set `on_invalid: skip`"));
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
        return Err(OperatorError::new(
            Reason::Schema,
            format!(
                "none of the {received} results could be mapped to a record ({invalid} invalid)"
            ),
        )
        .hint("check `with.fields` and `results_path` against what the API returns"));
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
) -> Result<Vec<Value>, OperatorError> {
    let mut query: Vec<(String, String)> = config
        .query
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    query.push(("results".into(), n.to_string()));
    let policy = RetryPolicy {
        retries: config.retries,
        base: config.backoff.std(),
        cap: config.max_backoff.std(),
    };
    let query = &query;
    retry(
        policy,
        || attempt_once(client, url, query, results_path),
        |err, attempt, wait| {
            ctx.log.info(format!(
                "Request {page} attempt {attempt} failed ({err}); retrying in {:.2}s",
                wait.as_secs_f64()
            ))
        },
    )
    .await
    .map_err(|gave_up| {
        let tries = if gave_up.error.is_transient() {
            format!(" after {} attempt(s)", gave_up.attempts)
        } else {
            String::new()
        };
        let error = gave_up.error.context(format_args!(
            "request {page} to {} failed{tries}",
            mask_uri(url)
        ));
        match error.reason() {
            Reason::Rejected | Reason::Malformed => {
                error.hint("check `url` (or DATASOURCE_URL), `query` and `results_path`")
            }
            Reason::Connection | Reason::Timeout => error.hint(
                "check that this machine can reach the data source (DNS, network, proxy), or point \
                 the task's `url`, the `datasource_default` connection or DATASOURCE_URL at one it can",
            ),
            _ => error,
        }
    })
}

async fn attempt_once(
    client: &reqwest::Client,
    url: &str,
    query: &[(String, String)],
    results_path: &[String],
) -> Result<Vec<Value>, OperatorError> {
    let resp = client
        .get(url)
        .query(query)
        .send()
        .await
        .map_err(|e| classify::reqwest_error("request error", &e))?;
    let status = resp.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| std::time::Duration::from_secs(s.min(300)));
        return Err(
            OperatorError::new(Reason::RateLimited, "HTTP 429 Too Many Requests")
                .with_retry_after(retry_after),
        );
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| classify::reqwest_error("reading the body failed", &e))?;
    if !status.is_success() {
        return Err(OperatorError::new(
            classify::http_status(status),
            format!("HTTP {status}: {}", snippet(&body)),
        ));
    }
    let mut json: Value = serde_json::from_slice(&body).map_err(|e| {
        OperatorError::new(
            Reason::Malformed,
            format!(
                "the response is not JSON ({e}); it starts with: {}",
                snippet(&body)
            ),
        )
    })?;
    if let Some(error) = json.get("error") {
        // randomuser.me answers overload with 200 and `{"error": ...}`; another try may work.
        let text = error
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        return Err(OperatorError::new(
            Reason::ServerError,
            format!("the API returned an error: {text}"),
        ));
    }
    if let Some(Value::Array(items)) = lookup_mut(&mut json, results_path) {
        // Moved out, not cloned: a page is up to 5,000 nested objects.
        return Ok(std::mem::take(items));
    }
    let message = match lookup(&json, results_path) {
        Some(other) => format!(
            "`{}` in the response is {}, not a list",
            results_path.join("."),
            kind(other)
        ),
        None => format!(
            "the response has no `{}` list; it starts with: {}",
            results_path.join("."),
            snippet(&body)
        ),
    };
    Err(OperatorError::new(Reason::Malformed, message))
}

/// Like `lookup`, for taking the value out.
fn lookup_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
        _ => None,
    })
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
