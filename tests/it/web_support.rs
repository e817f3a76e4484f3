//! Support for the web, API and browser tests: a server on port 0 over a fresh database,
//! DAGs stored through the real `sync_bag`, and task rows advanced by hand (standing in for
//! the scheduler and workers until they run in-process here).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use updraft::dag::{Dag, DagBag, DagId, LoadedDag, OperatorName, Task, TaskId};
use updraft::web::{self, AppState, WebSettings};

use crate::helpers::{fresh_db, TestDb};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub db: TestDb,
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    /// The server's sign-in throttle, for tests that must not be slowed by it.
    pub logins: std::sync::Arc<web::throttle::LoginThrottle>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A logged-in browser session: its cookie and CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server whose settings `configure` adjusts first (limits, timeouts).
    pub async fn spawn_with(configure: impl FnOnce(&mut WebSettings)) -> TestApp {
        let db = fresh_db().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let mut settings = WebSettings::new(addr, "/tmp/dags".into());
        configure(&mut settings);
        let state = AppState::new(db.pool.clone(), settings, shutdown.clone());
        let logins = state.logins.clone();
        // The topic monitor's messages/s sampler, as `web::serve` starts it.
        web::start_sampler(&state);
        // With the client's address, as `web::serve` does (the sign-in throttle uses it).
        let app = web::router(state).into_make_service_with_connect_info::<SocketAddr>();
        let token = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
                .unwrap();
        });
        web::create_user(&db.pool, "alice", PASSWORD, "admin")
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestApp {
            db,
            base: format!("http://{addr}"),
            addr,
            client,
            shutdown,
            logins,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The login form's CSRF cookie and hidden token, as a browser gets them.
    pub async fn login_token(&self) -> (String, String) {
        let res = self.client.get(self.url("/login")).send().await.unwrap();
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let doc = scraper::Html::parse_document(&res.text().await.unwrap());
        let token = doc
            .select(&sel("#login-form input[name=csrf_token]"))
            .next()
            .unwrap()
            .value()
            .attr("value")
            .unwrap()
            .to_string();
        (cookie, token)
    }

    /// Posts the login form with its CSRF token.
    pub async fn post_login(
        &self,
        username: &str,
        password: &str,
        next: &str,
    ) -> reqwest::Response {
        let (cookie, token) = self.login_token().await;
        self.client
            .post(self.url("/login"))
            .header("cookie", cookie)
            .form(&[
                ("username", username),
                ("password", password),
                ("next", next),
                ("csrf_token", &token),
            ])
            .send()
            .await
            .unwrap()
    }

    /// Logs in through the form and reads the CSRF token from the DAG list.
    pub async fn login(&self) -> Session {
        self.login_as("alice", PASSWORD).await
    }

    /// Logs in as another user through the form.
    pub async fn login_as(&self, username: &str, password: &str) -> Session {
        let res = self.post_login(username, password, "/dags").await;
        assert_eq!(res.status(), 303, "login should redirect");
        let cookie = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with("updraft_session="))
            .expect("a session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let html = self
            .client
            .get(self.url("/dags"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let doc = scraper::Html::parse_document(&html);
        let csrf = doc
            .select(&sel("input[name=csrf_token]"))
            .next()
            .expect("pages carry a CSRF token")
            .value()
            .attr("value")
            .unwrap()
            .to_string();
        Session { cookie, csrf }
    }

    pub async fn page(&self, s: &Session, path: &str) -> (u16, scraper::Html) {
        let res = self
            .client
            .get(self.url(path))
            .header("cookie", &s.cookie)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (
            status,
            scraper::Html::parse_document(&res.text().await.unwrap()),
        )
    }

    pub async fn post_form(
        &self,
        s: &Session,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("cookie", &s.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self) -> String {
        let res = self
            .client
            .post(self.url("/auth/token"))
            .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json::<serde_json::Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

pub fn sel(s: &str) -> scraper::Selector {
    scraper::Selector::parse(s).unwrap()
}

pub fn texts(doc: &scraper::Html, s: &str) -> Vec<String> {
    doc.select(&sel(s))
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

pub fn task(id: &str, upstream: &[&str]) -> Task {
    Task {
        upstream: upstream
            .iter()
            .map(|u| TaskId::parse(*u).unwrap())
            .collect(),
        owner: "data-team".into(),
        ..Task::new(TaskId::parse(id).unwrap(), OperatorName::Bash)
    }
}

/// A DAG `extract → transform → load` (plus `notify` after extract) with one param.
pub fn sample_dag(dag_id: &str, tags: &[&str]) -> Dag {
    let mut tasks = vec![
        task("extract", &[]),
        task("transform", &["extract"]),
        task("notify", &["extract"]),
        task("load", &["transform"]),
    ];
    tasks[0].downstream = vec![
        TaskId::parse("notify").unwrap(),
        TaskId::parse("transform").unwrap(),
    ];
    tasks[1].downstream = vec![TaskId::parse("load").unwrap()];
    let mut params = serde_json::Map::new();
    params.insert("target".into(), "warehouse".into());
    params.insert("batch".into(), 10.into());
    Dag {
        description: Some(format!("{dag_id} moves data")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        params,
        is_paused_upon_creation: Some(false),
        ..Dag::new(DagId::parse(dag_id).unwrap(), tasks)
    }
}

/// Stores DAGs through the DAG processor's own sync, as if loaded from files.
pub async fn store_dags(pool: &PgPool, dags: Vec<Dag>) {
    let mut bag = DagBag::default();
    for dag in dags {
        let fileloc = format!("{}.yaml", dag.dag_id);
        let source = format!("dag_id: {}\n# source of the test DAG\n", dag.dag_id);
        bag.dags
            .insert(dag.dag_id.clone(), LoadedDag::new(dag, fileloc, source));
    }
    updraft::db::dags::sync_bag(pool, &bag, &mut BTreeMap::new())
        .await
        .unwrap();
}

/// Stands in for the scheduler starting a run: the run becomes running and each task gets a
/// task instance in state `none`.
pub async fn start_run(pool: &PgPool, dag_id: &str, run_id: &str, tasks: &[&str]) -> i64 {
    let run_pk: i64 = sqlx::query_scalar(
        "UPDATE dag_runs SET state = 'running', start_date = now() WHERE dag_id = $1 AND run_id = $2 RETURNING id",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_one(pool)
    .await
    .unwrap();
    for t in tasks {
        sqlx::query(
            "INSERT INTO task_instances (run_pk, dag_id, task_id, state, max_tries, upstream_total) VALUES ($1, $2, $3, 'none', 1, 0)",
        )
        .bind(run_pk)
        .bind(dag_id)
        .bind(t)
        .execute(pool)
        .await
        .unwrap();
    }
    run_pk
}

/// Stands in for a worker: sets a task's state and times.
pub async fn set_task(pool: &PgPool, run_pk: i64, task_id: &str, state: &str) -> i64 {
    sqlx::query_scalar(
        "UPDATE task_instances SET state = $3,
            try_number = CASE WHEN $3 = 'running' THEN try_number + 1 ELSE greatest(try_number, 1) END,
            queued_at = coalesce(queued_at, now()),
            start_date = coalesce(start_date, now()),
            end_date = CASE WHEN $3 IN ('success', 'failed', 'skipped', 'upstream_failed') THEN now() END
         WHERE run_pk = $1 AND task_id = $2 RETURNING id",
    )
    .bind(run_pk)
    .bind(task_id)
    .bind(state)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn finish_run(pool: &PgPool, run_pk: i64, state: &str) {
    sqlx::query("UPDATE dag_runs SET state = $2, end_date = now() WHERE id = $1")
        .bind(run_pk)
        .bind(state)
        .execute(pool)
        .await
        .unwrap();
}

pub async fn add_log(pool: &PgPool, ti_id: i64, try_number: i32, lines: &[impl AsRef<str>]) {
    let lines: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    sqlx::query(
        "INSERT INTO task_logs (ti_id, try_number, at, stream, line) SELECT $1, $2, now(), 'stdout', l FROM unnest($3::text[]) WITH ORDINALITY u(l, o) ORDER BY o",
    )
    .bind(ti_id)
    .bind(try_number)
    .bind(&lines)
    .execute(pool)
    .await
    .unwrap();
}

pub async fn add_import_error(pool: &PgPool, file: &str, message: &str) {
    sqlx::query("INSERT INTO import_errors (filename, message) VALUES ($1, $2)")
        .bind(file)
        .bind(message)
        .execute(pool)
        .await
        .unwrap();
}
