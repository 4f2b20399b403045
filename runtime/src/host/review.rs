//! Review: every recommendation passes the host safety floor, then each
//! validator plugin in turn. A validator that fails (trap, timeout, bad config)
//! denies: a check that could not run is not a check that passed. What every
//! check allowed is then put to the validators' approval gates (0.1.1); a
//! gate that fails asks for approval, for the same reason.

use crate::core::config::AiConfig;
use crate::core::crd::policy::HealingPolicy;
use crate::core::incidents::OpenIncident;
use crate::core::safety::SafetyFloor;
use crate::core::wit::{Recommendation, ReviewContext, Verdict};
use crate::host::{Plugin, PluginHost};

#[derive(Debug, Clone, PartialEq)]
pub struct Reviewed {
    /// The recommendation as the last validator left it.
    pub recommendation: Recommendation,
    pub allowed: bool,
    pub rejections: Vec<String>,
    /// What refused it first, when something did.
    pub refusal: Option<Refusal>,
    /// What validators changed, and why.
    pub adjustments: Vec<String>,
    /// Why approval gates want a person to approve the change before it runs,
    /// each naming its plugin; empty when none asked.
    pub approval_reasons: Vec<String>,
}

/// The kinds of reason a recommendation is refused for: few, so they can
/// label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SafetyFloor,
    Validator,
    /// A validator (or the checks a policy names) could not run.
    ValidatorError,
    Duplicate,
    MinConfidence,
    MaxRecommendations,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::SafetyFloor => "safety_floor",
            Refusal::Validator => "validator",
            Refusal::ValidatorError => "validator_error",
            Refusal::Duplicate => "duplicate",
            Refusal::MinConfidence => "min_confidence",
            Refusal::MaxRecommendations => "max_recommendations",
        }
    }
}

pub fn review(
    host: &PluginHost,
    validators: &[Plugin],
    floor: &SafetyFloor,
    open: &OpenIncident<'_>,
    recommendations: Vec<Recommendation>,
) -> Vec<Reviewed> {
    let mut allowed_so_far = 0u32;
    let mut reviewed = Vec::with_capacity(recommendations.len());
    for (rank, recommendation) in recommendations.into_iter().enumerate() {
        let context = ReviewContext {
            rank: u32::try_from(rank).unwrap_or(u32::MAX),
            allowed_so_far,
        };
        let outcome = review_one(host, validators, floor, open, recommendation, context);
        if outcome.allowed {
            allowed_so_far += 1;
        }
        reviewed.push(outcome);
    }
    reviewed
}

fn review_one(
    host: &PluginHost,
    validators: &[Plugin],
    floor: &SafetyFloor,
    open: &OpenIncident<'_>,
    mut recommendation: Recommendation,
    context: ReviewContext,
) -> Reviewed {
    let mut rejections: Vec<String> = floor
        .objections(&recommendation, open)
        .into_iter()
        .map(|why| format!("safety floor: {why}"))
        .collect();
    let mut refusal = (!rejections.is_empty()).then_some(Refusal::SafetyFloor);
    let mut adjustments = Vec::new();
    if rejections.is_empty() {
        for (position, validator) in validators.iter().enumerate() {
            match host.validate(validator, &recommendation, &open.incident, context) {
                Ok(Verdict::Allow) => {}
                Ok(Verdict::Deny(reason)) => {
                    rejections.push(format!("{}: {}", validator.name(), plugin_text(&reason)));
                    refusal = Some(Refusal::Validator);
                    break;
                }
                Ok(Verdict::Adjust(adjustment)) => {
                    let mut adjusted = adjustment.recommendation;
                    // Shown to people and recorded, like the model's prose.
                    adjusted.reason = plugin_text(&adjusted.reason);
                    adjusted.risk = plugin_text(&adjusted.risk);
                    // A validator may change a recommendation, but the floor
                    // judges the changed one again: adjusting cannot smuggle a
                    // refused target past it.
                    let objections = floor.objections(&adjusted, open);
                    if !objections.is_empty() {
                        rejections.extend(objections.into_iter().map(|why| {
                            format!(
                                "safety floor, after {} adjusted it: {why}",
                                validator.name()
                            )
                        }));
                        refusal = Some(Refusal::SafetyFloor);
                        break;
                    }
                    // Nor past a validator that allowed the recommendation
                    // before the change: each earlier one judges the
                    // changed one, and must allow it as it is.
                    if let Some((why, kind)) =
                        recheck_earlier(host, &validators[..position], &adjusted, open, context)
                    {
                        rejections.push(format!("{why}, after {} adjusted it", validator.name()));
                        refusal = Some(kind);
                        break;
                    }
                    adjustments.push(format!(
                        "{}: {}",
                        validator.name(),
                        plugin_text(&adjustment.reason)
                    ));
                    recommendation = adjusted;
                }
                Err(error) => {
                    rejections.push(format!(
                        "{error} (denied because the validator could not run)"
                    ));
                    refusal = Some(Refusal::ValidatorError);
                    break;
                }
            }
        }
    }
    let allowed = rejections.is_empty();
    let approval_reasons = if allowed {
        approval_reasons(host, validators, &recommendation, open)
    } else {
        Vec::new()
    };
    Reviewed {
        recommendation,
        allowed,
        rejections,
        refusal,
        adjustments,
        approval_reasons,
    }
}

/// Why one of `earlier` does not allow `adjusted` as it is; none when all do.
/// An earlier validator adjusting it in turn is a disagreement, and denies.
fn recheck_earlier(
    host: &PluginHost,
    earlier: &[Plugin],
    adjusted: &Recommendation,
    open: &OpenIncident<'_>,
    context: ReviewContext,
) -> Option<(String, Refusal)> {
    earlier.iter().find_map(|validator| {
        match host.validate(validator, adjusted, &open.incident, context) {
            Ok(Verdict::Allow) => None,
            Ok(Verdict::Deny(reason)) => Some((
                format!("{}: {}", validator.name(), plugin_text(&reason)),
                Refusal::Validator,
            )),
            Ok(Verdict::Adjust(_)) => Some((
                format!(
                    "{} would change it again (validators that disagree deny)",
                    validator.name()
                ),
                Refusal::Validator,
            )),
            Err(error) => Some((
                format!("{error} (denied because the validator could not run)"),
                Refusal::ValidatorError,
            )),
        }
    })
}

/// Every gate is asked, not only up to the first that asks: the person who
/// approves should see all the reasons.
fn approval_reasons(
    host: &PluginHost,
    validators: &[Plugin],
    recommendation: &Recommendation,
    open: &OpenIncident<'_>,
) -> Vec<String> {
    validators
        .iter()
        .filter_map(|validator| {
            match host.requires_approval(validator, recommendation, &open.incident) {
                Ok(None) => None,
                Ok(Some(reason)) => Some(format!("{}: {}", validator.name(), plugin_text(&reason))),
                // The error quotes the trap, whose backtrace names the
                // plugin's own functions: untrusted too.
                Err(error) => Some(format!(
                    "{} (approval required because the approval gate could not run)",
                    plugin_text(&error.to_string())
                )),
            }
        })
        .collect()
}

/// What a validator says is shown to people and recorded: untrusted text.
fn plugin_text(text: &str) -> String {
    crate::core::untrusted::clean(text, crate::core::untrusted::MAX_REASONING)
}

/// Every recommendation refused for one reason: used when the checks a policy
/// asks for cannot run at all.
pub fn deny_all(recommendations: Vec<Recommendation>, reason: &str) -> Vec<Reviewed> {
    recommendations
        .into_iter()
        .map(|recommendation| Reviewed {
            recommendation,
            allowed: false,
            rejections: vec![format!(
                "{reason} (denied because the validator could not run)"
            )],
            refusal: Some(Refusal::ValidatorError),
            adjustments: Vec::new(),
            approval_reasons: Vec::new(),
        })
        .collect()
}

/// A recommendation allowed twice is one change: a model that repeats itself
/// must not have a workload restarted (or scaled, or evicted) once per copy.
pub fn refuse_repeats(reviewed: &mut [Reviewed]) {
    for later in 1..reviewed.len() {
        let (earlier, rest) = reviewed.split_at_mut(later);
        let outcome = &mut rest[0];
        if !outcome.allowed {
            continue;
        }
        let same = earlier.iter().position(|first| {
            first.allowed
                && first.recommendation.target == outcome.recommendation.target
                && first.recommendation.action == outcome.recommendation.action
        });
        if let Some(first) = same {
            outcome.allowed = false;
            outcome.refusal = Some(Refusal::Duplicate);
            outcome
                .rejections
                .push(format!("the same change as recommendation {}", first + 1));
        }
    }
}

/// The configured `ai.minConfidence` and `ai.maxRecommendations`, and the
/// policy's, applied by the host on top of what the validators allowed: they
/// hold with `validateResponses: false` too, and a policy can only tighten
/// them.
pub fn apply_limits(reviewed: &mut [Reviewed], policy: &HealingPolicy, ai: &AiConfig) {
    let policy_ai = &policy.spec.ai;
    let mut allowed = 0u32;
    for outcome in reviewed.iter_mut().filter(|outcome| outcome.allowed) {
        let confidence = outcome.recommendation.confidence;
        let rejection = if confidence < ai.min_confidence {
            Some((
                Refusal::MinConfidence,
                format!(
                    "confidence {confidence:.2} is below ai.minConfidence {:.2}",
                    ai.min_confidence
                ),
            ))
        } else if let Some(minimum) = policy_ai.min_confidence
            && confidence < minimum
        {
            Some((
                Refusal::MinConfidence,
                format!(
                    "policy {}: confidence {confidence:.2} is below its minConfidence {minimum:.2}",
                    policy.name()
                ),
            ))
        } else if allowed >= ai.max_recommendations {
            Some((
                Refusal::MaxRecommendations,
                format!(
                    "already {} recommendations allowed (ai.maxRecommendations)",
                    ai.max_recommendations
                ),
            ))
        } else if let Some(maximum) = policy_ai.max_recommendations
            && allowed >= maximum
        {
            Some((
                Refusal::MaxRecommendations,
                format!(
                    "policy {}: already {maximum} recommendations allowed (its maxRecommendations)",
                    policy.name()
                ),
            ))
        } else {
            None
        };
        match rejection {
            Some((refusal, why)) => {
                outcome.rejections.push(why);
                outcome.refusal = Some(refusal);
                outcome.allowed = false;
            }
            None => allowed += 1,
        }
    }
}
