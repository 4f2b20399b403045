//! One model call per incident fingerprint per cooldown window, so a flapping
//! pod does not cost a model call per evaluation. The key covers the provider,
//! the model, the prompt plugin's code and the incident's essential facts —
//! what is wrong and with what, not counters that climb while it stays wrong.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::core::wit::Incident;

/// Beyond this many entries the oldest are dropped; each holds one reply.
const MAX_ENTRIES: usize = 4096;

/// Replies by key, each kept for the TTL the caller reads it with, so one
/// cache serves across a reload that changes the TTL.
#[derive(Default)]
pub struct ReplyCache {
    entries: Mutex<HashMap<String, (Instant, String)>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ReplyCache {
    pub fn new() -> ReplyCache {
        ReplyCache::default()
    }

    pub fn get(&self, key: &str, now: Instant, ttl: Duration) -> Option<String> {
        let entries = self.entries.lock().expect("cache lock");
        let fresh = entries
            .get(key)
            .filter(|(stored, _)| now.saturating_duration_since(*stored) < ttl)
            .map(|(_, reply)| reply.clone());
        let counter = if fresh.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        fresh
    }

    pub fn put(&self, key: String, reply: String, now: Instant, ttl: Duration) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.retain(|_, (stored, _)| now.saturating_duration_since(*stored) < ttl);
        if entries.len() >= MAX_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (stored, _))| *stored)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (now, reply));
    }

    /// (hits, misses) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// The cache key of an incident under a provider and prompt plugin.
pub fn fingerprint(provider: &str, prompt_plugin_digest: &str, incident: &Incident) -> String {
    let mut facts: BTreeSet<String> = BTreeSet::new();
    facts.insert(format!(
        "target {}/{}/{}",
        incident.target.kind, incident.target.namespace, incident.target.name
    ));
    for finding in &incident.findings {
        facts.insert(format!("finding {} {:?}", finding.trigger, finding.kind));
    }
    for pod in &incident.pods {
        if let Some(reason) = &pod.status_reason {
            facts.insert(format!("state {reason}"));
        }
        for container in &pod.containers {
            facts.insert(format!(
                "container {} limits {:?}/{:?} requests {:?}/{:?}",
                container.name,
                container.limits.cpu_millicores,
                container.limits.memory_bytes,
                container.requests.cpu_millicores,
                container.requests.memory_bytes
            ));
        }
    }
    if let Some(workload) = &incident.workload {
        facts.insert(format!("replicas {:?}", workload.desired_replicas));
    }
    let mut hasher = Sha256::new();
    hasher.update(provider.as_bytes());
    hasher.update([0]);
    hasher.update(prompt_plugin_digest.as_bytes());
    for fact in facts {
        hasher.update([0]);
        hasher.update(fact.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        crate::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::oom_crashloop_incident())
    }

    #[test]
    fn climbing_counters_keep_the_fingerprint() {
        let first = incident();
        let mut later = incident();
        later.pods[0].restart_count = 9;
        later.pods[0].containers[0].restart_count = 9;
        later.pods[0].usage.memory_bytes = Some(1700 << 20);
        later.events[0].count = 12;
        later.findings[0].detail = "Pod app-xyz has restarted 9 times".into();
        assert_eq!(fingerprint("p", "d", &first), fingerprint("p", "d", &later));
    }

    #[test]
    fn a_changed_fact_changes_the_fingerprint() {
        let first = incident();
        let mut patched = incident();
        patched.pods[0].containers[0].limits.memory_bytes = Some(2 << 30);
        assert_ne!(
            fingerprint("p", "d", &first),
            fingerprint("p", "d", &patched)
        );
        assert_ne!(
            fingerprint("p", "d", &first),
            fingerprint("other", "d", &first)
        );
        assert_ne!(
            fingerprint("p", "d", &first),
            fingerprint("p", "other-plugin", &first)
        );
    }

    #[test]
    fn entries_expire() {
        let cache = ReplyCache::new();
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        cache.put("k".into(), "reply".into(), now, ttl);
        assert_eq!(
            cache
                .get("k", now + Duration::from_secs(59), ttl)
                .as_deref(),
            Some("reply")
        );
        assert_eq!(cache.get("k", now + Duration::from_secs(60), ttl), None);
        assert_eq!(cache.counts(), (1, 1));
    }
}
