//! The server's settings, layered: built-in defaults < settings file (`qcloud.toml`) < environment
//! (`QCLOUD_*`, `DATABASE_URL`, `RUST_LOG`) < command-line flags.
//!
//! The settings file is the one named by `--config PATH` or `QCLOUD_CONFIG`, else `qcloud.toml`
//! in the working directory when there is one. Its keys are the flags' names in snake_case, with
//! the flags' units (TTLs in seconds, `*_ms` in milliseconds); an unknown key is an error that
//! names it. Relative paths in the file (`data_dir`, `devices_file`, `webhook_ca_cert`) are
//! relative to the file.
//!
//! [`Config::load`] reads all layers; [`Config::from_flags`] reads defaults and flags only (what an
//! in-process test wants: nothing from the machine it runs on).

use clap::Args;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the settings file looked for in the working directory.
pub const CONFIG_FILE: &str = "qcloud.toml";
/// Name of the devices file looked for beside the settings file and in the working directory.
pub const DEVICES_FILE: &str = "devices.toml";
/// Suggested data folder of the private Postgres, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = crate::pg::DEFAULT_DATA_DIR;
/// The log filter when neither `log` nor `RUST_LOG` gives one.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,tower_http=warn";

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("settings file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("reading settings file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("settings file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("settings file {path}: unknown key `{key}` (known keys: {known})")]
    UnknownKey { path: PathBuf, key: String, known: String },
    /// A value of the wrong type, an unknown key, a file that is not TOML (figment names the key
    /// and where it came from: the file, the environment variable or the flag).
    #[error("{0}")]
    Layer(Box<figment::Error>),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Layer(Box::new(e))
    }
}

/// Format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of `qcloud serve` (and the database settings of the other commands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Postgres URL; without it: the local server, else a private one in `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Data folder of the private Postgres (used only when no database answers).
    pub data_dir: PathBuf,
    /// Connections in the pool.
    pub db_max_connections: u32,
    /// Run every statement with a generic plan (`plan_cache_mode = force_generic_plan` on the
    /// pool's connections) instead of Postgres's default re-planning.
    pub db_generic_plans: bool,
    /// Address to listen on (`launch` takes a bound listener; the CLI binds this one).
    pub listen: String,
    /// A first admin token (at least 16 characters), registered at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Seed no devices at all (neither the devices file nor the built-in defaults).
    pub no_seed: bool,
    /// The devices to make sure exist at start-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_file: Option<PathBuf>,
    /// Jobs this replica runs at once.
    pub workers: usize,
    /// Most completions recorded in one transaction (1: each job in its own).
    pub completion_batch: usize,
    /// Do not take part in leader election.
    pub no_leader: bool,
    /// Default interactive TTL of sessions, seconds.
    pub interactive_ttl: f64,
    /// Default max TTL of sessions, seconds.
    pub max_ttl: f64,
    /// A session with no job for this long closes, seconds.
    pub pending_ttl: f64,
    /// Largest TTL a request may ask for, seconds.
    pub max_request_ttl: f64,
    /// Default maximum execution time of a job, seconds.
    pub max_execution: f64,
    /// Worker lease on a running job, milliseconds.
    pub lease_ms: u64,
    /// Leader lease, milliseconds.
    pub leader_ttl_ms: u64,
    /// Scheduler tick, milliseconds.
    pub tick_ms: u64,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Longest wait for a complete request head (from accept, or from a request's first byte), seconds.
    pub header_read_timeout: f64,
    /// Longest a keep-alive connection may sit idle between requests, seconds.
    pub idle_timeout: f64,
    /// Longest wait for the next piece of a request body, seconds.
    pub body_timeout: f64,
    /// Longest a request may take from head to response, seconds.
    pub request_timeout: f64,
    /// Most HTTP connections open at once; more wait until one closes.
    pub max_connections: usize,
    /// How long an idempotency key names its job, seconds.
    pub idempotency_window: f64,
    /// An agent device whose agent is not heard from for this long goes offline, seconds.
    pub agent_offline_after: f64,
    /// Largest result an agent may post (after gzip decompression), bytes.
    pub agent_max_result_bytes: usize,
    /// Terminal jobs are deleted this long after they finished, seconds; 0 keeps them forever.
    pub job_retention: f64,
    /// Memory the simulations of this replica may hold at once, bytes; 0 = half of the machine's.
    pub sim_memory_budget: u64,
    /// How long shutdown waits for running jobs before handing them back, seconds.
    pub shutdown_grace: f64,
    /// Requests per second per caller (token principal); 0: no limit.
    pub rate_limit_per_second: f64,
    /// Requests a caller may send at once before the per-second rate applies.
    pub rate_limit_burst: u32,
    /// Rate-limit admins too.
    pub rate_limit_admins: bool,
    /// Hosts webhooks may reach besides public addresses: comma-separated CIDRs or host names
    /// (loopback, link-local and private ranges are refused otherwise).
    pub webhook_allow: String,
    /// A PEM file of CA certificates webhooks to https:// receivers trust besides the bundled
    /// Mozilla roots and the system's (a private CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_ca_cert: Option<PathBuf>,
    /// Longest wait for a webhook receiver's answer, seconds.
    pub webhook_timeout: f64,
    /// First webhook retry delay, seconds (doubled per attempt, with jitter).
    pub webhook_retry_base: f64,
    /// Longest webhook retry delay, seconds.
    pub webhook_retry_max: f64,
    /// How long a webhook delivery is retried before it is marked failed, seconds.
    pub webhook_give_up_after: f64,
    /// How long events (and finished webhook deliveries) are kept, seconds.
    pub event_retention: f64,
    /// Comment lines on an idle event stream every so many seconds.
    pub sse_keep_alive: f64,
    /// Serve `/metrics` on this address instead of the API port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG` syntax).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            db_max_connections: 32,
            db_generic_plans: true,
            listen: "127.0.0.1:8080".into(),
            admin_token: None,
            no_seed: false,
            devices_file: None,
            workers: 256,
            completion_batch: 64,
            no_leader: false,
            interactive_ttl: 60.0,
            max_ttl: 28_800.0,
            pending_ttl: 1_800.0,
            max_request_ttl: 86_400.0,
            max_execution: 10_800.0,
            lease_ms: 10_000,
            leader_ttl_ms: 5_000,
            tick_ms: 500,
            max_body_bytes: 16 << 20,
            header_read_timeout: 10.0,
            idle_timeout: 60.0,
            body_timeout: 30.0,
            request_timeout: 60.0,
            max_connections: 4096,
            idempotency_window: 86_400.0,
            agent_offline_after: 60.0,
            agent_max_result_bytes: 256 << 20,
            job_retention: 30.0 * 86_400.0,
            sim_memory_budget: 0,
            shutdown_grace: 10.0,
            rate_limit_per_second: 50.0,
            rate_limit_burst: 100,
            rate_limit_admins: false,
            webhook_allow: String::new(),
            webhook_ca_cert: None,
            webhook_timeout: 10.0,
            webhook_retry_base: 5.0,
            webhook_retry_max: 600.0,
            webhook_give_up_after: 86_400.0,
            event_retention: 604_800.0,
            sse_keep_alive: 15.0,
            metrics_listen: None,
            log_format: LogFormat::Text,
            log: None,
        }
    }
}

/// Kinds of values, for reading them from environment variables.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Number,
    Flag,
}

/// Every key with its environment variable(s) (first one wins) and kind.
const ENV_KEYS: &[(&str, &[&str], Kind)] = &[
    ("database_url", &["DATABASE_URL"], Kind::Text),
    ("data_dir", &["QCLOUD_DATA_DIR"], Kind::Text),
    ("db_max_connections", &["QCLOUD_DB_MAX_CONNECTIONS"], Kind::Number),
    ("db_generic_plans", &["QCLOUD_DB_GENERIC_PLANS"], Kind::Flag),
    ("listen", &["QCLOUD_LISTEN"], Kind::Text),
    ("admin_token", &["QCLOUD_ADMIN_TOKEN"], Kind::Text),
    ("no_seed", &["QCLOUD_NO_SEED"], Kind::Flag),
    ("devices_file", &["QCLOUD_DEVICES"], Kind::Text),
    ("workers", &["QCLOUD_WORKERS"], Kind::Number),
    ("completion_batch", &["QCLOUD_COMPLETION_BATCH"], Kind::Number),
    ("no_leader", &["QCLOUD_NO_LEADER"], Kind::Flag),
    ("interactive_ttl", &["QCLOUD_INTERACTIVE_TTL"], Kind::Number),
    ("max_ttl", &["QCLOUD_MAX_TTL"], Kind::Number),
    ("pending_ttl", &["QCLOUD_PENDING_TTL"], Kind::Number),
    ("max_request_ttl", &["QCLOUD_MAX_REQUEST_TTL"], Kind::Number),
    ("max_execution", &["QCLOUD_MAX_EXECUTION"], Kind::Number),
    ("lease_ms", &["QCLOUD_LEASE_MS"], Kind::Number),
    ("leader_ttl_ms", &["QCLOUD_LEADER_TTL_MS"], Kind::Number),
    ("tick_ms", &["QCLOUD_TICK_MS"], Kind::Number),
    ("max_body_bytes", &["QCLOUD_MAX_BODY_BYTES"], Kind::Number),
    ("header_read_timeout", &["QCLOUD_HEADER_READ_TIMEOUT"], Kind::Number),
    ("idle_timeout", &["QCLOUD_IDLE_TIMEOUT"], Kind::Number),
    ("body_timeout", &["QCLOUD_BODY_TIMEOUT"], Kind::Number),
    ("request_timeout", &["QCLOUD_REQUEST_TIMEOUT"], Kind::Number),
    ("max_connections", &["QCLOUD_MAX_CONNECTIONS"], Kind::Number),
    ("idempotency_window", &["QCLOUD_IDEMPOTENCY_WINDOW"], Kind::Number),
    ("agent_offline_after", &["QCLOUD_AGENT_OFFLINE_AFTER"], Kind::Number),
    ("agent_max_result_bytes", &["QCLOUD_AGENT_MAX_RESULT_BYTES"], Kind::Number),
    ("job_retention", &["QCLOUD_JOB_RETENTION"], Kind::Number),
    ("sim_memory_budget", &["QCLOUD_SIM_MEMORY_BUDGET"], Kind::Number),
    ("shutdown_grace", &["QCLOUD_SHUTDOWN_GRACE"], Kind::Number),
    ("rate_limit_per_second", &["QCLOUD_RATE_LIMIT_PER_SECOND"], Kind::Number),
    ("rate_limit_burst", &["QCLOUD_RATE_LIMIT_BURST"], Kind::Number),
    ("rate_limit_admins", &["QCLOUD_RATE_LIMIT_ADMINS"], Kind::Flag),
    ("webhook_allow", &["QCLOUD_WEBHOOK_ALLOW"], Kind::Text),
    ("webhook_ca_cert", &["QCLOUD_WEBHOOK_CA_CERT"], Kind::Text),
    ("webhook_timeout", &["QCLOUD_WEBHOOK_TIMEOUT"], Kind::Number),
    ("webhook_retry_base", &["QCLOUD_WEBHOOK_RETRY_BASE"], Kind::Number),
    ("webhook_retry_max", &["QCLOUD_WEBHOOK_RETRY_MAX"], Kind::Number),
    ("webhook_give_up_after", &["QCLOUD_WEBHOOK_GIVE_UP_AFTER"], Kind::Number),
    ("event_retention", &["QCLOUD_EVENT_RETENTION"], Kind::Number),
    ("sse_keep_alive", &["QCLOUD_SSE_KEEP_ALIVE"], Kind::Number),
    ("metrics_listen", &["QCLOUD_METRICS_LISTEN"], Kind::Text),
    ("log_format", &["QCLOUD_LOG_FORMAT"], Kind::Text),
    ("log", &["QCLOUD_LOG", "RUST_LOG"], Kind::Text),
];

/// The environment variable that names the settings file.
pub const CONFIG_ENV: &str = "QCLOUD_CONFIG";

/// The environment variable(s) of a key, for documentation and messages.
pub fn env_vars(key: &str) -> &'static [&'static str] {
    ENV_KEYS.iter().find(|(k, _, _)| *k == key).map(|(_, v, _)| *v).unwrap_or(&[])
}

/// The environment layer. Built from a list of variables so that tests need not touch the
/// process environment; each known variable is read with its key's kind, so a token made of
/// digits stays a string and `QCLOUD_NO_SEED=1` is a yes (as clap read them before).
struct EnvLayer {
    values: Dict,
}

impl EnvLayer {
    fn new(vars: &[(String, String)]) -> EnvLayer {
        let get = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut values = Dict::new();
        for (key, names, kind) in ENV_KEYS {
            let Some(raw) = names.iter().find_map(|n| get(n)) else { continue };
            let value = match kind {
                Kind::Text => Value::from(raw),
                // Parsed as a number when it is one; otherwise kept as text so that the error
                // shows what was given.
                Kind::Number => raw.parse::<Value>().unwrap_or_else(|_| Value::from(raw.clone())),
                Kind::Flag => match raw.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Value::from(true),
                    "" | "0" | "false" | "no" | "off" => Value::from(false),
                    _ => Value::from(raw),
                },
            };
            values.insert((*key).to_string(), value);
        }
        EnvLayer { values }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_profile, keys| {
            let key = keys.first().copied().unwrap_or_default();
            env_vars(key).join(" / ")
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The command-line flags. Unset flags are `None`, so that they do not hide the layers below.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct Flags {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    #[serde(flatten)]
    pub serve: ServeFlags,
}

/// The flags every command has (global: they may follow the subcommand).
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct CommonFlags {
    /// Settings file (TOML) [env: QCLOUD_CONFIG] [default: ./qcloud.toml if present]
    #[arg(long, value_name = "PATH", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Postgres URL; without it: the local server, else a private one in --data-dir [env: DATABASE_URL]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Data folder of the private Postgres, used only when no database answers [env: QCLOUD_DATA_DIR]
    /// [default: .qcloud/postgres]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Connections in the pool [env: QCLOUD_DB_MAX_CONNECTIONS] [default: 32]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_max_connections: Option<u32>,
    /// Log filter, RUST_LOG syntax [env: QCLOUD_LOG, RUST_LOG] [default: info,sqlx=warn,tower_http=warn]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Log line format [env: QCLOUD_LOG_FORMAT] [default: text]
    #[arg(long, value_enum, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// The flags only `serve` has.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct ServeFlags {
    /// Address to listen on; port 0 picks a free one (the bound address is printed) [env: QCLOUD_LISTEN]
    /// [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// An admin token to register at start (at least 16 characters); without it, a database with no
    /// admin token gets one, printed once [env: QCLOUD_ADMIN_TOKEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    /// Seed no devices (neither the devices file nor the built-in defaults) [env: QCLOUD_NO_SEED]
    #[arg(long, action = clap::ArgAction::SetTrue)]
    #[serde(skip_serializing_if = "is_false")]
    pub no_seed: bool,
    /// Devices to create at start-up when missing (TOML) [env: QCLOUD_DEVICES] [default:
    /// devices.toml beside the settings file or in the working directory, if present]
    #[arg(long = "devices", value_name = "PATH")]
    #[serde(rename = "devices_file", skip_serializing_if = "Option::is_none")]
    pub devices_file: Option<PathBuf>,
    /// Jobs this replica runs at once [env: QCLOUD_WORKERS] [default: 256]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Most job completions one transaction records; 1 records each job in its own
    /// [env: QCLOUD_COMPLETION_BATCH] [default: 64]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_batch: Option<usize>,
    /// Do not take part in leader election (a worker-only replica) [env: QCLOUD_NO_LEADER]
    #[arg(long, action = clap::ArgAction::SetTrue)]
    #[serde(skip_serializing_if = "is_false")]
    pub no_leader: bool,
    /// Default interactive TTL of sessions, seconds [env: QCLOUD_INTERACTIVE_TTL] [default: 60, IBM's]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactive_ttl: Option<f64>,
    /// Default max TTL of sessions, seconds [env: QCLOUD_MAX_TTL] [default: 28800, IBM's 8 h]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<f64>,
    /// A session with no job for this long closes, seconds [env: QCLOUD_PENDING_TTL] [default: 1800]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_ttl: Option<f64>,
    /// Largest TTL a request may ask for, seconds [env: QCLOUD_MAX_REQUEST_TTL] [default: 86400]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_ttl: Option<f64>,
    /// Default maximum execution time of a job, seconds [env: QCLOUD_MAX_EXECUTION] [default: 10800]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_execution: Option<f64>,
    /// Worker lease on a running job, milliseconds; a dead replica's jobs run again after it
    /// [env: QCLOUD_LEASE_MS] [default: 10000]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Leader lease, milliseconds [env: QCLOUD_LEADER_TTL_MS] [default: 5000]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_ttl_ms: Option<u64>,
    /// Scheduler tick (timers, recovery, sweep), milliseconds [env: QCLOUD_TICK_MS] [default: 500]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_ms: Option<u64>,
    /// Largest request body, bytes [env: QCLOUD_MAX_BODY_BYTES] [default: 16777216]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Longest wait for a complete request head, seconds [env: QCLOUD_HEADER_READ_TIMEOUT] [default: 10]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<f64>,
    /// Longest a keep-alive connection may sit idle, seconds [env: QCLOUD_IDLE_TIMEOUT] [default: 60]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
    /// Longest wait for the next piece of a request body, seconds [env: QCLOUD_BODY_TIMEOUT] [default: 30]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_timeout: Option<f64>,
    /// Longest a request may take, seconds [env: QCLOUD_REQUEST_TIMEOUT] [default: 60]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<f64>,
    /// Most HTTP connections open at once [env: QCLOUD_MAX_CONNECTIONS] [default: 4096]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// How long an idempotency key names its job, seconds [env: QCLOUD_IDEMPOTENCY_WINDOW]
    /// [default: 86400]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_window: Option<f64>,
    /// An agent device whose agent is not heard from for this long goes offline, seconds
    /// [env: QCLOUD_AGENT_OFFLINE_AFTER] [default: 60]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_offline_after: Option<f64>,
    /// Largest result an agent may post (after gzip decompression), bytes
    /// [env: QCLOUD_AGENT_MAX_RESULT_BYTES] [default: 268435456]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_max_result_bytes: Option<usize>,
    /// Terminal jobs are deleted this long after they finished, seconds; 0 keeps them forever
    /// [env: QCLOUD_JOB_RETENTION] [default: 2592000 (30 days)]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_retention: Option<f64>,
    /// Memory the simulations of this replica may hold at once, bytes; 0 = half of the machine's
    /// [env: QCLOUD_SIM_MEMORY_BUDGET] [default: 0]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_memory_budget: Option<u64>,
    /// How long shutdown waits for running jobs before handing them back, seconds
    /// [env: QCLOUD_SHUTDOWN_GRACE] [default: 10]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<f64>,
    /// Requests per second per caller (fractions allowed); 0 turns rate limiting off
    /// [env: QCLOUD_RATE_LIMIT_PER_SECOND] [default: 50]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
    /// Requests a caller may send at once before the per-second rate applies
    /// [env: QCLOUD_RATE_LIMIT_BURST] [default: 100]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    /// Rate-limit admin tokens too (they are not limited by default) [env: QCLOUD_RATE_LIMIT_ADMINS]
    #[arg(long, action = clap::ArgAction::SetTrue)]
    #[serde(skip_serializing_if = "is_false")]
    pub rate_limit_admins: bool,
    /// Hosts webhooks may reach besides public addresses, comma-separated CIDRs or host names, e.g.
    /// 127.0.0.1,10.0.0.0/8 [env: QCLOUD_WEBHOOK_ALLOW] [default: none]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_allow: Option<String>,
    /// A PEM file of CA certificates that webhooks to https:// receivers trust besides the bundled
    /// Mozilla roots and the system's [env: QCLOUD_WEBHOOK_CA_CERT] [default: none]
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_ca_cert: Option<PathBuf>,
    /// Longest wait for a webhook receiver, seconds [env: QCLOUD_WEBHOOK_TIMEOUT] [default: 10]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_timeout: Option<f64>,
    /// First webhook retry delay, seconds, doubled per attempt with jitter
    /// [env: QCLOUD_WEBHOOK_RETRY_BASE] [default: 5]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_retry_base: Option<f64>,
    /// Longest webhook retry delay, seconds [env: QCLOUD_WEBHOOK_RETRY_MAX] [default: 600]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_retry_max: Option<f64>,
    /// Retry a webhook delivery for this long, seconds, then mark it failed
    /// [env: QCLOUD_WEBHOOK_GIVE_UP_AFTER] [default: 86400]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_give_up_after: Option<f64>,
    /// Keep events this long, seconds [env: QCLOUD_EVENT_RETENTION] [default: 604800]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_retention: Option<f64>,
    /// Keep-alive comment interval of event streams, seconds [env: QCLOUD_SSE_KEEP_ALIVE] [default: 15]
    #[arg(long, allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sse_keep_alive: Option<f64>,
    /// Serve /metrics on this address instead of the API port [env: QCLOUD_METRICS_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where [`Config::load`] reads from besides the flags: the environment and the working directory.
#[derive(Debug, Clone)]
pub struct Machine {
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl Machine {
    /// This process's environment and working directory.
    pub fn current() -> Machine {
        Machine {
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// `#[derive(Parser)]` wrapper so that [`Config::from_flags`] can parse a flag list.
#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct FlagsOnly {
    #[command(flatten)]
    flags: Flags,
}

impl Config {
    /// Every layer: defaults < settings file < environment < flags, read from `machine`.
    pub fn load(flags: &Flags, machine: &Machine) -> Result<Config, ConfigError> {
        let file = match (&flags.common.config, machine.var(CONFIG_ENV)) {
            (Some(p), _) => Some(require(machine.cwd.join(p))?),
            (None, Some(p)) if !p.is_empty() => Some(require(machine.cwd.join(p))?),
            _ => Some(machine.cwd.join(CONFIG_FILE)).filter(|p| p.is_file()),
        };
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = &file {
            check_keys(f)?;
            figment = figment.merge(Toml::file_exact(f));
        }
        let figment = figment.merge(EnvLayer::new(&machine.env)).merge(Serialized::defaults(flags));
        let mut cfg: Config = figment.extract()?;
        // Paths given in the file are relative to the file; others to the working directory.
        let base = |key: &str| -> PathBuf {
            match figment.find_metadata(key).and_then(|m| m.source.as_ref()) {
                Some(Source::File(p)) => p.parent().map(Path::to_path_buf).unwrap_or_else(|| machine.cwd.clone()),
                _ => machine.cwd.clone(),
            }
        };
        if cfg.data_dir.is_relative() && figment.find_metadata("data_dir").is_some_and(is_file_source) {
            cfg.data_dir = base("data_dir").join(&cfg.data_dir);
        }
        cfg.devices_file = match cfg.devices_file.take() {
            Some(p) => Some(require(base("devices_file").join(p))?),
            None => {
                let beside = file.as_ref().and_then(|f| f.parent()).map(|d| d.join(DEVICES_FILE));
                beside.into_iter().chain([machine.cwd.join(DEVICES_FILE)]).find(|p| p.is_file())
            }
        };
        cfg.webhook_ca_cert = cfg.webhook_ca_cert.take().map(|p| base("webhook_ca_cert").join(p));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Defaults < `args` (flags as on the command line, e.g. `["--tick-ms", "100"]`): nothing is
    /// read from the environment or the disk. For tests that start servers in-process.
    pub fn from_flags<I, S>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let parsed = FlagsOnly::try_parse_from(args)
            .map_err(|e| ConfigError::Invalid { key: "flags", message: e.to_string() })?;
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::defaults(&parsed.flags))
            .extract()?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values no type can: positive durations, a token long enough, a valid filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("interactive_ttl", self.interactive_ttl),
            ("max_ttl", self.max_ttl),
            ("pending_ttl", self.pending_ttl),
            ("max_request_ttl", self.max_request_ttl),
            ("max_execution", self.max_execution),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("request_timeout", self.request_timeout),
            ("idempotency_window", self.idempotency_window),
            ("webhook_timeout", self.webhook_timeout),
            ("webhook_retry_base", self.webhook_retry_base),
            ("webhook_retry_max", self.webhook_retry_max),
            ("webhook_give_up_after", self.webhook_give_up_after),
            ("event_retention", self.event_retention),
            ("sse_keep_alive", self.sse_keep_alive),
            ("agent_offline_after", self.agent_offline_after),
        ] {
            seconds(key, v)?;
        }
        if !self.job_retention.is_finite() || self.job_retention < 0.0 {
            return Err(invalid(
                "job_retention",
                format!("must be 0 (keep forever) or more seconds, got {}", self.job_retention),
            ));
        }
        if !self.shutdown_grace.is_finite() || self.shutdown_grace < 0.0 {
            return Err(invalid("shutdown_grace", format!("must be 0 or more seconds, got {}", self.shutdown_grace)));
        }
        if !self.rate_limit_per_second.is_finite() || self.rate_limit_per_second < 0.0 {
            return Err(invalid(
                "rate_limit_per_second",
                format!("must be 0 (off) or more requests per second, got {}", self.rate_limit_per_second),
            ));
        }
        if self.rate_limit_burst == 0 {
            return Err(invalid("rate_limit_burst", "must be at least 1".into()));
        }
        if self.db_max_connections == 0 {
            return Err(invalid("db_max_connections", "must be at least 1".into()));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        if self.workers == 0 {
            return Err(invalid("workers", "must be at least 1".into()));
        }
        if self.completion_batch == 0 {
            return Err(invalid("completion_batch", "must be at least 1".into()));
        }
        if let Some(t) = &self.admin_token {
            if t.chars().count() < 16 {
                return Err(invalid(
                    "admin_token",
                    format!("must be at least 16 characters, got {}", t.chars().count()),
                ));
            }
        }
        qcloud_service::webhooks::WebhookPolicy::parse(&self.webhook_allow).map_err(|e| invalid("webhook_allow", e))?;
        if let Some(f) = &self.log {
            tracing_subscriber::EnvFilter::try_new(f)
                .map_err(|e| invalid("log", format!("not a valid filter ({e}): {f:?}")))?;
        }
        Ok(())
    }

    /// A TTL / timeout setting as a duration (validated: positive, finite; at least 1 ms).
    pub fn duration(key: &'static str, s: f64) -> Result<chrono::Duration, ConfigError> {
        seconds(key, s)
    }
}

/// Unknown keys and TOML syntax, checked on the file alone so that the message names the file
/// (after the merge, figment would only know the merged table).
fn check_keys(path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| ConfigError::Syntax { path: path.into(), message: e.to_string() })?;
    if let Some(key) = table.keys().find(|k| !ENV_KEYS.iter().any(|(known, _, _)| known == k)) {
        let known = ENV_KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>().join(", ");
        return Err(ConfigError::UnknownKey { path: path.into(), key: key.clone(), known });
    }
    Ok(())
}

fn is_file_source(m: &Metadata) -> bool {
    matches!(m.source, Some(Source::File(_)))
}

fn require(p: PathBuf) -> Result<PathBuf, ConfigError> {
    if p.is_file() {
        Ok(p)
    } else {
        Err(ConfigError::MissingFile { path: p })
    }
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

fn seconds(key: &'static str, s: f64) -> Result<chrono::Duration, ConfigError> {
    if !s.is_finite() || s <= 0.0 {
        return Err(invalid(key, format!("must be a positive number of seconds, got {s}")));
    }
    Ok(chrono::Duration::milliseconds((s * 1000.0).round().max(1.0) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> Flags {
        FlagsOnly::try_parse_from(args).unwrap().flags
    }

    fn machine(dir: &Path, env: &[(&str, &str)]) -> Machine {
        Machine { env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), cwd: dir.to_path_buf() }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn nothing_given_is_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load(&flags(&[]), &machine(dir.path(), &[])).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.listen, "127.0.0.1:8080");
        assert_eq!(cfg.workers, 256);
        assert_eq!(cfg.lease_ms, 10_000);
        assert_eq!((cfg.rate_limit_per_second, cfg.rate_limit_burst, cfg.rate_limit_admins), (50.0, 100, false));
    }

    #[test]
    fn rate_limits_from_file_environment_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), CONFIG_FILE, "rate_limit_per_second = 0.5\nrate_limit_burst = 3\n");
        let env = [("QCLOUD_RATE_LIMIT_ADMINS", "yes")];
        let cfg = Config::load(&flags(&["--rate-limit-burst", "7"]), &machine(dir.path(), &env)).unwrap();
        assert_eq!((cfg.rate_limit_per_second, cfg.rate_limit_burst, cfg.rate_limit_admins), (0.5, 7, true));
        let cfg = Config::load(&flags(&["--rate-limit-per-second", "0"]), &machine(dir.path(), &[])).unwrap();
        assert_eq!(cfg.rate_limit_per_second, 0.0, "0 is off, not an error");
    }

    #[test]
    fn file_then_environment_then_flag() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), CONFIG_FILE, "workers = 3\ntick_ms = 7\nlease_ms = 2000\ninteractive_ttl = 5.5\n");
        let env = [("QCLOUD_TICK_MS", "8"), ("QCLOUD_LEASE_MS", "3000")];
        let cfg = Config::load(&flags(&["--lease-ms", "4000"]), &machine(dir.path(), &env)).unwrap();
        assert_eq!(cfg.workers, 3, "file over default");
        assert_eq!(cfg.interactive_ttl, 5.5, "file over default");
        assert_eq!(cfg.tick_ms, 8, "environment over file");
        assert_eq!(cfg.lease_ms, 4000, "flag over environment");
        assert_eq!(cfg.max_ttl, 28_800.0, "untouched key keeps its default");
    }

    #[test]
    fn config_flag_and_env_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), CONFIG_FILE, "workers = 1\n");
        write(dir.path(), "a.toml", "workers = 2\n");
        write(dir.path(), "b.toml", "workers = 3\n");
        let m = machine(dir.path(), &[(CONFIG_ENV, "b.toml")]);
        assert_eq!(Config::load(&flags(&["--config", "a.toml"]), &m).unwrap().workers, 2);
        assert_eq!(Config::load(&flags(&[]), &m).unwrap().workers, 3);
        assert_eq!(Config::load(&flags(&[]), &machine(dir.path(), &[])).unwrap().workers, 1);
        let e = Config::load(&flags(&["--config", "nope.toml"]), &m).unwrap_err();
        assert!(matches!(e, ConfigError::MissingFile { .. }), "{e}");
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn unknown_key_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), CONFIG_FILE, "workers = 3\ninteractve_ttl = 5\n");
        let e = Config::load(&flags(&[]), &machine(dir.path(), &[])).unwrap_err().to_string();
        assert!(e.contains("unknown key `interactve_ttl`"), "{e}");
        assert!(e.contains(CONFIG_FILE), "says which file: {e}");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let m = machine(dir.path(), &[]);
        let e = Config::load(&flags(&["--max-ttl", "-5"]), &m).unwrap_err().to_string();
        assert_eq!(e, "max_ttl: must be a positive number of seconds, got -5");
        write(dir.path(), CONFIG_FILE, "pending_ttl = 0\n");
        let e = Config::load(&flags(&[]), &m).unwrap_err().to_string();
        assert_eq!(e, "pending_ttl: must be a positive number of seconds, got 0");
        write(dir.path(), CONFIG_FILE, "lease_ms = -1\n");
        let e = Config::load(&flags(&[]), &m).unwrap_err().to_string();
        assert!(e.contains("lease_ms") && e.contains("-1"), "{e}");
        write(dir.path(), CONFIG_FILE, "workers = \"many\"\n");
        let e = Config::load(&flags(&[]), &m).unwrap_err().to_string();
        assert!(e.contains("workers") && e.contains("many"), "{e}");
        write(dir.path(), CONFIG_FILE, "workers = [\n");
        let e = Config::load(&flags(&[]), &m).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "not TOML: {e}");
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        let e = Config::load(&flags(&[]), &machine(dir.path(), &[("QCLOUD_WORKERS", "lots")])).unwrap_err().to_string();
        assert!(e.contains("QCLOUD_WORKERS") && e.contains("lots"), "names the variable: {e}");
        let e = Config::load(&flags(&["--admin-token", "short"]), &m).unwrap_err().to_string();
        assert!(e.starts_with("admin_token: must be at least 16 characters"), "{e}");
        let e = Config::load(&flags(&["--log", "info,=[x"]), &m).unwrap_err().to_string();
        assert!(e.starts_with("log: not a valid filter"), "{e}");
        let e = Config::load(&flags(&["--shutdown-grace", "-1"]), &m).unwrap_err().to_string();
        assert_eq!(e, "shutdown_grace: must be 0 or more seconds, got -1");
        let e = Config::load(&flags(&["--rate-limit-per-second", "-1"]), &m).unwrap_err().to_string();
        assert_eq!(e, "rate_limit_per_second: must be 0 (off) or more requests per second, got -1");
        let e = Config::load(&flags(&["--rate-limit-burst", "0"]), &m).unwrap_err().to_string();
        assert_eq!(e, "rate_limit_burst: must be at least 1");
    }

    #[test]
    fn environment_values_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("QCLOUD_ADMIN_TOKEN", "1234567890123456"),
            ("QCLOUD_NO_SEED", "1"),
            ("QCLOUD_NO_LEADER", "false"),
            ("DATABASE_URL", "postgres://x@h/db"),
            ("RUST_LOG", "debug"),
            ("QCLOUD_LOG_FORMAT", "json"),
            ("QCLOUD_BIN", "unrelated variables are ignored"),
        ];
        let cfg = Config::load(&flags(&[]), &machine(dir.path(), &env)).unwrap();
        assert_eq!(cfg.admin_token.as_deref(), Some("1234567890123456"));
        assert!(cfg.no_seed);
        assert!(!cfg.no_leader);
        assert_eq!(cfg.database_url.as_deref(), Some("postgres://x@h/db"));
        assert_eq!(cfg.log.as_deref(), Some("debug"));
        assert_eq!(cfg.log_format, LogFormat::Json);
        // QCLOUD_LOG wins over RUST_LOG; a flag over both.
        let env = [("RUST_LOG", "debug"), ("QCLOUD_LOG", "warn")];
        assert_eq!(Config::load(&flags(&[]), &machine(dir.path(), &env)).unwrap().log.as_deref(), Some("warn"));
        let cfg = Config::load(&flags(&["--log", "error"]), &machine(dir.path(), &env)).unwrap();
        assert_eq!(cfg.log.as_deref(), Some("error"));
    }

    #[test]
    fn devices_file_is_found_and_paths_are_relative_to_the_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        write(&etc, "q.toml", "data_dir = \"pg\"\n");
        let m = machine(dir.path(), &[]);
        let cfg = Config::load(&flags(&["--config", "etc/q.toml"]), &m).unwrap();
        assert_eq!(cfg.data_dir, etc.join("pg"));
        assert_eq!(cfg.devices_file, None, "no devices file anywhere");
        write(dir.path(), DEVICES_FILE, "");
        let cfg = Config::load(&flags(&["--config", "etc/q.toml"]), &m).unwrap();
        assert_eq!(cfg.devices_file, Some(dir.path().join(DEVICES_FILE)), "the working directory's");
        write(&etc, DEVICES_FILE, "");
        let cfg = Config::load(&flags(&["--config", "etc/q.toml"]), &m).unwrap();
        assert_eq!(cfg.devices_file, Some(etc.join(DEVICES_FILE)), "the one beside the settings file first");
        write(&etc, "q.toml", "devices_file = \"mine.toml\"\n");
        let e = Config::load(&flags(&["--config", "etc/q.toml"]), &m).unwrap_err();
        assert!(e.to_string().contains(&etc.join("mine.toml").display().to_string()), "{e}");
        write(&etc, "mine.toml", "");
        let cfg = Config::load(&flags(&["--config", "etc/q.toml"]), &m).unwrap();
        assert_eq!(cfg.devices_file, Some(etc.join("mine.toml")));
        // A flag's path is relative to the working directory.
        write(dir.path(), "other.toml", "");
        let cfg = Config::load(&flags(&["--config", "etc/q.toml", "--devices", "other.toml"]), &m).unwrap();
        assert_eq!(cfg.devices_file, Some(dir.path().join("other.toml")));
    }

    #[test]
    fn from_flags_reads_nothing_else() {
        let cfg = Config::from_flags(["--no-seed", "--tick-ms", "100", "--interactive-ttl", "1"]).unwrap();
        assert!(cfg.no_seed);
        assert_eq!(cfg.tick_ms, 100);
        assert_eq!(cfg.interactive_ttl, 1.0);
        assert_eq!(cfg.workers, 256);
        let e = Config::from_flags(["--tick-ms", "soon"]).unwrap_err().to_string();
        assert!(e.contains("--tick-ms"), "{e}");
    }

    #[test]
    fn the_example_settings_file_is_valid_and_complete() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let example = std::fs::read_to_string(root.join("qcloud.example.toml")).unwrap();
        // As the README says: copied beside the example devices file, under the names it suggests.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), CONFIG_FILE, &example);
        std::fs::copy(root.join("devices.example.toml"), dir.path().join(DEVICES_FILE)).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let cfg = Config::load(
            &flags(&["--config", &dir.path().join(CONFIG_FILE).display().to_string()]),
            &machine(elsewhere.path(), &[]),
        )
        .unwrap();
        assert_eq!(cfg.devices_file, Some(dir.path().join(DEVICES_FILE)));
        assert_eq!(cfg.data_dir, dir.path().join(DEFAULT_DATA_DIR));
        assert_eq!(
            Config { devices_file: None, data_dir: Config::default().data_dir, ..cfg },
            Config::default(),
            "the example shows the defaults"
        );
        // Every key appears in the example (set or commented out) and has an environment variable.
        let all = Config {
            database_url: Some(String::new()),
            admin_token: Some(String::new()),
            devices_file: Some(PathBuf::new()),
            webhook_ca_cert: Some(PathBuf::new()),
            log: Some(String::new()),
            metrics_listen: Some(String::new()),
            ..Config::default()
        };
        let Value::Dict(_, keys) = Value::serialize(&all).unwrap() else { panic!("a dict") };
        assert_eq!(keys.len(), ENV_KEYS.len());
        for key in keys.keys() {
            assert!(example.contains(&format!("{key} = ")), "qcloud.example.toml lacks `{key}`");
            assert!(!env_vars(key).is_empty(), "`{key}` has no environment variable");
        }
    }
}
