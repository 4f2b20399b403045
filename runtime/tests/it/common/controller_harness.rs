//! The controller `kubeskippy run` drives, over the in-memory API server: the
//! caches are fed from the fake directly, as the watchers would, time is a
//! test clock, and analysis is rule-based (no model).
//!
//! Include it with `#[path = "common/controller_harness.rs"] mod
//! controller_harness;` next to `fake_api` and `test_clock`.

#![allow(dead_code)]

use std::sync::Arc;

use kubeskippy::analyze::pipeline::{Analyzer, PluginFiles};
use kubeskippy::core::config::Config;
use kubeskippy::core::crd::healing_action::HealingAction;
use kubeskippy::core::crd::policy::{ClusterHealingPolicy, HealingPolicy};
use kubeskippy::core::objects::{self, Lenient};
use kubeskippy::core::provenance::SigningKey;
use kubeskippy::operator::collect::{self, CacheWriters, ClusterCache};
use kubeskippy::operator::daemon::controller::Controller;
use kubeskippy::operator::events::EventRecorder;
use kubeskippy::operator::lifecycle::Context;
use serde_json::Value;

use crate::fake_api::FakeApi;
use crate::test_clock::TestClock;

pub struct Cluster {
    pub fake: FakeApi,
    pub writers: CacheWriters,
    pub controller: Controller,
    pub analyzer: Analyzer,
    pub clock: TestClock,
    pub key: SigningKey,
}

fn listed<K: serde::de::DeserializeOwned>(fake: &FakeApi, at: impl Fn(&str) -> bool) -> Vec<K> {
    fake.snapshot()
        .into_iter()
        .filter(|(path, _)| at(path))
        .map(|(_, object)| serde_json::from_value(object).unwrap())
        .collect()
}

fn of_kind<K: serde::de::DeserializeOwned>(fake: &FakeApi, segment: &str) -> Vec<K> {
    listed(fake, |path| path.contains(segment))
}

impl Cluster {
    /// A cluster holding every object of `yaml` (multi-document).
    pub fn with(yaml: &str) -> Cluster {
        Cluster::fenced(yaml, kubeskippy::operator::leader::Fence::unfenced())
    }

    /// The same, with the leader fence `fence` guarding its writes.
    pub fn fenced(yaml: &str, fence: kubeskippy::operator::leader::Fence) -> Cluster {
        let fake = FakeApi::new();
        fake.seed_yaml(yaml);
        let (cache, writers) = ClusterCache::detached();
        let client = fake.client();
        let clock = TestClock::at("2026-03-14T09:00:00Z".parse().unwrap());
        let key = SigningKey::generate();
        let context = Context {
            events: EventRecorder::new(client.clone(), "kubeskippy-0"),
            evictions: client.clone(),
            client: client.clone(),
            clock: Arc::new(clock.clone()),
            identity: "kubeskippy-0".into(),
            cluster_actions_per_hour: 30,
            namespace_actions_per_hour: 10,
            floor: kubeskippy::core::safety::SafetyFloor::default(),
            key: key.clone(),
            fence,
        };
        let mut cluster = Cluster {
            controller: Controller::new(cache, context),
            analyzer: Analyzer::new(&Config::default(), &PluginFiles::default(), None).unwrap(),
            fake,
            writers,
            clock,
            key,
        };
        cluster.sync();
        cluster
    }

    /// What the watchers would have delivered by now.
    pub fn sync(&mut self) {
        let fake = &self.fake;
        let writers = &mut self.writers;
        collect::fill(
            &mut writers.pods,
            of_kind::<objects::CachedPod>(fake, "/pods/"),
        );
        // Core Events only: the daemon's own (events.k8s.io) are not evidence.
        collect::fill(
            &mut writers.events,
            listed::<objects::CachedEvent>(fake, |path| {
                path.starts_with("/api/v1/") && path.contains("/events/")
            }),
        );
        collect::fill(
            &mut writers.deployments,
            of_kind::<objects::CachedDeployment>(fake, "/deployments/"),
        );
        collect::fill(
            &mut writers.replica_sets,
            of_kind::<objects::CachedReplicaSet>(fake, "/replicasets/"),
        );
        collect::fill(
            &mut writers.policies,
            of_kind::<Lenient<HealingPolicy>>(fake, "/healingpolicies/"),
        );
        collect::fill(
            &mut writers.cluster_policies,
            of_kind::<Lenient<ClusterHealingPolicy>>(fake, "/clusterhealingpolicies/"),
        );
        collect::fill(
            &mut writers.actions,
            of_kind::<Lenient<HealingAction>>(fake, "/healingactions/"),
        );
    }

    /// One evaluation pass; the names of the HealingActions it created.
    pub async fn evaluate(&mut self) -> Vec<String> {
        let created = self
            .controller
            .evaluate(&self.analyzer)
            .await
            .unwrap()
            .created;
        self.sync();
        created
    }

    /// Reconciles until nothing is due, as consecutive ticks would.
    pub async fn settle(&mut self) {
        for _ in 0..10 {
            let reconciled = self.controller.reconcile_due(|| true).await;
            self.sync();
            if reconciled == 0 {
                return;
            }
        }
        panic!("reconcile did not settle in 10 rounds");
    }

    /// Every stored object whose path contains `segment`.
    pub fn stored(&self, segment: &str) -> Vec<Value> {
        self.fake
            .snapshot()
            .into_iter()
            .filter(|(path, _)| path.contains(segment))
            .map(|(_, object)| object)
            .collect()
    }

    /// Every Event the daemon recorded, as (namespace, regarding kind, reason, note).
    pub fn events(&self) -> Vec<(String, String, String, String)> {
        self.stored("/apis/events.k8s.io/")
            .iter()
            .map(|event| {
                let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
                (
                    text(&event["metadata"]["namespace"]),
                    text(&event["regarding"]["kind"]),
                    text(&event["reason"]),
                    text(&event["note"]),
                )
            })
            .collect()
    }

    pub fn event_reasons(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .map(|(_, _, reason, _)| reason)
            .collect()
    }
}
