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
use qcloud::output::{self, OutputFormat, TokenLine};
use qcloud::{AddDevice, Config, Db, DeviceKind, DeviceStatus, DriverKind, Flags, Machine};
use qcloud_service::auth::NewToken;
use qcloud_service::validate;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "qcloud", version, about = "A self-hosted QPU cloud: devices, sessions, batches and jobs on Postgres")]
struct Cli {
    #[command(flatten)]
    common: CommonFlags,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `serve`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Watch jobs of a running server.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Watch sessions of a running server.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Print the OpenAPI description of the native API (what `openapi.yaml` holds).
    Openapi,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// A live view of a job (state, queue position, elapsed time) from the event stream; exits 0
    /// when it completed, 1 when it failed or was canceled.
    Watch {
        id: Uuid,
        #[command(flatten)]
        remote: qcloud::watch::RemoteFlags,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// A live view of a session (state, jobs done) from the event stream; exits 0 when it closed
    /// `completed`.
    Watch {
        id: Uuid,
        #[command(flatten)]
        remote: qcloud::watch::RemoteFlags,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List devices (an aligned table, or `--output json`).
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
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
    /// Make a device token for an agent device (for `qcloud-agent --token`); printed on the last
    /// line, shown once, stored hashed. Revoke it with `qcloud tokens revoke ID`.
    Token { name: String },
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
        /// An admin token (manages devices and tokens).
        #[arg(long)]
        admin: bool,
        /// Lifetime, e.g. 30d, 12h, 90min, "1week 2days" [default: until revoked].
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// table: the token alone on a line; json: the token and its fields.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// List tokens: id, project, user, admin, state, times (never the tokens themselves).
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Revoke a token by id: every running replica refuses it at once.
    Revoke { id: Uuid },
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
    let watch = match &cli.command {
        Command::Jobs { command: JobsCommand::Watch { id, remote } } => Some((true, *id, remote.clone())),
        Command::Sessions { command: SessionsCommand::Watch { id, remote } } => Some((false, *id, remote.clone())),
        _ => None,
    };
    if let Some((is_job, id, remote)) = watch {
        // A client of a running server: no settings, no database.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let ok = rt.block_on(async {
            if is_job {
                qcloud::watch::job(&remote, id).await
            } else {
                qcloud::watch::session(&remote, id).await
            }
        })?;
        std::process::exit(if ok { 0 } else { 1 });
    }
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
        Command::Tokens { command } => tokens(&config, command).await,
        Command::Users { command: UsersCommand::Create { project, user, password } } => {
            let db = Db::connect(&config).await?;
            db.set_user_password(&user, &project, &password).await?;
            println!("user {user} can log in to project {project}");
            db.close().await;
            Ok(())
        }
        Command::Openapi | Command::Jobs { .. } | Command::Sessions { .. } => Ok(()),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let token_given = config.admin_token.is_some();
    let server = qcloud::launch(config, listener, shutdown_signal()).await?;
    println!("qcloud listening on {}", server.url());
    match (server.admin_token(), server.admin_token_is_new()) {
        (Some(token), true) => {
            println!("admin token (shown once; stored hashed): {token}");
            if let Some(path) = server.admin_token_file() {
                println!("admin token written to {} (mode 0600)", path.display());
            }
        }
        _ if token_given => println!("admin token: the one given in QCLOUD_ADMIN_TOKEN / --admin-token"),
        _ => println!(
            "admin token: the database has one already; make another with \
             `qcloud tokens create --project admin --user NAME --admin`"
        ),
    }
    println!("replica: {}", server.replica_id());
    print_qiskit_settings(&server.url());
    let url = server.url();
    println!("Pulser / pasqal-cloud: Endpoints(core=\"{url}/pasqal/core-fast\", account=\"{url}/pasqal/account\"),");
    println!("  a TokenProvider returning a qcloud token (`qcloud tokens create`), project_id from");
    println!("  GET {url}/pasqal/account/api/v1/projects; or log in with TokenProviderConf(token_endpoint=\"{url}/pasqal/oauth/token\")");
    server.wait().await
}

/// What a Qiskit user exports to reach this server with the unmodified qiskit-ibm-runtime client
/// (the IBM facade under `/ibm`; README section "Qiskit").
fn print_qiskit_settings(url: &str) {
    let url = url.trim_end_matches('/');
    println!("Qiskit (qiskit-ibm-runtime): export these, then QiskitRuntimeService() connects here:");
    println!("  export IAM_URL={url}/ibm GLOBAL_SEARCH_URL={url}/ibm GLOBAL_CATALOG_URL={url}/ibm/catalog");
    println!("  export QISKIT_IBM_URL={url}/ibm/experimental/api/v1 QISKIT_IBM_CHANNEL=ibm_quantum_platform");
    println!("  export QISKIT_IBM_TOKEN=<a qcloud token: qcloud tokens create --project P --user U>");
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
        DevicesCommand::List { output } => {
            let devices = db.devices().await?;
            match output {
                OutputFormat::Table => println!("{}", output::devices_table(&devices)),
                OutputFormat::Json => println!("{}", output::json(&devices)),
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
        DevicesCommand::Token { name } => {
            let (token, id) = db.issue_device_token(&name).await?;
            println!("device token {id} for {name} (agent routes only; revoke with `qcloud tokens revoke {id}`):");
            println!("{token}");
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

async fn tokens(config: &Config, command: TokensCommand) -> anyhow::Result<()> {
    let db = Db::connect(config).await?;
    let now = chrono::Utc::now();
    match command {
        TokensCommand::Create { project, user, admin, expires_in, output } => {
            let issued = db.issue_token(NewToken { project, user, admin, expires_in }).await?;
            match output {
                OutputFormat::Table => println!("{}", issued.token),
                OutputFormat::Json => {
                    let mut v = serde_json::to_value(TokenLine::new(issued.view, now))?;
                    v["token"] = issued.token.into();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
            }
        }
        TokensCommand::List { output } => {
            let lines: Vec<TokenLine> = db.tokens().await?.into_iter().map(|t| TokenLine::new(t, now)).collect();
            match output {
                OutputFormat::Table => println!("{}", output::tokens_table(&lines)),
                OutputFormat::Json => println!("{}", output::json(&lines)),
            }
        }
        TokensCommand::Revoke { id } => {
            let t = db.revoke_token(id).await?;
            println!("revoked token {} ({} in {})", t.id, t.user, t.project);
        }
    }
    db.close().await;
    Ok(())
}
