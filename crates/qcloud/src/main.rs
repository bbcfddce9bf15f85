//! `qcloud`: the server and its command line. `serve` runs the HTTP API and the scheduler of one
//! replica (any number can share one database); `migrate`, `devices` and `tokens` manage the
//! database directly; `openapi` prints the API description.
//!
//! Configuration: defaults < environment (`DATABASE_URL`, `QCLOUD_*`) < flags.

mod pg;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use qcloud_api::ApiConfig;
use qcloud_core::rules::{SessionTtls, TtlPolicy};
use qcloud_devices::Registry;
use qcloud_scheduler::{Scheduler, SchedulerConfig};
use qcloud_service::devices::{AddDevice, UpdateDevice};
use qcloud_service::validate;
use qcloud_service::{Service, ServiceConfig};
use sqlx::postgres::PgPoolOptions;
use std::path::PathBuf;
use std::time::Duration;
use tracing::info;

#[derive(Parser)]
#[command(name = "qcloud", version, about = "A self-hosted QPU cloud: devices, sessions, batches and jobs on Postgres")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API + scheduler). With no database configured it uses the local
    /// Postgres if one answers, else starts a private one.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// List and manage devices.
    Devices {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Manage API tokens.
    Tokens {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Print the OpenAPI description of the native API (what `openapi.yaml` holds).
    Openapi,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Postgres URL; without it: the local server, else a private one in --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Data folder of the private Postgres (used only when no database answers).
    #[arg(long, env = "QCLOUD_DATA_DIR", default_value = pg::DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,
    /// Connections in the pool.
    #[arg(long, env = "QCLOUD_DB_MAX_CONNECTIONS", default_value_t = 32, global = true)]
    db_max_connections: u32,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "QCLOUD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// A first admin token (at least 16 characters), registered at start. Without it a new admin
    /// token is made and printed.
    #[arg(long, env = "QCLOUD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Do not seed the default devices into an empty database.
    #[arg(long, env = "QCLOUD_NO_SEED")]
    no_seed: bool,
    /// Jobs this replica runs at once.
    #[arg(long, env = "QCLOUD_WORKERS", default_value_t = 256)]
    workers: usize,
    /// Do not take part in leader election (a worker-only replica).
    #[arg(long, env = "QCLOUD_NO_LEADER")]
    no_leader: bool,
    /// Default interactive TTL of sessions, seconds (IBM: 60).
    #[arg(long, env = "QCLOUD_INTERACTIVE_TTL", default_value_t = 60.0)]
    interactive_ttl: f64,
    /// Default max TTL of sessions, seconds (IBM: 8 h).
    #[arg(long, env = "QCLOUD_MAX_TTL", default_value_t = 28_800.0)]
    max_ttl: f64,
    /// A session with no job for this long closes, seconds (IBM: 30 min).
    #[arg(long, env = "QCLOUD_PENDING_TTL", default_value_t = 1_800.0)]
    pending_ttl: f64,
    /// Largest TTL a request may ask for, seconds.
    #[arg(long, env = "QCLOUD_MAX_REQUEST_TTL", default_value_t = 86_400.0)]
    max_request_ttl: f64,
    /// Default maximum execution time of a job, seconds.
    #[arg(long, env = "QCLOUD_MAX_EXECUTION", default_value_t = 10_800.0)]
    max_execution: f64,
    /// Worker lease on a running job, milliseconds (a dead replica's jobs run again after it).
    #[arg(long, env = "QCLOUD_LEASE_MS", default_value_t = 10_000)]
    lease_ms: u64,
    /// Leader lease, milliseconds.
    #[arg(long, env = "QCLOUD_LEADER_TTL_MS", default_value_t = 5_000)]
    leader_ttl_ms: u64,
    /// Scheduler tick (timers, recovery, sweep), milliseconds.
    #[arg(long, env = "QCLOUD_TICK_MS", default_value_t = 500)]
    tick_ms: u64,
    /// Largest request body, bytes.
    #[arg(long, env = "QCLOUD_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// How long shutdown waits for running jobs before handing them back, seconds.
    #[arg(long, env = "QCLOUD_SHUTDOWN_GRACE", default_value_t = 10.0)]
    shutdown_grace: f64,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List devices.
    List,
    /// Add a device.
    Add {
        name: String,
        /// noop | statevector | analog | agent
        #[arg(long, default_value = "noop")]
        driver: String,
        /// gate | analog
        #[arg(long, default_value = "gate")]
        kind: String,
        #[arg(long, default_value_t = 32)]
        num_qubits: i32,
        /// Timing model as JSON, e.g. '{"setup_ms": 5, "per_shot_ms": 0.01}'.
        #[arg(long)]
        timing: Option<String>,
        /// Device config as JSON.
        #[arg(long)]
        config: Option<String>,
    },
    /// Pause a device: no new assignments; its running job finishes.
    Pause { name: String },
    /// Put a paused or offline device back online.
    Resume { name: String },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token for a user in a project and print it (it is stored hashed; shown once).
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        admin: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(db) => {
            let (svc, _pg) = connect(&db, ServiceConfig::default()).await?;
            drop(svc);
            println!("migrations applied");
            Ok(())
        }
        Command::Devices { db, command } => devices(db, command).await,
        Command::Tokens { db, command: TokensCommand::Create { project, user, admin } } => {
            let (svc, _pg) = connect(&db, ServiceConfig::default()).await?;
            println!("{}", svc.create_token(&project, &user, admin).await?);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", qcloud_api::openapi::yaml());
            Ok(())
        }
    }
}

/// Resolve the database (explicit, local, or private), connect, and run the migrations.
async fn connect(db: &DbArgs, cfg: ServiceConfig) -> anyhow::Result<(Service, Option<pg::PrivatePostgres>)> {
    let local = pg::resolve(db.database_url.clone(), &db.data_dir).await?;
    let pool = PgPoolOptions::new()
        .max_connections(db.db_max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&local.url)
        .await
        .context("connecting to Postgres")?;
    qcloud_store::MIGRATOR.run(&pool).await.context("running migrations")?;
    Ok((Service::new(pool, cfg), local.private))
}

fn seconds(name: &str, s: f64) -> anyhow::Result<chrono::Duration> {
    if !s.is_finite() || s <= 0.0 {
        bail!("{name} must be a positive number of seconds, got {s}");
    }
    Ok(chrono::Duration::milliseconds((s * 1000.0).round().max(1.0) as i64))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let max_request = seconds("--max-request-ttl", args.max_request_ttl)?;
    let cfg = ServiceConfig {
        ttl: TtlPolicy {
            default: SessionTtls {
                max_ttl: seconds("--max-ttl", args.max_ttl)?,
                interactive_ttl: seconds("--interactive-ttl", args.interactive_ttl)?,
                pending_ttl: seconds("--pending-ttl", args.pending_ttl)?,
            },
            max_max_ttl: max_request,
            max_interactive_ttl: max_request,
        },
        default_max_execution: seconds("--max-execution", args.max_execution)?,
        lease: chrono::Duration::milliseconds(args.lease_ms.max(100) as i64),
        max_payload_bytes: args.max_body_bytes,
        ..ServiceConfig::default()
    };
    let (svc, mut private_pg) = connect(&args.db, cfg).await?;
    if !args.no_seed {
        seed_devices(&svc).await?;
    }
    let admin_token = match &args.admin_token {
        Some(t) => {
            svc.register_token(t, "admin", "admin", true).await.context("registering QCLOUD_ADMIN_TOKEN")?;
            t.clone()
        }
        None => svc.create_token("admin", "admin", true).await?,
    };
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheduler = Scheduler::start(
        svc.clone(),
        Registry::default(),
        SchedulerConfig {
            workers: args.workers.max(1),
            tick: Duration::from_millis(args.tick_ms.max(10)),
            leader_ttl: Duration::from_millis(args.leader_ttl_ms.max(300)),
            shutdown_grace: Duration::from_secs_f64(args.shutdown_grace.max(0.0)),
            lead: !args.no_leader,
            ..SchedulerConfig::default()
        },
    )
    .await?;
    let app =
        qcloud_api::router(svc.clone(), &ApiConfig { max_body_bytes: args.max_body_bytes, ..ApiConfig::default() });
    println!("qcloud listening on http://{addr}");
    if args.admin_token.is_some() {
        println!("admin token: the one given in QCLOUD_ADMIN_TOKEN / --admin-token");
    } else {
        println!("admin token: {admin_token}");
    }
    println!("replica: {}", scheduler.replica_id());
    info!(%addr, "serving");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    info!("HTTP stopped; draining the scheduler");
    scheduler.shutdown().await;
    svc.pool().close().await;
    if let Some(pg) = private_pg.as_mut() {
        pg.stop();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The devices an empty database starts with: a few noop devices and a state-vector simulator.
async fn seed_devices(svc: &Service) -> anyhow::Result<()> {
    if !svc.list_devices().await?.is_empty() {
        return Ok(());
    }
    let mut seeds: Vec<AddDevice> =
        (1..=4).map(|i| AddDevice::new(format!("noop_{i}"), qcloud_core::DriverKind::Noop, 127)).collect();
    seeds.push(AddDevice::new("sim_statevector", qcloud_core::DriverKind::Statevector, 28));
    for d in seeds {
        match svc.add_device(d).await {
            Ok(d) => info!(device = %d.name, driver = %d.driver, "seeded device"),
            // Another replica seeded it first.
            Err(qcloud_service::ServiceError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn devices(db: DbArgs, command: DevicesCommand) -> anyhow::Result<()> {
    let (svc, _pg) = connect(&db, ServiceConfig::default()).await?;

    match command {
        DevicesCommand::List => {
            println!(
                "{:<24} {:<7} {:<12} {:<8} {:>7} {:>7}  held by",
                "name", "kind", "driver", "status", "qubits", "queue"
            );
            for d in svc.list_devices().await? {
                println!(
                    "{:<24} {:<7} {:<12} {:<8} {:>7} {:>7}  {}",
                    d.name,
                    d.kind,
                    d.driver,
                    d.status,
                    d.num_qubits,
                    d.queue_length,
                    d.held_by_session.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
                );
            }
        }
        DevicesCommand::Add { name, driver, kind, num_qubits, timing, config } => {
            let parse = |what: &str, s: Option<String>| -> anyhow::Result<Option<serde_json::Value>> {
                s.map(|s| serde_json::from_str(&s).with_context(|| format!("--{what} is not valid JSON"))).transpose()
            };
            let d = svc
                .add_device(AddDevice {
                    name,
                    kind: validate::enum_field("kind", &kind)?,
                    driver: validate::enum_field("driver", &driver)?,
                    status: qcloud_core::DeviceStatus::Online,
                    num_qubits,
                    timing: parse("timing", timing)?.as_ref().map(validate::timing).transpose()?.unwrap_or_default(),
                    config: parse("config", config)?.unwrap_or_else(|| serde_json::json!({})),
                })
                .await?;
            println!("added device {} ({} driver)", d.name, d.driver);
        }
        DevicesCommand::Pause { name } => {
            svc.update_device(&name, UpdateDevice::status(qcloud_core::DeviceStatus::Paused)).await?;
            println!("paused {name}");
        }
        DevicesCommand::Resume { name } => {
            svc.update_device(&name, UpdateDevice::status(qcloud_core::DeviceStatus::Online)).await?;
            println!("resumed {name}");
        }
    }
    Ok(())
}
