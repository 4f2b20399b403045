//! Typed actions from what the model wrote: the schema's `action` keyword with
//! its fields when it gave one, otherwise the words of its description.

use kubeskippy_plugin_sdk::quantity;
use kubeskippy_plugin_sdk::types::{Action, Incident, ObjectRef, Patch, ResourcePatch};

use crate::DraftRecommendation;

/// The schema's resource quantities, as written; empty when absent.
#[derive(Default)]
pub(crate) struct ResourceFields {
    pub(crate) memory_limit: String,
    pub(crate) memory_request: String,
    pub(crate) cpu_limit: String,
    pub(crate) cpu_request: String,
}

enum Named {
    Restart,
    Scale,
    Patch,
    DeletePod,
    None,
}

fn named_action(text: &str) -> Option<Named> {
    let key: String = text
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Some(match key.as_str() {
        "restart" | "rolloutrestart" => Named::Restart,
        "scale" => Named::Scale,
        "patch" => Named::Patch,
        "deletepod" | "delete" | "evictpod" | "evict" => Named::DeletePod,
        "none" | "noaction" | "noop" => Named::None,
        _ => return None,
    })
}

pub(crate) fn action(
    draft: &DraftRecommendation,
    target: &ObjectRef,
    incident: &Incident,
) -> Action {
    let named = named_action(&draft.action);
    // An action that is not a keyword is usually the description itself
    // ("increase_memory_limit"), so its words count first.
    let text = if named.is_none() && !draft.action.trim().is_empty() {
        format!("{}. {}", draft.action, draft.description)
    } else {
        draft.description.clone()
    };
    let words = words(&text);
    let described = || from_words(&words, target, &draft.container, incident);
    match named {
        Some(Named::Restart) => Action::Restart,
        Some(Named::DeletePod) => Action::DeletePod,
        Some(Named::None) => Action::None,
        Some(Named::Scale) => match replicas(&draft.replicas) {
            Some(replicas) => Action::Scale(replicas),
            None => only_if(described(), |action| matches!(action, Action::Scale(_))),
        },
        Some(Named::Patch) => patch_from_fields(draft, &words, incident)
            .unwrap_or_else(|| only_if(described(), |action| matches!(action, Action::Patch(_)))),
        None => described(),
    }
}

/// The model named the kind of action; a description that maps to a different
/// kind contradicts it, and a contradiction is only advice.
fn only_if(action: Action, wanted: impl Fn(&Action) -> bool) -> Action {
    if wanted(&action) {
        action
    } else {
        Action::None
    }
}

fn replicas(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(replicas) = text.parse::<u32>() {
        return Some(replicas);
    }
    // JSON numbers may arrive as 4.0.
    let value: f64 = text.parse().ok()?;
    (value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&value)).then_some(value as u32)
}

/// A patch from the schema's fields: resource quantities, or else a raw patch
/// document. None when the fields are absent or a quantity does not parse, so
/// the description gets its say.
fn patch_from_fields(
    draft: &DraftRecommendation,
    words: &[Word],
    incident: &Incident,
) -> Option<Action> {
    let fields = &draft.resources;
    let all = [
        &fields.memory_limit,
        &fields.memory_request,
        &fields.cpu_limit,
        &fields.cpu_request,
    ];
    if all.iter().all(|text| text.trim().is_empty()) {
        let patch = draft.patch.trim();
        return (!patch.is_empty())
            .then(|| Action::Patch(Patch::StrategicMerge(patch.to_string())));
    }
    let optional = |text: &str, parse: fn(&str) -> Option<u64>| {
        if text.trim().is_empty() {
            Some(None)
        } else {
            parse(text).map(Some)
        }
    };
    Some(Action::Patch(Patch::Resources(ResourcePatch {
        container: container(&draft.container, words, incident),
        memory_limit_bytes: optional(&fields.memory_limit, memory_bytes)?,
        memory_request_bytes: optional(&fields.memory_request, memory_bytes)?,
        cpu_limit_millicores: optional(&fields.cpu_limit, cpu_millicores)?,
        cpu_request_millicores: optional(&fields.cpu_request, cpu_millicores)?,
    })))
}

/// The container a resource patch is for: the one the model named, else one
/// the text mentions, else the workload's first. An empty name (no containers
/// known at all) is left for the validator to refuse.
fn container(given: &str, words: &[Word], incident: &Incident) -> String {
    let given = given.trim();
    if !given.is_empty() {
        return given.to_string();
    }
    let known = known_containers(incident);
    known
        .iter()
        .find(|name| words.iter().any(|word| word.lower == name.to_lowercase()))
        .or(known.first())
        .map_or_else(String::new, |name| name.to_string())
}

fn known_containers(incident: &Incident) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let from_workload = incident
        .workload
        .iter()
        .flat_map(|workload| &workload.containers);
    let from_pods = incident
        .pods
        .iter()
        .flat_map(|pod| &pod.containers)
        .map(|container| &container.name);
    for name in from_workload.chain(from_pods) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names
}

struct Word<'a> {
    original: &'a str,
    lower: String,
}

fn words(text: &str) -> Vec<Word<'_>> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | '`' | '"' | '*' | '_')
    })
    .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()))
    .filter(|word| !word.is_empty())
    .map(|original| Word {
        original,
        lower: original.to_lowercase(),
    })
    .collect()
}

/// Verbs that open advice about looking, not changing: "Investigate why the pod
/// restarts" must not become a restart.
const ADVICE_VERBS: &[&str] = &[
    "investigate",
    "check",
    "monitor",
    "review",
    "analyze",
    "analyse",
    "examine",
    "inspect",
    "verify",
    "audit",
    "profile",
    "debug",
    "diagnose",
    "identify",
    "determine",
    "evaluate",
    "look",
    "watch",
    "track",
    "alert",
    "document",
];

enum Intent {
    Restart,
    Scale,
    DeletePod,
    Resources,
}

fn intent(word: &str) -> Option<Intent> {
    Some(match word {
        "restart" | "restarting" | "redeploy" | "bounce" => Intent::Restart,
        "scale" | "scaling" | "replica" | "replicas" | "horizontally" => Intent::Scale,
        "delete" | "evict" | "kill" | "terminate" => Intent::DeletePod,
        "memory" | "mem" | "ram" | "cpu" | "cpus" | "limit" | "limits" | "request" | "requests"
        | "resources" => Intent::Resources,
        _ => return None,
    })
}

/// The action a description asks for. The first word that names a kind of
/// action decides, because descriptions are imperatives that lead with what to
/// do ("Increase memory limit to 2Gi and restart" is a patch).
fn from_words(
    words: &[Word],
    target: &ObjectRef,
    container_given: &str,
    incident: &Incident,
) -> Action {
    if words
        .first()
        .is_some_and(|word| ADVICE_VERBS.contains(&word.lower.as_str()))
    {
        return Action::None;
    }
    let Some(intent) = words.iter().find_map(|word| intent(&word.lower)) else {
        return Action::None;
    };
    match intent {
        Intent::Restart => Action::Restart,
        Intent::DeletePod => {
            let about_a_pod = target.kind == "Pod"
                || words.iter().any(|word| {
                    matches!(word.lower.as_str(), "pod" | "pods") || word.lower.starts_with("pod/")
                });
            if about_a_pod {
                Action::DeletePod
            } else {
                Action::None
            }
        }
        Intent::Scale => scale(words, incident).map_or(Action::None, Action::Scale),
        Intent::Resources => resource_patch(words, container_given, incident)
            .map_or(Action::None, |patch| Action::Patch(Patch::Resources(patch))),
    }
}

/// "to 4", "4 replicas", "by 2" relative to the desired count, or one more than
/// desired for a bare "scale up"/"scale horizontally". A count that does not fit
/// is no count at all: guessing another would act on something never said.
fn scale(words: &[Word], incident: &Incident) -> Option<u32> {
    let desired = incident
        .workload
        .as_ref()
        .and_then(|workload| workload.desired_replicas);
    let is_count =
        |word: &Word| !word.lower.is_empty() && word.lower.bytes().all(|b| b.is_ascii_digit());
    let count = |word: &Word| word.lower.parse::<u32>().ok();
    let down = words.iter().any(|word| {
        matches!(
            word.lower.as_str(),
            "down" | "reduce" | "decrease" | "fewer" | "lower" | "less"
        )
    });
    let pairs = || words.iter().zip(words.iter().skip(1));
    if let Some((_, number)) = pairs().find(|(word, number)| word.lower == "to" && is_count(number))
    {
        return count(number);
    }
    let replica_words = ["replica", "replicas", "pods", "instances", "copies"];
    if let Some((number, _)) = pairs()
        .find(|(number, word)| is_count(number) && replica_words.contains(&word.lower.as_str()))
    {
        return count(number);
    }
    if let Some((_, number)) = pairs().find(|(word, number)| word.lower == "by" && is_count(number))
    {
        let step = count(number)?;
        return if down {
            desired?.checked_sub(step)
        } else {
            desired?.checked_add(step)
        };
    }
    if down { None } else { desired?.checked_add(1) }
}

#[derive(Clone, Copy, PartialEq)]
enum Resource {
    Memory,
    Cpu,
}

#[derive(Clone, Copy)]
enum Field {
    Limit,
    Request,
}

/// An amount found in text, and whether it followed "to" (the new value)
/// rather than standing alone (possibly the current value).
#[derive(Clone, Copy)]
struct Amount {
    value: u64,
    explicit: bool,
}

#[derive(Default)]
struct Amounts {
    memory_limit: Option<Amount>,
    memory_request: Option<Amount>,
    cpu_limit: Option<Amount>,
    cpu_request: Option<Amount>,
}

impl Amounts {
    fn offer(&mut self, resource: Resource, field: Field, amount: Amount) {
        let slot = match (resource, field) {
            (Resource::Memory, Field::Limit) => &mut self.memory_limit,
            (Resource::Memory, Field::Request) => &mut self.memory_request,
            (Resource::Cpu, Field::Limit) => &mut self.cpu_limit,
            (Resource::Cpu, Field::Request) => &mut self.cpu_request,
        };
        if slot.is_none_or(|old| amount.explicit && !old.explicit) {
            *slot = Some(amount);
        }
    }
}

/// Reads amounts like "memory limit to 2GB", "CPU request to 500m", "to 2
/// cores". The words before an amount say which resource and field it is for;
/// its unit can say the resource too. Amounts after "by" or "from" are deltas
/// or old values, not the new setting, and are skipped.
fn resource_patch(
    words: &[Word],
    container_given: &str,
    incident: &Incident,
) -> Option<ResourcePatch> {
    let mut resource = None;
    let mut field = Field::Limit;
    let mut amounts = Amounts::default();
    let mut index = 0;
    while let Some(word) = words.get(index) {
        match word.lower.as_str() {
            "memory" | "mem" | "ram" => resource = Some(Resource::Memory),
            "cpu" | "cpus" => resource = Some(Resource::Cpu),
            "limit" | "limits" => field = Field::Limit,
            "request" | "requests" => field = Field::Request,
            _ => {
                let previous = index
                    .checked_sub(1)
                    .and_then(|at| words.get(at))
                    .map_or("", |word| word.lower.as_str());
                let explicit = previous == "to";
                if let Some((found, value, used)) = amount_at(words, index, resource, explicit) {
                    if !matches!(previous, "by" | "from") {
                        amounts.offer(found, field, Amount { value, explicit });
                    }
                    index += used;
                    continue;
                }
            }
        }
        index += 1;
    }
    let value = |amount: Option<Amount>| amount.map(|amount| amount.value);
    let patch = ResourcePatch {
        container: container(container_given, words, incident),
        cpu_limit_millicores: value(amounts.cpu_limit),
        cpu_request_millicores: value(amounts.cpu_request),
        memory_limit_bytes: value(amounts.memory_limit),
        memory_request_bytes: value(amounts.memory_request),
    };
    let changes_something = patch.cpu_limit_millicores.is_some()
        || patch.cpu_request_millicores.is_some()
        || patch.memory_limit_bytes.is_some()
        || patch.memory_request_bytes.is_some();
    changes_something.then_some(patch)
}

const MEMORY_UNITS: &[&str] = &[
    "ki", "kib", "kb", "mi", "mib", "mb", "gi", "gib", "gb", "g", "ti", "tib", "tb",
];
const CPU_UNITS: &[&str] = &[
    "millicores",
    "millicore",
    "millicpu",
    "mcpu",
    "core",
    "cores",
    "cpu",
    "cpus",
    "vcpu",
    "vcpus",
];

/// An amount starting at `words[index]`, its unit in the same word ("2GB") or
/// the next ("2 GB"): the resource it is for, its value, and how many words it
/// took. A number without a unit is CPU cores only right after "to" in CPU
/// context; memory without a unit is too ambiguous to act on.
fn amount_at(
    words: &[Word],
    index: usize,
    context: Option<Resource>,
    explicit: bool,
) -> Option<(Resource, u64, usize)> {
    let word = words.get(index)?.original;
    let number_end = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let number = word.get(..number_end)?;
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut unit = word.get(number_end..)?;
    let mut used = 1;
    if unit.is_empty()
        && let Some(next) = words.get(index + 1)
        && (MEMORY_UNITS.contains(&next.lower.as_str()) || CPU_UNITS.contains(&next.lower.as_str()))
    {
        unit = next.original;
        used = 2;
    }
    let lower = unit.to_ascii_lowercase();
    let resource = if unit == "M" || MEMORY_UNITS.contains(&lower.as_str()) {
        Resource::Memory
    } else if CPU_UNITS.contains(&lower.as_str()) {
        Resource::Cpu
    } else if unit == "m" {
        context.unwrap_or(Resource::Cpu)
    } else if unit.is_empty() && explicit && context == Some(Resource::Cpu) {
        Resource::Cpu
    } else {
        return None;
    };
    let text = format!("{number}{unit}");
    let value = match resource {
        Resource::Memory => memory_bytes(&text)?,
        Resource::Cpu => cpu_millicores(&text)?,
    };
    Some((resource, value, used))
}

fn split_number(text: &str) -> (&str, &str) {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    (number, unit.trim())
}

/// Memory in bytes from a Kubernetes quantity or from the units people write.
/// A valid Kubernetes quantity means what Kubernetes says ("2G" is 2×10⁹
/// bytes), with one exception: "512m" is millibytes to Kubernetes, which no one
/// means for memory, so it is read as Mi. Units that are not Kubernetes
/// quantities ("2GB", "512 MB", "2GiB", "2g") are read as binary units: people
/// who write GB for memory limits nearly always mean Gi, and the difference
/// (7%) errs on the side of more memory.
fn memory_bytes(text: &str) -> Option<u64> {
    let (number, unit) = split_number(text);
    let binary_suffix = |unit: &str| {
        Some(match unit.to_ascii_lowercase().as_str() {
            "ki" | "kib" | "kb" => "Ki",
            "mi" | "mib" | "mb" => "Mi",
            "gi" | "gib" | "gb" | "g" => "Gi",
            "ti" | "tib" | "tb" => "Ti",
            _ => return None,
        })
    };
    if unit == "m" {
        return quantity::memory_bytes(&format!("{number}Mi")).ok();
    }
    if let Ok(bytes) = quantity::memory_bytes(text) {
        return Some(bytes);
    }
    quantity::memory_bytes(&format!("{number}{}", binary_suffix(unit)?)).ok()
}

/// CPU in millicores from a Kubernetes quantity ("500m", "2") or from words
/// ("2 cores", "500 millicores").
fn cpu_millicores(text: &str) -> Option<u64> {
    if let Ok(millicores) = quantity::cpu_millicores(text) {
        return Some(millicores);
    }
    let (number, unit) = split_number(text);
    let suffix = match unit.to_ascii_lowercase().as_str() {
        "core" | "cores" | "cpu" | "cpus" | "vcpu" | "vcpus" => "",
        "millicore" | "millicores" | "millicpu" | "mcpu" => "m",
        _ => return None,
    };
    quantity::cpu_millicores(&format!("{number}{suffix}")).ok()
}
