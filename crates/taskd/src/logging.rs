//! Structured logs on stderr (stdout is for what a user asked to see).

use tracing_subscriber::EnvFilter;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `RUST_LOG` picks the levels (default `info`).
///
/// A line that cannot be written (stderr on a full disk, a closed pipe) is dropped. By
/// default the subscriber reports such a failure with `eprintln!`, which panics when
/// stderr itself fails: the panic unwound through the request that logged, and a write
/// that had succeeded got no answer.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
