//! How KubeSkippy writes and reads the small texts it shares with people and
//! the API server: one-line messages, durations and timestamps.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// Library errors (YAML, serde, the API server's) span lines and may quote
/// what they were given; ours are one line each, with credentials redacted.
pub fn one_line(text: &str) -> String {
    super::untrusted::redact(&text.split_whitespace().collect::<Vec<_>>().join(" ")).into_owned()
}

/// An error and every cause under it, as one line: `a: b: c`. For logs and
/// statuses, which show one string where a chain was kept.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    one_line(&text)
}

/// `30s`, `1m`, `500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit such as 30s")
    })?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!(
            "invalid duration {text:?}: must be above zero and at most 24h"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Status timestamps: RFC 3339 in UTC, whole seconds, as Kubernetes writes them.
pub fn stamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_reads_with_its_causes_on_one_line() {
        let io = std::io::Error::other("connection refused\nby peer");
        #[derive(Debug, thiserror::Error)]
        #[error("plugin directory /plugins")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            super::with_causes(&Outer(io)),
            "plugin directory /plugins: connection refused by peer"
        );
    }
}
