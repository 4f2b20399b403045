//! The default response parser. It turns the model's reply into an analysis,
//! accepting either the JSON the prompt plugin asks for or the seed document's
//! plain-text SUMMARY / ISSUES / RECOMMENDATIONS layout, and forgives what small
//! models get wrong: markdown fences, prose around the JSON, confidence written
//! as text, targets without a namespace or a name, and actions only described
//! in words.
//!
//! The parser does not judge. Out-of-range confidence, targets outside the
//! incident and unknown containers pass through unchanged so that the
//! validators, which own those rules, can refuse them with a reason.

#[cfg(target_arch = "wasm32")]
mod component;

mod actions;
mod json;
mod target;
#[cfg(test)]
mod tests;
mod text;

use kubeskippy_plugin_sdk::types::{Action, Analysis, Incident, Issue, Recommendation, Severity};

/// Far above any real reply; a larger one is a runaway generation, and refusing
/// it keeps the parser's work bounded.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Turns the model's raw reply into an analysis of `incident`; an unusable reply
/// is a one-line error saying what was wrong with it.
pub fn parse_response(reply: &str, incident: &Incident) -> Result<Analysis, String> {
    if reply.len() > MAX_REPLY_BYTES {
        return Err(format!(
            "the model's reply is {} bytes, over the 1 MiB limit",
            reply.len()
        ));
    }
    if reply.trim().is_empty() {
        return Err("the model's reply is empty".to_string());
    }
    let draft = match json::find_analysis(reply) {
        Ok(object) => json::draft(&object),
        // A truncated or malformed JSON reply may still carry the plain-text
        // sections; only when it does not is the JSON problem the one to report.
        Err(why) => text::draft(reply).ok_or(why)?,
    };
    draft.resolve(incident)
}

/// What the reply said, in either format, before targets and actions are
/// resolved against the incident.
struct Draft {
    summary: String,
    issues: Vec<Issue>,
    recommendations: Vec<DraftRecommendation>,
}

impl Draft {
    fn resolve(self, incident: &Incident) -> Result<Analysis, String> {
        let summary = self.summary.trim().to_string();
        if summary.is_empty() && self.recommendations.is_empty() {
            return Err("the model's reply has no summary and no recommendations".to_string());
        }
        Ok(Analysis {
            summary,
            issues: self.issues,
            recommendations: self
                .recommendations
                .into_iter()
                .map(|draft| draft.resolve(incident))
                .collect(),
        })
    }
}

/// One recommendation as the model wrote it. Empty strings stand for fields the
/// model left out.
#[derive(Default)]
struct DraftRecommendation {
    /// The `action` the model named: a keyword from the schema, or free text.
    action: String,
    /// What to do, in words: the JSON `description` or the plain-text item title.
    description: String,
    target: target::Spec,
    container: String,
    replicas: String,
    resources: actions::ResourceFields,
    /// A raw strategic-merge patch document.
    patch: String,
    reason: String,
    risk: String,
    confidence: f64,
}

impl DraftRecommendation {
    fn is_blank(&self) -> bool {
        self.action.trim().is_empty()
            && self.description.trim().is_empty()
            && self.reason.trim().is_empty()
    }

    fn resolve(self, incident: &Incident) -> Recommendation {
        let target = target::resolve(&self.target, incident);
        let action = actions::action(&self, &target, incident);
        let description = self.description.trim();
        let reason = self.reason.trim();
        // Advice has no typed action to carry what the model recommended, so the
        // description goes into the reason instead of being lost.
        let reason = match action {
            Action::None if !description.is_empty() && !reason.is_empty() => {
                format!("{description}: {reason}")
            }
            _ if reason.is_empty() => description.to_string(),
            _ => reason.to_string(),
        };
        Recommendation {
            action,
            target,
            reason,
            risk: self.risk.trim().to_string(),
            confidence: self.confidence,
        }
    }
}

/// Unknown or missing severities are medium: a reply's issues are context for
/// people, and dropping one over a misspelt severity would lose it.
fn severity(text: &str) -> Severity {
    let word = text
        .split(|c: char| !c.is_alphabetic())
        .find(|word| !word.is_empty())
        .unwrap_or_default();
    match word.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Medium,
    }
}

/// Models write confidence as `0.85`, `85%` or `0.85 (high)`: the first number
/// counts and a percent sign scales it. A bare number passes through as written
/// (85 stays 85) because judging its range is the validator's job.
fn confidence_from_text(text: &str) -> Option<f64> {
    let (value, rest) = find_number(text)?;
    Some(percent(value, rest).0)
}

/// Applies a `%` that follows a number; returns the value and how many bytes of
/// `rest` the sign took.
fn percent(value: f64, rest: &str) -> (f64, usize) {
    let trimmed = rest.trim_start();
    if trimmed.starts_with('%') {
        (value / 100.0, rest.len() - trimmed.len() + 1)
    } else {
        (value, 0)
    }
}

/// The first number in `text` and the text after it.
fn find_number(text: &str) -> Option<(f64, &str)> {
    let (start, _) = text.char_indices().find(|&(index, c)| {
        c.is_ascii_digit()
            || (c == '.'
                && text
                    .get(index + 1..)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())))
    })?;
    let start = match text.get(..start) {
        Some(before) if before.ends_with('-') => start - 1,
        _ => start,
    };
    let from_start = text.get(start..)?;
    let (value, length) = number_at_start(from_start)?;
    Some((value, from_start.get(length..).unwrap_or_default()))
}

/// A decimal number (optional sign, fraction and exponent) at the start of
/// `text`, with its length in bytes; None unless it is finite.
fn number_at_start(text: &str) -> Option<(f64, usize)> {
    let bytes = text.as_bytes();
    let digits_after = |mut at: usize| {
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        at
    };
    let mut end = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let whole_start = end;
    end = digits_after(end);
    let mut digit_count = end - whole_start;
    if bytes.get(end) == Some(&b'.') {
        let fraction_end = digits_after(end + 1);
        digit_count += fraction_end - end - 1;
        end = fraction_end;
    }
    if digit_count == 0 {
        return None;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'-' | b'+')));
        let exponent_end = digits_after(end + 1 + sign);
        if exponent_end > end + 1 + sign {
            end = exponent_end;
        }
    }
    let value: f64 = text.get(..end)?.parse().ok()?;
    value.is_finite().then_some((value, end))
}
