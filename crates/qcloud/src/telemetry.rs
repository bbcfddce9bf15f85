//! The tracing subscriber: log lines on stderr, as text or JSON, filtered by the `log` setting
//! (`--log`, `QCLOUD_LOG`, `RUST_LOG`). Colour codes only when stderr is a terminal, so that log
//! files and collectors get plain text.

use crate::config::{LogFormat, DEFAULT_LOG_FILTER};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log filter {filter:?} is not valid: {source}")]
    Filter { filter: String, source: tracing_subscriber::filter::ParseError },
    #[error("a tracing subscriber is installed already: {0}")]
    Installed(String),
}

/// Install the global subscriber (once per process).
pub fn init(format: LogFormat, filter: Option<&str>) -> Result<(), TelemetryError> {
    let filter = filter.unwrap_or(DEFAULT_LOG_FILTER);
    let env_filter =
        EnvFilter::try_new(filter).map_err(|source| TelemetryError::Filter { filter: filter.into(), source })?;
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        // JSON never carries colour codes.
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    installed.map_err(|e| TelemetryError::Installed(e.to_string()))
}
