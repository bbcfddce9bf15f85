//! qcloud's server as a library: [`launch`] starts one replica (HTTP API + scheduler) on a
//! listener the caller holds, so tests and embedders run servers in-process; the `qcloud` binary
//! is a command line around it.
//!
//! All the wiring onto the service, scheduler and API crates lives in this file (and the device
//! seeding in [`seed`]): [`service_config`], [`connect`], [`launch`] and [`Db`].

#![forbid(unsafe_code)]

pub mod config;
pub mod deliver;
pub mod http;
pub mod output;
mod pg;
pub mod seed;
pub mod telemetry;
pub mod watch;

pub use config::{Config, ConfigError, Flags, LogFormat, Machine};

use anyhow::Context;
use qcloud_api::{ApiConfig, RateLimit};
use qcloud_core::rules::{SessionTtls, TtlPolicy};
use qcloud_devices::Registry;
use qcloud_scheduler::{Scheduler, SchedulerConfig};
use qcloud_service::auth::{IssuedToken, NewToken, TokenView, FIRST_ADMIN_PROJECT, FIRST_ADMIN_USER};
pub use qcloud_service::devices::AddDevice;
use qcloud_service::devices::UpdateDevice;
pub use qcloud_service::{DeviceKind, DeviceStatus, DriverKind};
use qcloud_service::{Service, ServiceConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;
use uuid::Uuid;

/// The service's rules from the settings (TTLs, execution time, lease, payload size).
pub fn service_config(c: &Config) -> Result<ServiceConfig, ConfigError> {
    let max_request = Config::duration("max_request_ttl", c.max_request_ttl)?;
    Ok(ServiceConfig {
        ttl: TtlPolicy {
            default: SessionTtls {
                max_ttl: Config::duration("max_ttl", c.max_ttl)?,
                interactive_ttl: Config::duration("interactive_ttl", c.interactive_ttl)?,
                pending_ttl: Config::duration("pending_ttl", c.pending_ttl)?,
            },
            max_max_ttl: max_request,
            max_interactive_ttl: max_request,
        },
        default_max_execution: Config::duration("max_execution", c.max_execution)?,
        lease: chrono::Duration::milliseconds(c.lease_ms.clamp(100, i64::MAX as u64) as i64),
        max_payload_bytes: c.max_body_bytes,
        idempotency_window: Config::duration("idempotency_window", c.idempotency_window)?,
        webhook_policy: qcloud_service::webhooks::WebhookPolicy::parse(&c.webhook_allow)
            .map_err(|message| ConfigError::Invalid { key: "webhook_allow", message })?,
        event_retention: Config::duration("event_retention", c.event_retention)?,
        agent_offline_after: Config::duration("agent_offline_after", c.agent_offline_after)?,
        job_retention: if c.job_retention > 0.0 {
            Some(Config::duration("job_retention", c.job_retention)?)
        } else {
            None
        },
        ..ServiceConfig::default()
    })
}

/// The drivers of a replica, under its simulation memory budget.
fn registry(c: &Config) -> Registry {
    let budget = match c.sim_memory_budget {
        0 => qcloud_devices::memory::MemoryBudget::machine_default_bytes(),
        b => b,
    };
    Registry::default().with_memory_budget(budget)
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.001)).unwrap_or(Duration::MAX)
}

fn api_config(c: &Config) -> ApiConfig {
    ApiConfig {
        max_body_bytes: c.max_body_bytes,
        agent_max_result_bytes: c.agent_max_result_bytes,
        request_timeout: secs(c.request_timeout),
        body_timeout: secs(c.body_timeout),
        rate_limit: RateLimit {
            per_second: c.rate_limit_per_second,
            burst: c.rate_limit_burst,
            admins: c.rate_limit_admins,
        },
        sse_keep_alive: secs(c.sse_keep_alive),
        metrics_replica: None,
        ..ApiConfig::default()
    }
}

fn deliver_config(c: &Config) -> Result<deliver::DeliverConfig, ConfigError> {
    let ca_certs = match &c.webhook_ca_cert {
        Some(path) => {
            deliver::read_ca_certs(path).map_err(|message| ConfigError::Invalid { key: "webhook_ca_cert", message })?
        }
        None => Vec::new(),
    };
    Ok(deliver::DeliverConfig {
        timeout: secs(c.webhook_timeout),
        retry_base: secs(c.webhook_retry_base),
        retry_max: secs(c.webhook_retry_max),
        give_up_after: secs(c.webhook_give_up_after),
        ca_certs,
        ..deliver::DeliverConfig::default()
    })
}

/// The HTTP server's connection limits from the settings.
pub fn http_limits(c: &Config) -> http::HttpLimits {
    http::HttpLimits {
        header_read_timeout: secs(c.header_read_timeout),
        idle_timeout: secs(c.idle_timeout),
        max_connections: c.max_connections,
    }
}

fn scheduler_config(c: &Config) -> SchedulerConfig {
    SchedulerConfig {
        workers: c.workers.max(1),
        completion_batch: c.completion_batch.max(1),
        tick: Duration::from_millis(c.tick_ms.max(10)),
        leader_ttl: Duration::from_millis(c.leader_ttl_ms.max(300)),
        shutdown_grace: Duration::try_from_secs_f64(c.shutdown_grace.max(0.0)).unwrap_or(Duration::MAX),
        lead: !c.no_leader,
        ..SchedulerConfig::default()
    }
}

/// Resolve the database (explicit, local, or private), connect, and run the migrations. The
/// private Postgres, when one was started, runs as long as the returned handle lives.
async fn connect(
    c: &Config,
    cfg: ServiceConfig,
    registry: &Registry,
) -> anyhow::Result<(Service, Option<pg::PrivatePostgres>)> {
    let local = pg::resolve(c.database_url.clone(), &c.data_dir).await?;
    // Generic plans for every prepared statement (`db_generic_plans`, on by default): qcloud's
    // statements are short and keyed by device, session or job, and Postgres's default re-plans
    // each execution while a generic plan's estimate looks worse than the custom plans'. Two
    // paired runs of the drain scenario (bench/server/run.sh, 10,000 jobs on 64 devices, the same
    // binary with QCLOUD_DB_GENERIC_PLANS=false/true): 1.10-1.16x the jobs/s, 0.87-0.94x the
    // Postgres CPU per job. Queries whose shape depends on their filters are built per call.
    // No JIT: every statement is short, and a generic plan's estimate for `LIMIT $n` (a tenth of
    // the rows) crossed `jit_above_cost` on a large history, so a 0.1 ms page of 20 jobs spent
    // 12 ms compiling (measured by the history benchmark with 5,000,000 jobs: list p99 224 ms).
    let options: PgConnectOptions = local.url.parse().context("parsing the database URL")?;
    let options = options.options([("jit", "off")]);
    let options =
        if c.db_generic_plans { options.options([("plan_cache_mode", "force_generic_plan")]) } else { options };
    let pool = PgPoolOptions::new()
        .max_connections(c.db_max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("connecting to Postgres")?;
    qcloud_store::MIGRATOR.run(&pool).await.context("running migrations")?;
    let checks = Arc::new(qcloud_scheduler::checks::DriverChecks::new(registry.clone()));
    Ok((Service::new(pool, cfg).with_program_check(checks), local.private))
}

/// A running replica. [`Server::wait`] (or [`Server::shutdown`]) stops it cleanly; dropping it
/// without either leaves its tasks to the runtime.
pub struct Server {
    addr: SocketAddr,
    admin_token: Option<String>,
    admin_token_new: bool,
    admin_token_file: Option<PathBuf>,
    token_watch: JoinHandle<()>,
    replica_id: Uuid,
    /// Where `/metrics` is served when it has its own listener.
    metrics_addr: Option<SocketAddr>,
    /// The event hub's tasks and the metrics listener.
    background: Vec<JoinHandle<()>>,
    deliverer: JoinHandle<()>,
    stop: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    scheduler: Scheduler,
    svc: Service,
    private_pg: Option<pg::PrivatePostgres>,
}

impl Server {
    /// The address the HTTP API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin token this start knows: the configured one (`QCLOUD_ADMIN_TOKEN`), or the one
    /// made because the database had no admin token; `None` when the database had one already
    /// (make another with `qcloud tokens create --admin`).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// Whether [`Server::admin_token`] was made by this start (and so is shown this once).
    pub fn admin_token_is_new(&self) -> bool {
        self.admin_token_new
    }

    /// The file (mode 0600, in the data folder) the admin token made by this start was written to.
    pub fn admin_token_file(&self) -> Option<&Path> {
        self.admin_token_file.as_deref()
    }

    /// Where `/metrics` is served when `--metrics-listen` gave it a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This replica's id (its leader-lease and job-lease owner).
    pub fn replica_id(&self) -> Uuid {
        self.replica_id
    }

    /// Wait until the shutdown future given to [`launch`] resolves (or [`Server::shutdown`] is
    /// called), then stop: HTTP stops taking requests and finishes the ones in flight, the
    /// scheduler drains (running jobs get the grace period, then are handed back), the pool
    /// closes, and a private Postgres is stopped.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let http = (&mut self.http).await;
        self.token_watch.abort();
        // Deliveries in flight finish (each is bounded by the webhook timeout) or are left to
        // their lease.
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), &mut self.deliverer).await;
        self.deliverer.abort();
        for t in &self.background {
            t.abort();
        }
        info!("HTTP stopped; draining the scheduler");
        self.scheduler.shutdown().await;
        self.svc.pool().close().await;
        if let Some(pg) = self.private_pg.as_mut() {
            pg.stop();
        }
        http.context("the HTTP task failed")?.context("serving HTTP")
    }

    /// Stop now (as if the shutdown future had resolved) and wait until stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }
}

/// Start one replica on `listener`: connect (and migrate), seed the devices, register the admin
/// token, start the scheduler and serve the API until `shutdown` resolves. Returns once the
/// server takes requests.
pub async fn launch(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Server> {
    config.validate()?;
    let svc_cfg = service_config(&config)?;
    // A bad webhook CA file or devices file fails before anything is touched.
    let deliver_cfg = deliver_config(&config)?;
    let listed = match (&config.devices_file, config.no_seed) {
        (Some(path), false) => Some(seed::load_file(path)?),
        _ => None,
    };
    let addr = listener.local_addr().context("the listener has no local address")?;
    let registry = registry(&config);
    let (svc, private_pg) = connect(&config, svc_cfg, &registry).await?;
    if !config.no_seed {
        seed::seed(&svc, listed.as_deref()).await?;
    }
    if let Some(t) = &config.admin_token {
        svc.register_token(t, FIRST_ADMIN_PROJECT, FIRST_ADMIN_USER, true)
            .await
            .context("registering QCLOUD_ADMIN_TOKEN")?;
    }
    // One admin token for a database that has none (the configured one counts); later starts
    // make none.
    let made = svc.ensure_first_admin_token().await.context("making the first admin token")?;
    let admin_token_file = match &made {
        Some(t) => write_admin_token_file(&config.data_dir, t)?,
        None => None,
    };
    let admin_token_new = made.is_some();
    let admin_token = made.or_else(|| config.admin_token.clone());
    let token_watch = svc.start_token_watch().await.context("listening for token revocations")?;
    // The metrics recorder first, so that nothing counted from here on is lost.
    qcloud_api::metrics::handle();
    let (_hub, mut background) = svc.start_event_hub().await.context("starting the event hub")?;
    let scheduler = Scheduler::start(svc.clone(), registry, scheduler_config(&config)).await?;
    let replica_id = scheduler.replica_id();
    let mut api_cfg = api_config(&config);
    let stop = CancellationToken::new();
    let metrics_addr = match &config.metrics_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding --metrics-listen {a}"))?;
            let addr = l.local_addr()?;
            let app: axum::Router = qcloud_api::metrics::router(svc.clone(), replica_id);
            let graceful = {
                let stop = stop.clone();
                async move { stop.cancelled().await }
            };
            background.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).with_graceful_shutdown(graceful).await {
                    tracing::warn!(error = %e, "the metrics listener failed");
                }
            }));
            info!(%addr, "serving /metrics");
            Some(addr)
        }
        None => {
            api_cfg.metrics_replica = Some(replica_id);
            None
        }
    };
    let deliverer = tokio::spawn(deliver::run(svc.clone(), replica_id, deliver_cfg, stop.clone()));
    let app = qcloud_api::router(svc.clone(), &api_cfg);
    let graceful = {
        let stop = stop.clone();
        async move {
            tokio::select! { _ = shutdown => {}, _ = stop.cancelled() => {} }
        }
    };
    let limits = http_limits(&config);
    let http = tokio::spawn(http::serve(listener, app, limits, graceful));
    info!(%addr, "serving");
    Ok(Server {
        addr,
        admin_token,
        admin_token_new,
        admin_token_file,
        token_watch,
        replica_id,
        metrics_addr,
        background,
        deliverer,
        stop,
        http,
        scheduler,
        svc,
        private_pg,
    })
}

/// Name of the file, in the data folder, that holds the admin token made on first start.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Write the first admin token to `data_dir/admin-token`, readable by its owner only, when the
/// data folder exists (a private Postgres made it, or the operator did). `None`: no folder.
fn write_admin_token_file(data_dir: &Path, token: &str) -> anyhow::Result<Option<PathBuf>> {
    use std::io::Write;
    if !data_dir.is_dir() {
        return Ok(None);
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    let mut f = open.open(&path).with_context(|| format!("writing the admin token to {}", path.display()))?;
    // A file that existed keeps its mode through open(): set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{token}").with_context(|| format!("writing the admin token to {}", path.display()))?;
    Ok(Some(path))
}

/// A device as `qcloud devices list` shows it (its `--output json` shape: the field names).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceLine {
    pub name: String,
    pub kind: String,
    pub driver: String,
    pub status: String,
    pub num_qubits: i32,
    pub queue_length: i64,
    pub held_by_session: Option<Uuid>,
}

/// The database, for the one-shot commands (`migrate`, `devices`, `tokens`) and for tests.
pub struct Db {
    svc: Service,
    _private_pg: Option<pg::PrivatePostgres>,
}

impl Db {
    /// Connect to the configured database and run the migrations.
    pub async fn connect(config: &Config) -> anyhow::Result<Db> {
        let (svc, private) = connect(config, ServiceConfig::default(), &registry(config)).await?;
        Ok(Db { svc, _private_pg: private })
    }

    /// A new token (shown once; stored hashed).
    pub async fn create_token(&self, project: &str, user: &str, admin: bool) -> anyhow::Result<String> {
        Ok(self.svc.create_token(project, user, admin).await?)
    }

    /// Make a token: the token (shown once; stored hashed) and its view.
    pub async fn issue_token(&self, cmd: NewToken) -> anyhow::Result<IssuedToken> {
        Ok(self.svc.issue_token(cmd).await?)
    }

    /// Every token, newest first.
    pub async fn tokens(&self) -> anyhow::Result<Vec<TokenView>> {
        Ok(self.svc.list_tokens().await?)
    }

    /// Revoke a token: refused at once by every running replica.
    pub async fn revoke_token(&self, id: Uuid) -> anyhow::Result<TokenView> {
        Ok(self.svc.revoke_token(id).await?)
    }

    /// Create a user with a password (the Pasqal OAuth password grant), or reset its password.
    pub async fn set_user_password(&self, user: &str, project: &str, password: &str) -> anyhow::Result<()> {
        Ok(self.svc.set_user_password(user, project, password).await?)
    }

    pub async fn devices(&self) -> anyhow::Result<Vec<DeviceLine>> {
        Ok(self
            .svc
            .list_devices(&qcloud_service::auth::Principal::operator())
            .await?
            .into_iter()
            .map(|d| DeviceLine {
                name: d.name,
                kind: d.kind.to_string(),
                driver: d.driver.to_string(),
                status: d.status.to_string(),
                num_qubits: d.num_qubits,
                queue_length: d.queue_length,
                held_by_session: d.held_by_session,
            })
            .collect())
    }

    /// Add a device; returns its name and driver.
    pub async fn add_device(&self, cmd: AddDevice) -> anyhow::Result<(String, String)> {
        let v = self.svc.add_device(cmd).await?;
        Ok((v.name, v.driver.to_string()))
    }

    /// Make a device token for an agent device (shown once; stored hashed).
    pub async fn issue_device_token(&self, device: &str) -> anyhow::Result<(String, Uuid)> {
        let (token, view) = self.svc.issue_device_token(device).await?;
        Ok((token, view.id))
    }

    /// Set a device's status.
    pub async fn set_device_status(&self, name: &str, status: DeviceStatus) -> anyhow::Result<()> {
        self.svc.update_device(name, UpdateDevice::status(status)).await?;
        Ok(())
    }

    /// Make sure the devices exist, as `launch` does (`None`: the defaults into an empty database).
    pub async fn seed(&self, listed: Option<&[seed::DeviceSpec]>) -> anyhow::Result<seed::Seeded> {
        Ok(seed::seed(&self.svc, listed).await?)
    }

    pub async fn close(self) {
        self.svc.pool().close().await;
    }
}
