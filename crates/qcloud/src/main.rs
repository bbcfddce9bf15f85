//! `qcloud`: the command line. `serve` runs the HTTP API and the scheduler of one replica (any
//! number can share one database; the server itself is the library, `qcloud::launch`); `migrate`,
//! `devices` and `tokens` manage the database directly; `openapi` prints the API description.
//!
//! Settings: defaults < settings file (`qcloud.toml`, `--config`) < environment (`DATABASE_URL`,
//! `QCLOUD_*`) < flags; see `qcloud::config`.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use qcloud::config::{CommonFlags, ServeFlags};
use qcloud::{AddDevice, Config, Db, DeviceKind, DeviceStatus, DriverKind, Flags, Machine};
use qcloud_service::validate;

#[derive(Parser)]
#[command(name = "qcloud", version, about = "A self-hosted QPU cloud: devices, sessions, batches and jobs on Postgres")]
struct Cli {
    #[command(flatten)]
    common: CommonFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API + scheduler). With no database configured it uses the local
    /// Postgres if one answers, else starts a private one.
    Serve(ServeFlags),
    /// Apply the database migrations and exit.
    Migrate,
    /// List and manage devices.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Manage API tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Manage users who log in with a password (Pasqal's username/password flow).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Print the OpenAPI description of the native API (what `openapi.yaml` holds).
    Openapi,
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
        driver: DriverKind,
        /// gate | analog
        #[arg(long, default_value = "gate")]
        kind: DeviceKind,
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

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user with a password in a project (or reset the password of an existing user).
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        user: String,
        /// The password (at least 8 characters).
        #[arg(long, env = "QCLOUD_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", qcloud_api::openapi::yaml());
        return Ok(());
    }
    let serve = match &cli.command {
        Command::Serve(s) => s.clone(),
        _ => ServeFlags::default(),
    };
    let config = Config::load(&Flags { common: cli.common, serve }, &Machine::current())?;
    qcloud::telemetry::init(config.log_format, config.log.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            Db::connect(&config).await?.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Devices { command } => devices(&config, command).await,
        Command::Tokens { command: TokensCommand::Create { project, user, admin } } => {
            let db = Db::connect(&config).await?;
            println!("{}", db.create_token(&project, &user, admin).await?);
            db.close().await;
            Ok(())
        }
        Command::Users { command: UsersCommand::Create { project, user, password } } => {
            let db = Db::connect(&config).await?;
            db.set_user_password(&user, &project, &password).await?;
            println!("user {user} can log in to project {project}");
            db.close().await;
            Ok(())
        }
        Command::Openapi => Ok(()),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let token_given = config.admin_token.is_some();
    let server = qcloud::launch(config, listener, shutdown_signal()).await?;
    println!("qcloud listening on {}", server.url());
    if token_given {
        println!("admin token: the one given in QCLOUD_ADMIN_TOKEN / --admin-token");
    } else {
        println!("admin token: {}", server.admin_token());
    }
    println!("replica: {}", server.replica_id());
    let url = server.url();
    println!("Pulser / pasqal-cloud: Endpoints(core=\"{url}/pasqal/core-fast\", account=\"{url}/pasqal/account\"),");
    println!("  a TokenProvider returning a qcloud token (`qcloud tokens create`), project_id from");
    println!("  GET {url}/pasqal/account/api/v1/projects; or log in with TokenProviderConf(token_endpoint=\"{url}/pasqal/oauth/token\")");
    server.wait().await
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

async fn devices(config: &Config, command: DevicesCommand) -> anyhow::Result<()> {
    let db = Db::connect(config).await?;
    match command {
        DevicesCommand::List => {
            println!(
                "{:<24} {:<7} {:<12} {:<8} {:>7} {:>7}  held by",
                "name", "kind", "driver", "status", "qubits", "queue"
            );
            for d in db.devices().await? {
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
            let timing = parse("timing", timing)?.as_ref().map(validate::timing).transpose()?.unwrap_or_default();
            let config = parse("config", config)?.unwrap_or_else(|| serde_json::json!({}));
            let cmd = AddDevice { name, kind, driver, status: DeviceStatus::Online, num_qubits, timing, config };
            let (name, driver) = db.add_device(cmd).await?;
            println!("added device {name} ({driver} driver)");
        }
        DevicesCommand::Pause { name } => {
            db.set_device_status(&name, DeviceStatus::Paused).await?;
            println!("paused {name}");
        }
        DevicesCommand::Resume { name } => {
            db.set_device_status(&name, DeviceStatus::Online).await?;
            println!("resumed {name}");
        }
    }
    db.close().await;
    Ok(())
}
