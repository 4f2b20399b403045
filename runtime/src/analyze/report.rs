//! Output of `kubeskippy analyze`: the stable JSON contract (also as YAML) and
//! a readable text report.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::analyze::pipeline::{IncidentReport, Report};
use crate::core::plan::action_json;
use crate::core::wit::{ObjectRef, Severity};

fn object_json(object: &ObjectRef) -> Value {
    json!({ "kind": object.kind, "namespace": object.namespace, "name": object.name })
}

/// The JSON contract users script against: additive changes only.
pub fn to_json(report: &Report) -> Value {
    json!({
        "incidents": report.incidents.iter().map(incident_json).collect::<Vec<_>>(),
    })
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn incident_json(report: &IncidentReport) -> Value {
    let incident = &report.incident;
    let mut value = json!({
        "id": incident.id,
        "policy": report.policy,
        "target": object_json(&incident.target),
        "findings": incident.findings.iter().map(|f| json!({ "trigger": f.trigger, "detail": f.detail })).collect::<Vec<_>>(),
        "analysis": {
            "source": report.source.as_str(),
            "summary": report.summary,
            "fallbackReason": report.fallback_reason,
            "model": report.model_call.as_ref().map(|call| json!({
                "cached": call.cached,
                "seconds": (call.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "promptTokens": call.prompt_tokens,
                "replyTokens": call.reply_tokens,
                "estimatedPromptTokens": call.estimated_prompt_tokens,
                "leftOut": call.left_out,
            })),
            "issues": report.issues.iter().map(|issue| json!({
                "title": issue.title,
                "severity": severity_name(issue.severity),
                "impact": issue.impact,
                "rootCause": issue.root_cause,
            })).collect::<Vec<_>>(),
        },
        "recommendations": report.reviewed.iter().map(|reviewed| {
            let r = &reviewed.recommendation;
            json!({
                "action": action_json(&r.action),
                "target": object_json(&r.target),
                "confidence": r.confidence,
                "reason": r.reason,
                "risk": r.risk,
                "allowed": reviewed.allowed,
                "rejections": reviewed.rejections,
                "adjustments": reviewed.adjustments,
            })
        }).collect::<Vec<_>>(),
        "actions": report.actions,
    });
    if !report.plugin_notes.is_empty() {
        value["pluginNotes"] = json!(report.plugin_notes);
    }
    value
}

pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    let model = report.model.as_deref().unwrap_or("none (rule-based)");
    let _ = writeln!(
        out,
        "KubeSkippy analysis: {} pods, {} incidents, model: {model}",
        report.pods_seen,
        report.incidents.len()
    );
    if report.incidents.is_empty() {
        let _ = writeln!(out, "\nNo incidents: every workload is within its policy.");
    }
    for incident_report in &report.incidents {
        let incident = &incident_report.incident;
        let target = &incident.target;
        let _ = writeln!(
            out,
            "\n== {} {}/{} (policy {}, incident {})",
            target.kind, target.namespace, target.name, incident_report.policy, incident.id
        );
        let _ = writeln!(out, "Findings:");
        for finding in &incident.findings {
            let _ = writeln!(out, "  - [{}] {}", finding.trigger, finding.detail);
        }
        let _ = writeln!(
            out,
            "Analysis ({}): {}",
            incident_report.source.as_str(),
            incident_report.summary
        );
        if let Some(call) = &incident_report.model_call {
            let tokens = match (call.prompt_tokens, call.reply_tokens) {
                (Some(prompt), Some(reply)) => format!("{prompt} prompt + {reply} reply tokens"),
                _ => format!("~{} prompt tokens", call.estimated_prompt_tokens),
            };
            let cached = if call.cached { ", cached reply" } else { "" };
            let _ = writeln!(
                out,
                "  (model: {:.1} s, {tokens}{cached})",
                call.elapsed.as_secs_f64()
            );
            if let Some(left_out) = &call.left_out {
                let _ = writeln!(out, "  ({left_out})");
            }
        }
        if let Some(reason) = &incident_report.fallback_reason {
            let _ = writeln!(out, "  (model not used: {reason})");
        }
        for note in &incident_report.plugin_notes {
            let _ = writeln!(out, "  ({note})");
        }
        for issue in &incident_report.issues {
            let _ = writeln!(
                out,
                "  Issue [{}]: {} — root cause: {}",
                severity_name(issue.severity),
                issue.title,
                issue.root_cause
            );
        }
        let _ = writeln!(out, "Recommendations:");
        if incident_report.reviewed.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for (rank, reviewed) in incident_report.reviewed.iter().enumerate() {
            let r = &reviewed.recommendation;
            let verdict = if reviewed.allowed {
                "ALLOWED"
            } else {
                "REJECTED"
            };
            let _ = writeln!(
                out,
                "  {}. {verdict} {} on {}/{} (confidence {:.2})",
                rank + 1,
                describe_action(&action_json(&r.action)),
                r.target.kind,
                r.target.name,
                r.confidence
            );
            let _ = writeln!(out, "     reason: {}", r.reason);
            let _ = writeln!(out, "     risk: {}", r.risk);
            for adjustment in &reviewed.adjustments {
                let _ = writeln!(out, "     adjusted: {adjustment}");
            }
            for rejection in &reviewed.rejections {
                let _ = writeln!(out, "     rejected: {rejection}");
            }
            for reason in &reviewed.approval_reasons {
                let _ = writeln!(out, "     approval required: {reason}");
            }
        }
        let _ = writeln!(
            out,
            "Planned HealingActions: {}",
            incident_report.actions.len()
        );
        for action in &incident_report.actions {
            let kind = serde_json::to_value(action.spec.action.kind).unwrap_or_default();
            let _ = writeln!(
                out,
                "  - {} ({}, dryRun: {}, approvalRequired: {})",
                action.metadata.name.as_deref().unwrap_or("?"),
                kind.as_str().unwrap_or("?"),
                action.spec.dry_run,
                action.spec.approval_required
            );
        }
    }
    out
}

fn describe_action(action: &Value) -> String {
    let kind = action["type"].as_str().unwrap_or("?");
    let params: Vec<String> = action
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| *key != "type")
        .map(|(key, value)| match value.as_str() {
            Some(text) => format!("{key}={text}"),
            None => format!("{key}={value}"),
        })
        .collect();
    if params.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({})", params.join(", "))
    }
}
