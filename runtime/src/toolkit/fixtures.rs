//! `plugin test`: a plugin against cases its author wrote. A fixtures
//! directory holds one YAML file per case:
//!
//! ```yaml
//! incident: incidents/oom.yaml      # or the incident inline
//! reply: "…"                        # parser cases: the model's reply
//! recommendation: { … }             # validator cases
//! context: { rank: 0, allowed_so_far: 0 }   # validator cases, optional
//! config: { maxReplicas: "5" }      # optional: the plugin's config keys
//! expect: …                         # prompt/parser: {Ok: …} or {Err: "…"}; validator: the verdict
//! expect_approval: "…"               # a validator with an approval gate: why it asks, or null
//! ```
//!
//! Values are in the host's serde shape of the WIT types (snake_case
//! fields, CamelCase cases: `kind: OomKilled`, `action: {Scale: 3}`).
//! `config.yaml` beside the cases holds config keys every case gets.
//! `--update` writes what the plugin returned as each case's `expect`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::ToolkitError;
use crate::core::wit::{Analysis, Incident, Prompt, Recommendation, ReviewContext, Verdict};
use crate::host::{PluginError, PluginHost, PluginKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    incident: Value,
    #[serde(default)]
    reply: Option<String>,
    #[serde(default)]
    recommendation: Option<Recommendation>,
    #[serde(default)]
    context: Option<ReviewContext>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    expect: Option<Value>,
    /// What the approval gate answers; absent: not checked.
    #[serde(default)]
    expect_approval: Option<Value>,
}

#[derive(Debug)]
pub struct Outcome {
    pub case: String,
    /// None: passed (or updated); Some: what to show.
    pub failure: Option<String>,
}

fn fixture_error(path: &Path, why: impl std::fmt::Display) -> ToolkitError {
    ToolkitError::Fixtures(format!("{}: {why}", path.display()))
}

fn read_yaml(path: &Path) -> Result<Value, ToolkitError> {
    let text = std::fs::read_to_string(path).map_err(|e| fixture_error(path, e))?;
    serde_yaml_ng::from_str(&text).map_err(|e| fixture_error(path, e))
}

/// A file that is no link: a fixtures directory from someone else must not
/// make `plugin test` read a file elsewhere (and echo it in its errors).
fn is_plain_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_file())
}

fn case_files(dir: &Path) -> Result<Vec<PathBuf>, ToolkitError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| fixture_error(dir, e))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            is_plain_file(path)
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
                && path.file_stem().is_some_and(|stem| stem != "config")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(fixture_error(dir, "holds no case files (NAME.yaml)"));
    }
    Ok(files)
}

/// Runs every case of `dir` against the plugin; with `update`, writes what
/// the plugin returned as each case's expectation instead of comparing.
pub fn run(
    host: &PluginHost,
    name: &str,
    bytes: &[u8],
    dir: &Path,
    update: bool,
) -> Result<Vec<Outcome>, ToolkitError> {
    let identity = host
        .identify(bytes)
        .map_err(|why| ToolkitError::Plugin(format!("{name}: {why}")))?;
    let shared_config: BTreeMap<String, String> = match dir.join("config.yaml") {
        path if is_plain_file(&path) => {
            serde_json::from_value(read_yaml(&path)?).map_err(|e| fixture_error(&path, e))?
        }
        _ => BTreeMap::new(),
    };
    let mut outcomes = Vec::new();
    for path in case_files(dir)? {
        let case_name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let case: Case =
            serde_json::from_value(read_yaml(&path)?).map_err(|e| fixture_error(&path, e))?;
        let incident = incident_of(&path, &case.incident)?;
        let mut config = shared_config.clone();
        config.extend(case.config.clone());
        let (_, plugin) = super::load_any(host, name, bytes, config)?;
        let actual = match call(host, &plugin, identity.kind, &case, &incident, &path)? {
            Ok(actual) => actual,
            Err(error) => {
                outcomes.push(Outcome {
                    case: case_name,
                    failure: Some(format!("the plugin failed: {error}")),
                });
                continue;
            }
        };
        let gate = if identity.kind == PluginKind::Validator
            && (plugin.has_approval_gate() || case.expect_approval.is_some())
        {
            let recommendation = case
                .recommendation
                .as_ref()
                .ok_or_else(|| fixture_error(&path, "a validator case needs `recommendation`"))?;
            match host.requires_approval(&plugin, recommendation, &incident) {
                Ok(answer) => Some(serde_json::to_value(answer).expect("options serialise")),
                Err(error) => {
                    outcomes.push(Outcome {
                        case: case_name,
                        failure: Some(format!("the approval gate failed: {error}")),
                    });
                    continue;
                }
            }
        } else {
            None
        };
        if update {
            write_expectation(&path, &actual, gate.as_ref())?;
            outcomes.push(Outcome {
                case: case_name,
                failure: None,
            });
            continue;
        }
        let Some(expected) = &case.expect else {
            return Err(fixture_error(
                &path,
                "has no `expect`; run with --update to record what the plugin returns",
            ));
        };
        let expected = normalise(identity.kind, expected).map_err(|e| fixture_error(&path, e))?;
        let mut failure = (expected != actual).then(|| diff(&expected, &actual));
        if let (Some(expected), Some(actual)) = (&case.expect_approval, &gate)
            && expected != actual
        {
            let gate_diff = format!("approval gate:\n{}", diff(expected, actual));
            failure = Some(failure.map_or(gate_diff.clone(), |f| format!("{f}{gate_diff}")));
        }
        outcomes.push(Outcome {
            case: case_name,
            failure,
        });
    }
    Ok(outcomes)
}

/// The case's incident, inline or from a file inside the fixtures
/// directory: a case file from someone else must not make `plugin test`
/// read (and echo in its errors) a file elsewhere.
fn incident_of(case_path: &Path, value: &Value) -> Result<Incident, ToolkitError> {
    let value = match value {
        Value::String(relative) => {
            let dir = case_path.parent().unwrap_or(Path::new("."));
            let canonical = |path: &Path| path.canonicalize().map_err(|e| fixture_error(path, e));
            let path = canonical(&dir.join(relative))?;
            if !path.starts_with(canonical(dir)?) {
                return Err(fixture_error(
                    case_path,
                    format!("incident file {relative:?} is outside the fixtures directory"),
                ));
            }
            read_yaml(&path)?
        }
        inline => inline.clone(),
    };
    serde_json::from_value(value).map_err(|e| fixture_error(case_path, format!("incident: {e}")))
}

/// The plugin's answer as a JSON value in the fixtures' shape, or how the
/// call failed (a trap, a timeout: never an expected outcome).
fn call(
    host: &PluginHost,
    plugin: &crate::host::Plugin,
    kind: PluginKind,
    case: &Case,
    incident: &Incident,
    path: &Path,
) -> Result<Result<Value, PluginError>, ToolkitError> {
    fn answer<T: serde::Serialize>(result: Result<T, PluginError>) -> Result<Value, PluginError> {
        let result = match result {
            Ok(value) => Ok(value),
            Err(PluginError::Refused { message, .. }) => Err(message),
            Err(other) => return Err(other),
        };
        Ok(serde_json::to_value(result).expect("plugin results serialise"))
    }
    Ok(match kind {
        PluginKind::Prompt => answer(host.build_prompt(plugin, incident)),
        PluginKind::Parser => {
            let reply = case
                .reply
                .as_deref()
                .ok_or_else(|| fixture_error(path, "a parser case needs `reply`"))?;
            answer(host.parse_response(plugin, reply, incident))
        }
        PluginKind::Validator => {
            let recommendation = case
                .recommendation
                .as_ref()
                .ok_or_else(|| fixture_error(path, "a validator case needs `recommendation`"))?;
            let context = case.context.unwrap_or(ReviewContext {
                rank: 0,
                allowed_so_far: 0,
            });
            host.validate(plugin, recommendation, incident, context)
                .map(|verdict| serde_json::to_value(verdict).expect("verdicts serialise"))
        }
    })
}

/// The expectation as the typed value it stands for, back in JSON: `0.1`
/// written for an `f32` compares equal to what the plugin returned.
fn normalise(kind: PluginKind, expected: &Value) -> Result<Value, String> {
    let typed = |error: serde_json::Error| format!("expect: {error}");
    Ok(match kind {
        PluginKind::Prompt => serde_json::to_value(
            serde_json::from_value::<Result<Prompt, String>>(expected.clone()).map_err(typed)?,
        ),
        PluginKind::Parser => serde_json::to_value(
            serde_json::from_value::<Result<Analysis, String>>(expected.clone()).map_err(typed)?,
        ),
        PluginKind::Validator => serde_json::to_value(
            serde_json::from_value::<Verdict>(expected.clone()).map_err(typed)?,
        ),
    }
    .expect("typed values serialise"))
}

fn diff(expected: &Value, actual: &Value) -> String {
    let expected = serde_yaml_ng::to_string(expected).expect("JSON values are YAML");
    let actual = serde_yaml_ng::to_string(actual).expect("JSON values are YAML");
    similar::TextDiff::from_lines(&expected, &actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}

fn write_expectation(
    path: &Path,
    actual: &Value,
    gate: Option<&Value>,
) -> Result<(), ToolkitError> {
    let mut case = read_yaml(path)?;
    let object = case
        .as_object_mut()
        .ok_or_else(|| fixture_error(path, "a case is a mapping"))?;
    object.insert("expect".into(), actual.clone());
    if let Some(gate) = gate {
        object.insert("expect_approval".into(), gate.clone());
    }
    let text = serde_yaml_ng::to_string(&case).expect("JSON values are YAML");
    std::fs::write(path, text).map_err(|e| fixture_error(path, e))
}
