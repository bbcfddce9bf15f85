//! qcloud's server as a library: [`launch`] starts one replica (HTTP API + scheduler) on a
//! listener the caller holds, so tests and embedders run servers in-process; the `qcloud` binary
//! is a command line around it.
//!
//! All the wiring onto the service, scheduler and API crates lives in this file (and the device
//! seeding in [`seed`]): [`service_config`], [`connect`], [`launch`] and [`Db`].

#![forbid(unsafe_code)]

pub mod config;
mod pg;
pub mod seed;
pub mod telemetry;

pub use config::{Config, ConfigError, Flags, LogFormat, Machine};

use anyhow::Context;
use qcloud_api::ApiConfig;
use qcloud_core::rules::{SessionTtls, TtlPolicy};
use qcloud_devices::Registry;
use qcloud_scheduler::{Scheduler, SchedulerConfig};
pub use qcloud_service::devices::AddDevice;
use qcloud_service::devices::UpdateDevice;
pub use qcloud_service::{DeviceKind, DeviceStatus, DriverKind};
use qcloud_service::{Service, ServiceConfig};
use sqlx::postgres::PgPoolOptions;
use std::future::Future;
use std::net::SocketAddr;
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
        ..ServiceConfig::default()
    })
}

fn scheduler_config(c: &Config) -> SchedulerConfig {
    SchedulerConfig {
        workers: c.workers.max(1),
        tick: Duration::from_millis(c.tick_ms.max(10)),
        leader_ttl: Duration::from_millis(c.leader_ttl_ms.max(300)),
        shutdown_grace: Duration::try_from_secs_f64(c.shutdown_grace.max(0.0)).unwrap_or(Duration::MAX),
        lead: !c.no_leader,
        ..SchedulerConfig::default()
    }
}

/// Resolve the database (explicit, local, or private), connect, and run the migrations. The
/// private Postgres, when one was started, runs as long as the returned handle lives.
async fn connect(c: &Config, cfg: ServiceConfig) -> anyhow::Result<(Service, Option<pg::PrivatePostgres>)> {
    let local = pg::resolve(c.database_url.clone(), &c.data_dir).await?;
    let pool = PgPoolOptions::new()
        .max_connections(c.db_max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect(&local.url)
        .await
        .context("connecting to Postgres")?;
    qcloud_store::MIGRATOR.run(&pool).await.context("running migrations")?;
    Ok((Service::new(pool, cfg), local.private))
}

/// A running replica. [`Server::wait`] (or [`Server::shutdown`]) stops it cleanly; dropping it
/// without either leaves its tasks to the runtime.
pub struct Server {
    addr: SocketAddr,
    admin_token: String,
    replica_id: Uuid,
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

    /// The admin token: the configured one, or the one made at start.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
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
    // A bad devices file fails before anything is touched.
    let listed = match (&config.devices_file, config.no_seed) {
        (Some(path), false) => Some(seed::load_file(path)?),
        _ => None,
    };
    let addr = listener.local_addr().context("the listener has no local address")?;
    let (svc, private_pg) = connect(&config, svc_cfg).await?;
    if !config.no_seed {
        seed::seed(&svc, listed.as_deref()).await?;
    }
    let admin_token = match &config.admin_token {
        Some(t) => {
            svc.register_token(t, "admin", "admin", true).await.context("registering QCLOUD_ADMIN_TOKEN")?;
            t.clone()
        }
        None => svc.create_token("admin", "admin", true).await?,
    };
    let scheduler = Scheduler::start(svc.clone(), Registry::default(), scheduler_config(&config)).await?;
    let app =
        qcloud_api::router(svc.clone(), &ApiConfig { max_body_bytes: config.max_body_bytes, ..ApiConfig::default() });
    let stop = CancellationToken::new();
    let graceful = {
        let stop = stop.clone();
        async move {
            tokio::select! { _ = shutdown => {}, _ = stop.cancelled() => {} }
        }
    };
    let http = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(graceful).await });
    info!(%addr, "serving");
    Ok(Server { addr, admin_token, replica_id: scheduler.replica_id(), stop, http, scheduler, svc, private_pg })
}

/// A device as `qcloud devices list` shows it.
#[derive(Debug, Clone, PartialEq)]
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
        let (svc, private) = connect(config, ServiceConfig::default()).await?;
        Ok(Db { svc, _private_pg: private })
    }

    /// A new token (shown once; stored hashed).
    pub async fn create_token(&self, project: &str, user: &str, admin: bool) -> anyhow::Result<String> {
        Ok(self.svc.create_token(project, user, admin).await?)
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
