//! The web UI, the REST API (`/api/v2`, shaped like Airflow 3's public API), authentication,
//! health and metrics, all served by one axum router.
//!
//! # Layout
//! - [`auth`]: users, sessions, CSRF, bearer tokens and basic auth; [`hashing`]: the bounded
//!   password hashing pool; [`throttle`]: slowing password guessing.
//! - [`hardening`]: security headers, the body limit and the timeout (tower-http), and
//!   refusals worded for people and programs.
//! - [`api`]: the JSON API and its OpenAPI document.
//! - [`pages`]: one page struct per page, next to its handler; templates in `web/templates`.
//! - [`guard`]: refuses URLs with NUL bytes, bad UTF-8 or oversized fields (400).
//! - [`graph`]: lays out a DAG's tasks for the SVG graph (pure).
//! - [`metrics`]: `/health`, `/metrics` and the request-latency layer.
//! - [`assets`]: `web/static`, compiled into the binary.
//! - [`markdown`]: notes rendered as safe HTML.
//! - [`streams`]: the topic monitor's data (topics, offsets, lag) and its messages/s
//!   sampler, shared by its pages, its API and the gauges.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

pub mod api;
pub mod assets;
pub mod auth;
pub mod error;
pub mod graph;
pub mod guard;
pub mod hardening;
pub mod hashing;
pub mod markdown;
pub mod metrics;
pub mod page;
pub mod pages;
pub mod streams;
pub mod throttle;

pub use auth::{create_user, ensure_admin};
pub use error::{ApiError, WebError};

/// How the web server runs. Built by the caller from its settings; nothing here reads the
/// environment.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub bind: SocketAddr,
    /// Shown on the import errors page, so people know where files are read from.
    pub dags_folder: PathBuf,
    /// Mark cookies `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
    /// How long an API token from `/auth/token` lasts (Airflow's default: 24 h).
    pub token_ttl: Duration,
    /// The largest request body accepted (API and forms); larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a handler may take to start its response before the request is answered
    /// 503. Streamed bodies (the log tail, log downloads) are not limited by it.
    pub request_timeout: Duration,
    /// Seals and opens stored secrets (connections, variables).
    pub vault: crate::core::fernet::Vault,
    /// Whether `POST /api/v2/connections/test` may run (Airflow's `[core] test_connection`).
    pub test_connection: bool,
    /// Cron schedules use data intervals (`[scheduler] create_cron_data_intervals`): backfills
    /// plan their runs as the scheduler would.
    pub create_cron_data_intervals: bool,
    /// Brokers and connections as operators see them, for the stream endpoints (replay).
    pub operator_env: Arc<crate::settings::OperatorEnv>,
}

/// [`WebSettings::max_body_bytes`] unless told otherwise: far above any form or trigger conf.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// [`WebSettings::request_timeout`] unless told otherwise: above the longest wait a sign-in
/// may have for a password check (10 s), far above any page's time.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl WebSettings {
    pub fn new(bind: SocketAddr, dags_folder: PathBuf) -> Self {
        WebSettings::from_settings(&Settings {
            core: crate::settings::Core {
                dags_folder,
                ..Default::default()
            },
            webserver: crate::settings::Webserver {
                host: bind.ip(),
                port: bind.port(),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    pub fn from_settings(settings: &Settings) -> Self {
        let w = &settings.webserver;
        WebSettings {
            bind: SocketAddr::new(w.host, w.port),
            dags_folder: settings.core.dags_folder.clone(),
            secure_cookies: w.secure_cookies,
            session_ttl: w.session_ttl.std(),
            token_ttl: w.token_ttl.std(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            vault: settings.vault().unwrap_or_default(),
            test_connection: settings.core.test_connection,
            create_cron_data_intervals: settings.scheduler.create_cron_data_intervals,
            operator_env: Arc::new(settings.operator_env()),
        }
    }
}

/// Binds the web server's listener, with a message that says what to do when the port is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr}: {e}; pass --port (env UPDRAFT_WEB_PORT, or [webserver] port in updraft.toml) to use another port"
        )
    })
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<WebSettings>,
    pub metrics: Arc<metrics::HttpMetrics>,
    /// Ends live streams (log tails) so shutdown does not wait on open browsers.
    pub shutdown: CancellationToken,
    /// Slows password guessing (per client address and username).
    pub logins: Arc<throttle::LoginThrottle>,
    /// Where sign-ins' password checks run: a fixed pool, so their memory is bounded.
    pub hashing: Arc<hashing::HashPool>,
    /// The topics' recent end offsets, filled by [`start_sampler`]; empty when it is not
    /// running.
    pub rates: Arc<streams::rates::RateHistory>,
}

impl AppState {
    pub fn new(pool: PgPool, settings: WebSettings, shutdown: CancellationToken) -> Self {
        AppState {
            pool,
            settings: Arc::new(settings),
            metrics: Arc::default(),
            shutdown,
            logins: Arc::default(),
            hashing: Arc::new(hashing::HashPool::new(
                hashing::THREADS,
                hashing::QUEUE,
                hashing::WAIT,
            )),
            rates: Arc::default(),
        }
    }
}

/// Starts the topic monitor's messages/s sampler for `state`'s server; it stops when
/// `state.shutdown` is cancelled.
pub fn start_sampler(state: &AppState) -> tokio::task::JoinHandle<()> {
    let sampler = streams::rates::Sampler::new(
        state.pool.clone(),
        state.settings.operator_env.clone(),
        state.rates.clone(),
    );
    tokio::spawn(sampler.run(state.shutdown.clone()))
}

/// Every route. Public: login, `/auth/token` (and `/auth/token/cli`), `/api/v2/version`,
/// health, static files and the OpenAPI document; everything else passes
/// [`auth::require_auth`]. Around them all, outermost first: security headers, refusals
/// explained, request metrics, the timeout and the body limit (see [`hardening`]).
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .route("/metrics", get(metrics::metrics))
        .route("/logout", post(auth::logout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ));
    let routes = Router::new()
        .merge(protected)
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/auth/token", post(auth::token))
        // airflowctl logs in here (Airflow gives CLI tokens a shorter life; updraft's last
        // as long as API tokens).
        .route("/auth/token/cli", post(auth::token))
        .merge(api::public_routes())
        .route("/health", get(metrics::health))
        .route("/api/v2/monitor/health", get(metrics::health))
        .route("/openapi.json", get(api::openapi::document))
        .route("/static/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // NUL bytes, bad UTF-8 and oversized fields in the URL: 400 before any handler.
        .layer(axum::middleware::from_fn(guard::reject_malformed));
    let timed = hardening::limits(routes, &state).layer(axum::middleware::from_fn_with_state(
        state.clone(),
        metrics::track,
    ));
    hardening::outer(timed, &state).with_state(state)
}

/// Serves until `shutdown` is cancelled, then finishes in-flight requests.
pub async fn serve(
    pool: PgPool,
    settings: WebSettings,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState::new(pool, settings, shutdown.clone());
    let sampler = start_sampler(&state);
    let served = serve_router(router(state), listener, shutdown).await;
    // Stopped by the shutdown token already, unless serving failed.
    sampler.abort();
    served
}

/// Serves an already built router (tests and the bench build their own `AppState`).
pub async fn serve_router(
    app: Router,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "web server listening");
    // The client's address keys the sign-in throttle.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| anyhow::anyhow!("web server on {addr} failed: {e}"))
}
