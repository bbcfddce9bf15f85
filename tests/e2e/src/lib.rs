//! Harness of the end-to-end suites: a fresh Postgres database per test, `qcloud serve`
//! processes started on it (real binary, real sockets), and a small HTTP client.
//!
//! The database server comes from `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each [`TestDb`] creates its own database there and drops it afterwards. The binary is
//! `$QCLOUD_BIN`, else `target/debug/qcloud` of this workspace (built by `cargo test --workspace`
//! / `cargo nextest run --workspace`; `cargo build -p qcloud` builds it alone).
//!
//! Against an external server (`QCLOUD_E2E_URL` and `QCLOUD_E2E_TOKEN`, e.g. the docker compose
//! stack), [`Target::from_env_or_start`] uses that server instead of starting one.

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token every harness-started server registers.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";

pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test, dropped on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<TestDb> {
        let admin_url = server_url();
        let name = format!("qcloud_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url).await.context("connecting to DATABASE_URL")?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
        let url = replace_db(&admin_url, &name);
        Ok(TestDb { name, url, admin_url })
    }

    /// A connection to the test database, for checks that look at rows directly.
    pub async fn connect(&self) -> anyhow::Result<PgConnection> {
        Ok(PgConnection::connect(&self.url).await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop from a thread of its own: Drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Replace the database name of a Postgres URL (keeps the query string).
fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

pub fn qcloud_bin() -> PathBuf {
    if let Ok(p) = std::env::var("QCLOUD_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    target.join("debug").join("qcloud")
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A `qcloud serve` process.
pub struct Server {
    pub url: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Server {
    /// Start a server on `db` with extra flags (e.g. `["--interactive-ttl", "1"]`) and wait until
    /// `/readyz` answers.
    pub async fn start(db: &TestDb, extra: &[&str]) -> anyhow::Result<Server> {
        let bin = qcloud_bin();
        if !bin.exists() {
            bail!("{} not found: build it with `cargo build -p qcloud` (or set QCLOUD_BIN)", bin.display());
        }
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("qcloud-e2e-{}-{port}.log", db.name));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &db.url])
            .args(["--admin-token", ADMIN_TOKEN])
            .args(["--db-max-connections", "8"])
            .args(extra)
            .env("RUST_LOG", std::env::var("QCLOUD_E2E_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("spawning qcloud serve")?;
        let mut server = Server { url: format!("http://127.0.0.1:{port}"), child, log };
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("qcloud exited with {status} before it was ready; log: {}", self.log_text());
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if t0.elapsed() > limit {
                bail!("qcloud not ready after {limit:?}; log: {}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process dies without any cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: graceful shutdown.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.url, token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal JSON client for the native API.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_string(), token: token.to_string(), http: reqwest::Client::new() }
    }

    /// Send a request; returns the status and the JSON body (Null when empty or not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Poll a job until it is terminal (completed, failed or canceled).
    pub async fn wait_job(&self, id: &str, limit: Duration) -> anyhow::Result<Value> {
        let t0 = Instant::now();
        loop {
            let (s, j) = self.get(&format!("/v1/jobs/{id}")).await?;
            if s != StatusCode::OK {
                bail!("GET job {id}: {s} {j}");
            }
            if matches!(j["status"].as_str(), Some("completed" | "failed" | "canceled")) {
                return Ok(j);
            }
            if t0.elapsed() > limit {
                bail!("job {id} not finished after {limit:?}: {j}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Poll a session until `pred` holds.
    pub async fn wait_session(
        &self,
        id: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let t0 = Instant::now();
        loop {
            let (s, v) = self.get(&format!("/v1/sessions/{id}")).await?;
            if s != StatusCode::OK {
                bail!("GET session {id}: {s} {v}");
            }
            if pred(&v) {
                return Ok(v);
            }
            if t0.elapsed() > limit {
                bail!("session {id} did not reach the expected state after {limit:?}: {v}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The server a suite talks to: an external one (`QCLOUD_E2E_URL` + `QCLOUD_E2E_TOKEN`) or one
/// started here on a fresh database.
pub struct Target {
    pub url: String,
    pub admin_token: String,
    pub server: Option<Server>,
    pub db: Option<TestDb>,
}

impl Target {
    pub async fn from_env_or_start(extra: &[&str]) -> anyhow::Result<Target> {
        if let (Ok(url), Ok(token)) = (std::env::var("QCLOUD_E2E_URL"), std::env::var("QCLOUD_E2E_TOKEN")) {
            return Ok(Target { url, admin_token: token, server: None, db: None });
        }
        let db = TestDb::create().await?;
        let server = Server::start(&db, extra).await?;
        Ok(Target { url: server.url.clone(), admin_token: ADMIN_TOKEN.into(), server: Some(server), db: Some(db) })
    }

    pub fn admin(&self) -> Client {
        Client::new(&self.url, &self.admin_token)
    }

    pub fn is_external(&self) -> bool {
        self.server.is_none()
    }
}

/// Create a token for `user` in `project` with the binary's `tokens create` command.
pub fn create_token(db: &TestDb, project: &str, user: &str) -> anyhow::Result<String> {
    let out = Command::new(qcloud_bin())
        .args(["tokens", "--database-url", &db.url, "create", "--project", project, "--user", user])
        .output()?;
    if !out.status.success() {
        bail!("tokens create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A unique device name for a test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(super::replace_db("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            super::replace_db("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(super::replace_db("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    }
}
