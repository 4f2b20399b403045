//! A restart budget: denies restarting a workload or evicting a pod when that
//! cannot help.
//!
//! - When the incident's containers were last OOM-killed, a restart starts the
//!   same process under the same limit: it will be killed again. The limit has
//!   to change (a resource patch), so restart and delete-pod are denied.
//! - When the incident's pods have together restarted `restartBudget.maxRestarts`
//!   times or more (default 10), the crash loop has already restarted them
//!   enough: another restart spends the budget without fixing the cause.
//!
//! Everything else is allowed; the default validator, which runs first, owns
//! the other rules. Configuration keys: `restartBudget.maxRestarts` (default
//! 10), `restartBudget.allowOnOom` (`true` to let restarts through after OOM
//! kills; default `false`).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "validator-plugin",
});

use exports::kubeskippy::plugin::safety_validator::Guest;
use kubeskippy::plugin::host;
use kubeskippy::plugin::types::{Action, Incident, Recommendation, ReviewContext, Verdict};

const DEFAULT_MAX_RESTARTS: u32 = 10;

struct Component;

impl Guest for Component {
    fn validate(recommendation: Recommendation, incident: Incident, _: ReviewContext) -> Verdict {
        judge(&recommendation, &incident, &|key| host::config(key))
    }
}

export!(Component);

/// The rules, with configuration passed in so that tests run them natively.
pub fn judge(
    recommendation: &Recommendation,
    incident: &Incident,
    config: &dyn Fn(&str) -> Option<String>,
) -> Verdict {
    let (max_restarts, allow_on_oom) = match settings(config) {
        Ok(settings) => settings,
        Err(why) => return Verdict::Deny(format!("restart budget misconfigured: {why}")),
    };
    let verb = match recommendation.action {
        Action::Restart => "restarting",
        Action::DeletePod => "evicting a pod",
        _ => return Verdict::Allow,
    };
    let oom_killed: Vec<&str> = incident
        .pods
        .iter()
        .flat_map(|pod| &pod.containers)
        .filter(|container| container.last_termination_reason.as_deref() == Some("OOMKilled"))
        .map(|container| container.name.as_str())
        .collect();
    if !allow_on_oom && !oom_killed.is_empty() {
        return Verdict::Deny(format!(
            "{verb} cannot help: container {} was OOM-killed and would run under the same limit",
            oom_killed[0]
        ));
    }
    let restarts: u32 = incident.pods.iter().map(|pod| pod.restart_count).sum();
    if restarts >= max_restarts {
        return Verdict::Deny(format!(
            "{verb} is over the restart budget: the pods have restarted {restarts} times (budget {max_restarts})"
        ));
    }
    Verdict::Allow
}

fn settings(config: &dyn Fn(&str) -> Option<String>) -> Result<(u32, bool), String> {
    let max_restarts = match config("restartBudget.maxRestarts") {
        None => DEFAULT_MAX_RESTARTS,
        Some(text) => text.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!("config restartBudget.maxRestarts must be a positive integer, got {text:?}")
        })?,
    };
    let allow_on_oom = match config("restartBudget.allowOnOom").as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "config restartBudget.allowOnOom must be true or false, got {other:?}"
            ));
        }
    };
    Ok((max_restarts, allow_on_oom))
}

#[cfg(test)]
mod tests;
