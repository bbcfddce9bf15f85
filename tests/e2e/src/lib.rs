//! Harness of the end-to-end suites: a fresh Postgres database per test, servers started on it
//! in-process ([`Server`]: `qcloud::launch` on a listener the harness holds) or as real
//! `qcloud serve` processes ([`Process`], for the tests that kill or stop one), and a small HTTP
//! client.
//!
//! The database server comes from `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each [`TestDb`] creates its own database there and drops it afterwards. The binary (for
//! [`Process`] only) is `$QCLOUD_BIN`, else `target/debug/qcloud` of this workspace (built by
//! `cargo build -p qcloud`; `scripts/test` builds it first).
//!
//! `QCLOUD_E2E_LOG` (a log filter, e.g. `debug`) makes the servers log to stderr (the binary's
//! log goes to a file named in failure messages either way).
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

/// The flags every harness-started server gets before the test's own. Rate limiting is off
/// unless the test sets it: the suites poll every 20 ms from several tasks with one user token,
/// which is not the traffic the limit is for (`tests/tokens.rs` tests the limit).
fn base_flags(db: &TestDb, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = ["--database-url", &db.url, "--admin-token", ADMIN_TOKEN, "--db-max-connections", "8"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !extra.contains(&"--rate-limit-per-second") {
        flags.extend(["--rate-limit-per-second".to_string(), "0".to_string()]);
    }
    flags
}

/// How an in-process server is told to stop.
enum Stop {
    /// As SIGTERM: HTTP stops, the scheduler drains and hands running jobs back.
    Graceful,
    /// As SIGKILL: the server's runtime is dropped at once.
    Now,
}

/// A server started in-process with `qcloud::launch`, on a listener the harness binds (port 0)
/// and hands over, on a runtime of its own in a thread of its own (so that a test's blocking
/// calls or its runtime flavour do not slow the server, as with a separate process).
pub struct Server {
    pub url: String,
    pub replica_id: uuid::Uuid,
    stop: Option<tokio::sync::oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Start a server on `db` with extra flags of `qcloud serve` (e.g. `["--interactive-ttl",
    /// "1"]`); nothing is read from the environment or a settings file.
    pub async fn start(db: &TestDb, extra: &[&str]) -> anyhow::Result<Server> {
        let mut flags = base_flags(db, extra);
        flags.extend(extra.iter().map(|s| s.to_string()));
        Server::launch(qcloud::Config::from_flags(flags)?).await
    }

    /// Start a server with a configuration of the test's making. Returns once it takes requests.
    pub async fn launch(config: qcloud::Config) -> anyhow::Result<Server> {
        // In-process servers log to the test's stderr when asked (as `QCLOUD_E2E_LOG` sets the
        // binary's filter); the first server installs the subscriber, the others find it there.
        if let Ok(filter) = std::env::var("QCLOUD_E2E_LOG") {
            let _ = qcloud::telemetry::init(qcloud::LogFormat::Text, Some(&filter));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<uuid::Uuid>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Stop>();
        let thread = std::thread::Builder::new().name(format!("qcloud-{addr}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let started = async {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
                    let server = qcloud::launch(config, listener, async {
                        let _ = graceful_rx.await;
                    })
                    .await?;
                    anyhow::Ok((server, graceful_tx))
                };
                let (server, graceful_tx) = match started.await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(server.replica_id()));
                match stop_rx.await {
                    Ok(Stop::Graceful) => {
                        let _ = graceful_tx.send(());
                        if let Err(e) = server.wait().await {
                            eprintln!("qcloud at {addr} stopped with an error: {e:#}");
                        }
                    }
                    // Dropping the runtime below ends every task of the server.
                    Ok(Stop::Now) | Err(_) => drop(server),
                }
            });
            rt.shutdown_background();
        })?;
        let mut server = Server {
            url: format!("http://{addr}"),
            replica_id: uuid::Uuid::nil(),
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.await {
            Ok(Ok(id)) => server.replica_id = id,
            Ok(Err(e)) => return Err(e.context("qcloud::launch failed")),
            Err(_) => bail!("the server thread ended before the server started"),
        }
        Ok(server)
    }

    fn stop(&mut self, how: Stop) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(how);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Graceful shutdown, as SIGTERM does for the binary; returns once the server has stopped.
    pub fn terminate(&mut self) {
        self.stop(Stop::Graceful);
    }

    /// Stop at once, as SIGKILL does for the binary.
    pub fn kill(&mut self) {
        self.stop(Stop::Now);
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

/// A `qcloud serve` process (the real binary), for the tests that need one: SIGKILL, SIGTERM.
pub struct Process {
    pub url: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Start `qcloud serve` on `db` with extra flags, on a port the server picks itself
    /// (`--listen 127.0.0.1:0`; the address is read from what it prints), and wait until
    /// `/readyz` answers.
    pub async fn start(db: &TestDb, extra: &[&str]) -> anyhow::Result<Process> {
        Process::start_in(db, extra, None).await
    }

    /// As [`Process::start`], in working directory `cwd` (where it looks for `qcloud.toml`).
    pub async fn start_in(db: &TestDb, extra: &[&str], cwd: Option<&std::path::Path>) -> anyhow::Result<Process> {
        let bin = qcloud_bin();
        if !bin.exists() {
            bail!("{} not found: build it with `cargo build -p qcloud` (or set QCLOUD_BIN)", bin.display());
        }
        let log = std::env::temp_dir().join(format!("qcloud-e2e-{}-{}.log", db.name, uuid::Uuid::new_v4().simple()));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(base_flags(db, extra))
            .args(extra)
            .env("RUST_LOG", std::env::var("QCLOUD_E2E_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()))
            .stdout(Stdio::piped())
            .stderr(log_file);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().context("spawning qcloud serve")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        if let Some(out) = child.stdout.take() {
            // Read every line (a full pipe would block the server), keep the address.
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("qcloud listening on ") {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            });
        }
        let mut process = Process { url: String::new(), child, log };
        let t0 = Instant::now();
        let limit = Duration::from_secs(60);
        process.url = loop {
            if let Ok(url) = rx.try_recv() {
                break url;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!("qcloud exited with {status} before it was listening; log: {}", process.log_text());
            }
            if t0.elapsed() > limit {
                bail!("qcloud printed no address after {limit:?}; log: {}", process.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        process.wait_ready(Duration::from_secs(30)).await?;
        Ok(process)
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

impl Drop for Process {
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

    /// Submit a job (it must be accepted with 201), wait until it is terminal, and return it with
    /// its result (`null` unless it completed).
    pub async fn run_job(&self, body: Value, limit: Duration) -> anyhow::Result<(Value, Value)> {
        let (s, job) = self.post("/v1/jobs", body).await?;
        if s != StatusCode::CREATED {
            bail!("POST /v1/jobs: {s} {job}");
        }
        let id = job["id"].as_str().unwrap_or_default().to_string();
        let done = self.wait_job(&id, limit).await?;
        let result = if done["status"] == "completed" {
            self.get(&format!("/v1/jobs/{id}/result")).await?.1["result"].clone()
        } else {
            Value::Null
        };
        Ok((done, result))
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

/// Create a token for `user` in `project` (as `qcloud tokens create` does, in-process). A thread
/// and runtime of its own, so that it can be called from any test, async or not.
pub fn create_token(db: &TestDb, project: &str, user: &str) -> anyhow::Result<String> {
    let config = qcloud::Config::from_flags(["--database-url", db.url.as_str(), "--db-max-connections", "1"])?;
    let (project, user) = (project.to_string(), user.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let db = qcloud::Db::connect(&config).await?;
            let token = db.create_token(&project, &user, false).await;
            db.close().await;
            token
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the token thread panicked"))?
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

/// One Server-Sent Event as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    /// The event id as a number.
    pub fn seq(&self) -> i64 {
        self.id.as_deref().and_then(|i| i.parse().ok()).unwrap_or(-1)
    }
}

/// A reader of `GET /v1/events` (a real socket; the text/event-stream format parsed by hand:
/// fields `id`, `event`, `data`, comment lines counted as keep-alives).
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl EventStream {
    /// Open the stream at `path` (e.g. `/v1/events?session_id=...`), resuming after
    /// `last_event_id` when given.
    pub async fn open(base: &str, token: &str, path: &str, last_event_id: Option<i64>) -> anyhow::Result<EventStream> {
        let mut req = reqwest::Client::new()
            .get(format!("{}{path}", base.trim_end_matches('/')))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!("GET {path}: {status}: {}", resp.text().await.unwrap_or_default());
        }
        Ok(EventStream { resp, buf: String::new(), comments: 0 })
    }

    /// The next event, or `None` when `limit` passes first or the stream ends.
    pub async fn next(&mut self, limit: Duration) -> anyhow::Result<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut ev = SseEvent { id: None, event: None, data: String::new() };
                let mut any = false;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (k, v) =
                        line.split_once(':').map(|(k, v)| (k, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
                    any = true;
                    match k {
                        "id" => ev.id = Some(v.to_string()),
                        "event" => ev.event = Some(v.to_string()),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(v);
                        }
                        _ => {}
                    }
                }
                if any {
                    return Ok(Some(ev));
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(b))) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
}

/// A TLS terminator on 127.0.0.1 in front of `upstream` (`host:port`), as a reverse proxy would
/// be: it serves a certificate for `localhost` signed by a CA made here and passes the bytes on.
/// Returns its port and the CA's certificate (PEM).
pub async fn tls_terminator(upstream: String) -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio_rustls::rustls;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "qcloud test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A refused handshake (the agent without the CA) just ends the connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (port, ca.pem())
}
