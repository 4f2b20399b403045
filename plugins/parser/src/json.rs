//! Replies in the JSON shape of the prompt plugin's reply schema, found wherever
//! they sit in the reply (markdown fences, prose before and after) and read
//! leniently.

use kubeskippy_plugin_sdk::types::{Issue, Severity};
use serde_json::{Map, Value};

use crate::actions::ResourceFields;
use crate::target::Spec;
use crate::{Draft, DraftRecommendation, confidence_from_text, severity};

/// Each retry inside an object that does not parse rescans the rest of the
/// reply, so the retries are few.
const MAX_RETRIES: usize = 8;

/// The first object in the reply that parses and has an analysis's fields,
/// or holds one (`{"analysis": {...}}`). Inside an object that does not parse
/// the search goes on, so that a stray `{` in prose does not swallow the JSON
/// after it; only objects with the analysis's fields count, so that one
/// recommendation of a truncated reply is not mistaken for the whole. The
/// error says why none was found.
pub(crate) fn find_analysis(reply: &str) -> Result<Map<String, Value>, String> {
    let bytes = reply.as_bytes();
    let mut position = 0;
    let mut retries = 0;
    let mut first_error = None;
    let mut parsed_other = false;
    while let Some(offset) = bytes
        .get(position..)
        .and_then(|rest| rest.iter().position(|&b| b == b'{'))
    {
        let start = position + offset;
        let end = balanced_end(bytes, start);
        // The scan stops only at ASCII braces, so both ends are char boundaries.
        let candidate = reply
            .get(start..end.unwrap_or(bytes.len()))
            .unwrap_or_default();
        match serde_json::from_str::<Value>(candidate) {
            Ok(value) => match analysis_in(value) {
                Some(analysis) => return Ok(analysis),
                None => parsed_other = true,
            },
            Err(error) => {
                first_error.get_or_insert_with(|| describe(&error, reply, start));
                if retries < MAX_RETRIES {
                    retries += 1;
                    position = start + 1;
                    continue;
                }
            }
        }
        position = end.unwrap_or(bytes.len());
    }
    Err(match first_error {
        Some(why) => format!("the model's reply has a JSON object that does not parse: {why}"),
        None if parsed_other => {
            "the model's reply has a JSON object without summary, issues or recommendations"
                .to_string()
        }
        None => "the model's reply has neither a JSON object nor SUMMARY/RECOMMENDATIONS sections"
            .to_string(),
    })
}

/// serde_json's recursion limit bounds the depth of this search.
fn analysis_in(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(object) if looks_like_analysis(&object) => Some(object),
        Value::Object(object) => object.into_iter().find_map(|(_, value)| analysis_in(value)),
        Value::Array(items) => items.into_iter().find_map(analysis_in),
        _ => None,
    }
}

/// The index just past the `}` that closes the `{` at `start`, skipping braces
/// inside JSON strings; None when the reply ends first.
fn balanced_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (index, &byte) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// serde_json counts lines and columns from the start of the candidate; the
/// operator reads the whole reply, so the position is moved to match it.
fn describe(error: &serde_json::Error, reply: &str, start: usize) -> String {
    let message = error.to_string();
    if error.line() == 0 {
        return message;
    }
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    let before = reply.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + error.line();
    let column = if error.line() == 1 {
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        start.saturating_sub(line_start) + error.column()
    } else {
        error.column()
    };
    format!("{message} at line {line} column {column}")
}

fn looks_like_analysis(object: &Map<String, Value>) -> bool {
    ["summary", "issues", "recommendations"]
        .iter()
        .any(|name| field(object, name).is_some())
}

/// A field by name, forgiving case and separators (`root_cause`, `rootCause`,
/// `Root Cause`); `name` is given lowercase without separators.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| {
                key.chars()
                    .filter(|c| !matches!(c, '_' | '-' | ' '))
                    .map(|c| c.to_ascii_lowercase())
                    .eq(name.chars())
            })
            .map(|(_, value)| value)
    })
}

/// A field as text: strings as written, numbers and booleans as JSON, lists
/// joined, null as nothing.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.trim().to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| text(Some(item)))
            .filter(|item| !item.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Some(other) => other.to_string(),
    }
}

fn text_field(object: &Map<String, Value>, name: &str) -> String {
    text(field(object, name))
}

/// A list the model may have written as one item or left out.
fn list(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => &[],
        Some(one) => std::slice::from_ref(one),
    }
}

pub(crate) fn draft(object: &Map<String, Value>) -> Draft {
    Draft {
        summary: text_field(object, "summary"),
        issues: list(field(object, "issues"))
            .iter()
            .map(issue)
            .filter(|issue| {
                !(issue.title.is_empty() && issue.impact.is_empty() && issue.root_cause.is_empty())
            })
            .collect(),
        recommendations: list(field(object, "recommendations"))
            .iter()
            .map(recommendation)
            .filter(|recommendation| !recommendation.is_blank())
            .collect(),
    }
}

fn issue(value: &Value) -> Issue {
    let Value::Object(object) = value else {
        return Issue {
            title: text(Some(value)),
            severity: Severity::Medium,
            impact: String::new(),
            root_cause: String::new(),
        };
    };
    let root_cause = match text_field(object, "rootcause") {
        cause if cause.is_empty() => text_field(object, "cause"),
        cause => cause,
    };
    Issue {
        title: text_field(object, "title"),
        severity: severity(&text_field(object, "severity")),
        impact: text_field(object, "impact"),
        root_cause,
    }
}

fn recommendation(value: &Value) -> DraftRecommendation {
    let Value::Object(object) = value else {
        return DraftRecommendation {
            description: text(Some(value)),
            ..Default::default()
        };
    };
    let description = match text_field(object, "description") {
        description if description.is_empty() => text_field(object, "title"),
        description => description,
    };
    DraftRecommendation {
        action: text_field(object, "action"),
        description,
        target: target(field(object, "target")),
        container: text_field(object, "container"),
        replicas: text_field(object, "replicas"),
        resources: ResourceFields {
            memory_limit: text_field(object, "memorylimit"),
            memory_request: text_field(object, "memoryrequest"),
            cpu_limit: text_field(object, "cpulimit"),
            cpu_request: text_field(object, "cpurequest"),
        },
        patch: text_field(object, "patch"),
        reason: text_field(object, "reason"),
        risk: text_field(object, "risk"),
        confidence: confidence(field(object, "confidence")),
    }
}

fn target(value: Option<&Value>) -> Spec {
    match value {
        None | Some(Value::Null) => Spec::Missing,
        Some(Value::Object(object)) => Spec::Parts {
            kind: text_field(object, "kind"),
            namespace: text_field(object, "namespace"),
            name: text_field(object, "name"),
        },
        Some(other) => Spec::Text(text(Some(other))),
    }
}

/// Numbers pass through as the model wrote them; text is read like the plain
/// format's confidence; anything else is no confidence at all.
fn confidence(value: Option<&Value>) -> f64 {
    match value {
        Some(Value::Number(number)) => number.as_f64().unwrap_or_default(),
        Some(Value::String(text)) => confidence_from_text(text).unwrap_or_default(),
        _ => 0.0,
    }
}
