//! Context budgeting: the prompt must fit the model's context window with room
//! for the reply. When it does not, the least relevant evidence is left out —
//! normal events, then healthy pods, then the quietest warnings, then troubled
//! pods beyond the first few — and the prompt says what was left out.

use crate::core::wit::{Finding, FindingKind, Incident, Prompt};
use crate::host::{Plugin, PluginError, PluginHost};

/// Characters per token for English and JSON with the tokenizers of current
/// open models; conservative so an estimate errs towards fitting.
const CHARS_PER_TOKEN: f64 = 3.2;
/// Troubled pods and warning events always kept, however small the window.
const KEEP_TROUBLED_PODS: usize = 3;
const KEEP_WARNINGS: usize = 3;

pub const BUDGET_TRIGGER: &str = "context-budget";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// The model's context window in tokens.
    pub context_tokens: u64,
    /// Tokens kept free for the reply.
    pub reply_tokens: u64,
}

impl Budget {
    fn prompt_tokens(&self) -> u64 {
        self.context_tokens.saturating_sub(self.reply_tokens)
    }
}

pub fn estimate_tokens(prompt: &Prompt) -> u64 {
    let characters = prompt.system.chars().count()
        + prompt.user.chars().count()
        + prompt
            .json_schema
            .as_deref()
            .map_or(0, |schema| schema.chars().count());
    (characters as f64 / CHARS_PER_TOKEN).ceil() as u64
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(
        "the prompt needs about {needed} tokens even with evidence left out, over the {available} the model's context leaves for it"
    )]
    DoesNotFit { needed: u64, available: u64 },
}

pub struct Fitted {
    pub incident: Incident,
    pub prompt: Prompt,
    pub estimated_tokens: u64,
    /// What was left out, as said in the prompt.
    pub left_out: Option<String>,
}

enum Evidence {
    Event(usize),
    Pod(usize),
}

/// Builds the prompt for `incident`, leaving out evidence until it fits.
pub fn fit(
    host: &PluginHost,
    prompt_plugin: &Plugin,
    incident: &Incident,
    budget: Budget,
) -> Result<Fitted, BudgetError> {
    let prompt = host.build_prompt(prompt_plugin, incident)?;
    let tokens = estimate_tokens(&prompt);
    if tokens <= budget.prompt_tokens() {
        return Ok(Fitted {
            incident: incident.clone(),
            prompt,
            estimated_tokens: tokens,
            left_out: None,
        });
    }
    let order = removal_order(incident);
    // More removed, shorter prompt: find the fewest removals that fit.
    let (mut low, mut high) = (1, order.len());
    let mut best: Option<Fitted> = None;
    while low <= high {
        let middle = (low + high) / 2;
        let (trimmed, note) = without(incident, &order[..middle], budget);
        let prompt = host.build_prompt(prompt_plugin, &trimmed)?;
        let tokens = estimate_tokens(&prompt);
        if tokens <= budget.prompt_tokens() {
            best = Some(Fitted {
                incident: trimmed,
                prompt,
                estimated_tokens: tokens,
                left_out: Some(note),
            });
            high = middle - 1;
        } else {
            low = middle + 1;
        }
    }
    if let Some(best) = best {
        return Ok(best);
    }
    let (trimmed, _) = without(incident, &order, budget);
    let needed = host
        .build_prompt(prompt_plugin, &trimmed)
        .map(|p| estimate_tokens(&p))
        .unwrap_or(tokens);
    Err(BudgetError::DoesNotFit {
        needed,
        available: budget.prompt_tokens(),
    })
}

fn removal_order(incident: &Incident) -> Vec<Evidence> {
    let troubled = |name: &str| {
        incident
            .findings
            .iter()
            .any(|f| f.pod.as_deref() == Some(name))
    };
    let mut normal_events: Vec<usize> = (0..incident.events.len())
        .filter(|&i| incident.events[i].event_type != "Warning")
        .collect();
    normal_events.sort_by_key(|&i| incident.events[i].count);
    let mut warnings: Vec<usize> = (0..incident.events.len())
        .filter(|&i| incident.events[i].event_type == "Warning")
        .collect();
    warnings.sort_by_key(|&i| std::cmp::Reverse(incident.events[i].count));
    let healthy_pods = (0..incident.pods.len()).filter(|&i| !troubled(&incident.pods[i].name));
    let troubled_pods: Vec<usize> = (0..incident.pods.len())
        .filter(|&i| troubled(&incident.pods[i].name))
        .collect();

    let mut order: Vec<Evidence> = normal_events.into_iter().map(Evidence::Event).collect();
    order.extend(healthy_pods.map(Evidence::Pod));
    order.extend(
        warnings
            .into_iter()
            .skip(KEEP_WARNINGS)
            .rev()
            .map(Evidence::Event),
    );
    order.extend(
        troubled_pods
            .into_iter()
            .skip(KEEP_TROUBLED_PODS)
            .rev()
            .map(Evidence::Pod),
    );
    order
}

fn without(incident: &Incident, removed: &[Evidence], budget: Budget) -> (Incident, String) {
    let mut drop_events = vec![false; incident.events.len()];
    let mut drop_pods = vec![false; incident.pods.len()];
    for evidence in removed {
        match evidence {
            Evidence::Event(i) => drop_events[*i] = true,
            Evidence::Pod(i) => drop_pods[*i] = true,
        }
    }
    let mut trimmed = incident.clone();
    trimmed.events = incident
        .events
        .iter()
        .zip(&drop_events)
        .filter(|(_, d)| !**d)
        .map(|(e, _)| e.clone())
        .collect();
    trimmed.pods = incident
        .pods
        .iter()
        .zip(&drop_pods)
        .filter(|(_, d)| !**d)
        .map(|(p, _)| p.clone())
        .collect();
    let events = drop_events.iter().filter(|d| **d).count();
    let pods = drop_pods.iter().filter(|d| **d).count();
    let note = format!(
        "Left out to fit the model's {}-token context: {events} of {} events and {pods} of {} pods (the least relevant)",
        budget.context_tokens,
        incident.events.len(),
        incident.pods.len()
    );
    trimmed.findings.push(Finding {
        trigger: BUDGET_TRIGGER.into(),
        kind: FindingKind::Other,
        detail: note.clone(),
        pod: None,
    });
    (trimmed, note)
}
