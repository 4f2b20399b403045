//! Plugin calls from async code. A call blocks its thread for as long as the
//! plugin runs (up to its deadline) and, when every pool slot is taken, until
//! one is free; on a runtime worker that would stall the watchers, the lease
//! renewal and the health endpoint sharing it. So calls wait for a permit of
//! a semaphore as wide as the instance pool (without holding a thread, and a
//! call that has one never waits for a slot), then run where blocking is
//! allowed. On a multi-thread runtime (the daemon's) that is in place, with
//! `block_in_place`: the worker first hands its other tasks to another thread,
//! and the call does not wait for a hop to the blocking pool, which measured
//! 60 µs here, more than a validator call. On a current-thread runtime,
//! where no thread could take the other tasks over, it is the blocking pool.

use std::sync::Arc;

use tokio::runtime::RuntimeFlavor;
use tokio::sync::Semaphore;

use super::{Plugin, PluginError, PluginHost};
use crate::core::wit::{Analysis, Incident, Prompt, Recommendation, ReviewContext, Verdict};

/// Concurrent calls when instances are allocated on demand: as many as a pool
/// would hold, so memory stays within what the pool would reserve.
const ON_DEMAND_CALLS: u32 = 16;

/// A [`PluginHost`] for async callers. Cloning shares the host and the permits.
#[derive(Clone)]
pub struct PluginRunner {
    host: Arc<PluginHost>,
    permits: Arc<Semaphore>,
}

impl PluginRunner {
    pub fn new(host: Arc<PluginHost>) -> PluginRunner {
        let permits = host.slots().unwrap_or(ON_DEMAND_CALLS);
        PluginRunner {
            host,
            permits: Arc::new(Semaphore::new(permits as usize)),
        }
    }

    /// The runner over the process's [`PluginHost::shared`] host.
    pub fn shared() -> Result<PluginRunner, PluginError> {
        static SHARED: std::sync::OnceLock<PluginRunner> = std::sync::OnceLock::new();
        if let Some(runner) = SHARED.get() {
            return Ok(runner.clone());
        }
        let runner = PluginRunner::new(PluginHost::shared()?);
        Ok(SHARED.get_or_init(|| runner).clone())
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// Runs `job` where blocking is allowed once a permit is free. A job may
    /// make several calls (one at a time, so one permit is enough).
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&PluginHost) -> R + Send + 'static,
    ) -> R {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if tokio::runtime::Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
            let _permit = permit;
            return tokio::task::block_in_place(|| job(&self.host));
        }
        let host = self.host.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job(&host)
        })
        .await;
        match outcome {
            Ok(result) => result,
            // A plugin's trap is an error value; a panic is a bug of the host,
            // and stays one.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    pub async fn build_prompt(
        &self,
        plugin: &Plugin,
        incident: &Incident,
    ) -> Result<Prompt, PluginError> {
        let (plugin, incident) = (plugin.clone(), incident.clone());
        self.run(move |host| host.build_prompt(&plugin, &incident))
            .await
    }

    pub async fn parse_response(
        &self,
        plugin: &Plugin,
        reply: &str,
        incident: &Incident,
    ) -> Result<Analysis, PluginError> {
        let (plugin, reply, incident) = (plugin.clone(), reply.to_string(), incident.clone());
        self.run(move |host| host.parse_response(&plugin, &reply, &incident))
            .await
    }

    pub async fn validate(
        &self,
        plugin: &Plugin,
        recommendation: &Recommendation,
        incident: &Incident,
        context: ReviewContext,
    ) -> Result<Verdict, PluginError> {
        let (plugin, recommendation, incident) =
            (plugin.clone(), recommendation.clone(), incident.clone());
        self.run(move |host| host.validate(&plugin, &recommendation, &incident, context))
            .await
    }
}
