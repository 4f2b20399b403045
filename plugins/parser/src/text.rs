//! The seed document's plain-text format: SUMMARY, ISSUES and RECOMMENDATIONS
//! sections, items as bullets or numbers with `Label: value` lines under them.
//! Headings may be in any case and dressed in markdown (`**SUMMARY:**`,
//! `## Recommendations`), and a confidence may sit inline in an item's title.

use kubeskippy_plugin_sdk::types::{Issue, Severity};

use crate::target::Spec;
use crate::{Draft, DraftRecommendation, confidence_from_text, number_at_start, percent, severity};

#[derive(Clone, Copy)]
enum Section {
    Summary,
    Issues,
    Recommendations,
}

#[derive(Clone, Copy, PartialEq)]
enum Label {
    Title,
    Target,
    Reason,
    Risk,
    Confidence,
    Action,
    Container,
    Replicas,
    Severity,
    Impact,
    RootCause,
}

/// The draft the sections describe, or None when the reply has none of them.
pub(crate) fn draft(reply: &str) -> Option<Draft> {
    let mut section = None;
    let mut summary: Vec<&str> = Vec::new();
    let mut issues = Items::default();
    let mut recommendations = Items::default();
    for line in reply.lines() {
        let mut content = line.trim();
        if content.starts_with("```") {
            continue;
        }
        if let Some((found, rest)) = heading(content) {
            section = Some(found);
            if rest.is_empty() {
                continue;
            }
            content = rest;
        }
        match section {
            Some(Section::Summary) if !content.is_empty() => summary.push(content),
            Some(Section::Issues) => issues.feed(content),
            Some(Section::Recommendations) => recommendations.feed(content),
            Some(Section::Summary) | None => {}
        }
    }
    section?;
    let issues: Vec<Issue> = issues.items.into_iter().filter_map(issue).collect();
    let mut summary = summary.join("\n");
    if summary.is_empty() {
        summary = issues
            .first()
            .map(|issue| issue.title.clone())
            .unwrap_or_default();
    }
    Some(Draft {
        summary,
        issues,
        recommendations: recommendations
            .items
            .into_iter()
            .map(recommendation)
            .filter(|recommendation| !recommendation.is_blank())
            .collect(),
    })
}

fn heading(line: &str) -> Option<(Section, &str)> {
    let is_decoration = |c: char| matches!(c, '#' | '*' | '_') || c.is_whitespace();
    let stripped = line.trim_start_matches(is_decoration);
    let (label, rest) = stripped.split_once(':').unwrap_or((stripped, ""));
    let section = match normalise(label.trim_matches(is_decoration)).as_str() {
        "summary" | "analysis summary" | "executive summary" => Section::Summary,
        "issues" | "detected issues" | "issues detected" | "identified issues"
        | "issues identified" | "problems" => Section::Issues,
        "recommendations" | "recommended actions" | "actions" => Section::Recommendations,
        _ => return None,
    };
    Some((section, rest.trim_start_matches(is_decoration).trim_end()))
}

/// Lowercase words separated by single spaces, so labels compare whatever the
/// model's spacing, case and hyphenation.
fn normalise(label: &str) -> String {
    label
        .split(|c: char| c.is_whitespace() || matches!(c, '-' | '_'))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn field(content: &str) -> Option<(Label, String)> {
    let (label, value) = content.split_once(':')?;
    let label = match normalise(label).as_str() {
        "title" | "issue" | "recommendation" | "description" => Label::Title,
        "target" | "target resource" | "target object" => Label::Target,
        "reason" | "rationale" | "justification" | "why" => Label::Reason,
        "risk" | "risks" | "risk level" => Label::Risk,
        "confidence" | "confidence level" | "confidence score" => Label::Confidence,
        "action" | "action type" => Label::Action,
        "container" => Label::Container,
        "replicas" => Label::Replicas,
        "severity" => Label::Severity,
        "impact" => Label::Impact,
        "root cause" | "rootcause" | "cause" => Label::RootCause,
        _ => return None,
    };
    Some((label, value.trim().to_string()))
}

/// Whether the line opens a list item (a bullet or a number), and its text
/// without the marker and without bold markers.
fn strip_marker(line: &str) -> (bool, String) {
    let line = line.trim_start_matches('#').trim_start();
    let bullet = ['-', '*', '•', '+', '–'].iter().find_map(|&bullet| {
        line.strip_prefix(bullet)
            .filter(|rest| rest.starts_with(char::is_whitespace))
    });
    let content = bullet.unwrap_or(line).replace('*', "");
    let content = content.trim();
    let digits = content
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(content.len());
    let numbered = content
        .get(digits..)
        .filter(|_| (1..=3).contains(&digits))
        .and_then(|rest| rest.strip_prefix(['.', ')']))
        .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
    match numbered {
        Some(rest) => (true, rest.trim().to_string()),
        None => (bullet.is_some(), content.to_string()),
    }
}

#[derive(Default)]
struct Item {
    title: String,
    fields: Vec<(Label, String)>,
}

/// The items of an ISSUES or RECOMMENDATIONS section, fed one line at a time.
#[derive(Default)]
struct Items {
    items: Vec<Item>,
    after_blank: bool,
    /// Whether items here open with bullets or numbers; then a paragraph after
    /// a blank line is closing prose, not another item.
    bulleted: bool,
}

impl Items {
    fn feed(&mut self, line: &str) {
        let after_blank = std::mem::replace(&mut self.after_blank, line.is_empty());
        let (marked, content) = strip_marker(line);
        if content.is_empty() {
            return;
        }
        if let Some((label, value)) = field(&content) {
            // A label the current item already has begins the next item, for
            // lists written as fields only.
            match self.items.last_mut() {
                Some(item) if !item.fields.iter().any(|(seen, _)| *seen == label) => {
                    item.fields.push((label, value));
                }
                _ => self.items.push(Item {
                    title: String::new(),
                    fields: vec![(label, value)],
                }),
            }
            return;
        }
        if marked || self.items.is_empty() || (after_blank && !self.bulleted) {
            self.bulleted |= marked;
            self.items.push(Item {
                title: content,
                fields: Vec::new(),
            });
        } else if !after_blank && let Some(item) = self.items.last_mut() {
            // A wrapped line continues whatever it follows.
            let continued = match item.fields.last_mut() {
                Some((_, value)) => value,
                None => &mut item.title,
            };
            if !continued.is_empty() {
                continued.push(' ');
            }
            continued.push_str(&content);
        }
    }
}

fn issue(item: Item) -> Option<Issue> {
    let mut issue = Issue {
        title: item.title,
        severity: Severity::Medium,
        impact: String::new(),
        root_cause: String::new(),
    };
    for (label, value) in item.fields {
        match label {
            Label::Title if issue.title.is_empty() => issue.title = value,
            Label::Severity => issue.severity = severity(&value),
            Label::Impact => issue.impact = value,
            Label::RootCause => issue.root_cause = value,
            _ => {}
        }
    }
    let empty = issue.title.is_empty() && issue.impact.is_empty() && issue.root_cause.is_empty();
    (!empty).then_some(issue)
}

fn recommendation(item: Item) -> DraftRecommendation {
    let (description, inline_confidence) = inline_confidence(&item.title);
    let mut draft = DraftRecommendation {
        description,
        confidence: inline_confidence.unwrap_or_default(),
        ..Default::default()
    };
    for (label, value) in item.fields {
        match label {
            Label::Title if draft.description.is_empty() => draft.description = value,
            Label::Target => draft.target = Spec::Text(value),
            Label::Reason => draft.reason = value,
            Label::Risk => draft.risk = value,
            Label::Confidence => {
                if let Some(confidence) = confidence_from_text(&value) {
                    draft.confidence = confidence;
                }
            }
            Label::Action => draft.action = value,
            Label::Container => draft.container = value,
            Label::Replicas => draft.replicas = value,
            _ => {}
        }
    }
    draft
}

/// Splits "Patch cron job with connection limit (confidence: 0.92)" into the
/// title without the confidence and the confidence.
fn inline_confidence(title: &str) -> (String, Option<f64>) {
    let unchanged = || (title.trim().to_string(), None);
    const LABEL: &str = "confidence";
    // ASCII lowercasing keeps byte offsets, so positions found in `lower`
    // are valid in `title`.
    let lower = title.to_ascii_lowercase();
    let Some(at) = lower.find(LABEL) else {
        return unchanged();
    };
    let after_label = title.get(at + LABEL.len()..).unwrap_or_default();
    let value_text =
        after_label.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '='));
    let Some((value, length)) = number_at_start(value_text) else {
        return unchanged();
    };
    let after_number = value_text.get(length..).unwrap_or_default();
    let (value, percent_length) = percent(value, after_number);
    let before = title
        .get(..at)
        .unwrap_or_default()
        .trim_end_matches(|c: char| {
            c.is_whitespace() || matches!(c, '(' | '[' | '{' | '-' | '–' | '—' | ',' | ':' | '|')
        });
    let after = after_number
        .get(percent_length..)
        .unwrap_or_default()
        .trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, ')' | ']' | '}' | ':' | ',' | '-' | '–' | '—' | '.')
        });
    let description = [before, after.trim_end()]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    (description, Some(value))
}
