//! `--log-format text|json`. JSON lines carry each event's fields at the top
//! level and the fields of the span it happened in under `span`: the
//! evaluation of an incident and the reconcile of a HealingAction run in
//! spans that name the incident, the action, the policy and the target, so
//! one incident is followed from trigger to outcome with
//! `jq 'select(.span.incident == "ID" or .incident == "ID")'`.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the process's log subscriber, writing to stderr. `KUBESKIPPY_LOG`
/// (an `EnvFilter` directive) overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBESKIPPY_LOG")
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
