//! Leader election through a `coordination.k8s.io/v1` Lease, so two replicas
//! of the daemon can run with one active. The algorithm is client-go's: the
//! holder renews the lease; a candidate takes it over only after it has seen
//! the same holder and renew time, unchanged, for a whole lease duration on its
//! own clock (so clock skew between nodes does not matter); every write carries
//! the resourceVersion it read, so of two candidates racing only one wins.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { holder: Option<String> },
}

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The holder and renew time last seen, and when this candidate first saw
    /// them in that state.
    observed: Option<(Option<String>, Option<String>, Instant)>,
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: None,
        }
    }

    /// One round: acquire, renew or observe. Call it every retry period (a
    /// fraction of the lease duration); stop acting as leader when a renewal
    /// has not succeeded within the renew deadline.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Role, kube::Error> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return self.create(now).await;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone();
        if holder.as_deref() == Some(self.identity.as_str()) {
            spec.renew_time = Some(now);
            return self.replace(&lease, holder).await;
        }
        let renew = spec.renew_time.as_ref().map(|time| time.0.to_string());
        let first_seen = match &self.observed {
            Some((seen_holder, seen_renew, since))
                if *seen_holder == holder && *seen_renew == renew =>
            {
                *since
            }
            _ => {
                let since = Instant::now();
                self.observed = Some((holder.clone(), renew, since));
                since
            }
        };
        let vacant = holder.as_deref().is_none_or(str::is_empty);
        if !vacant && first_seen.elapsed() < self.duration {
            return Ok(Role::Follower { holder });
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        self.replace(&lease, holder).await
    }

    /// Gives the lease up on shutdown so a standby takes over at its next
    /// round instead of waiting out a whole lease duration. Only a lease this
    /// candidate still holds is touched.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        self.replace(&lease, None).await.map(|_| ())
    }

    async fn create(&mut self, now: MicroTime) -> Result<Role, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration.as_secs() as i32),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Role::Leader),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(Role::Follower { holder: None })
            }
            Err(error) => Err(error),
        }
    }

    /// Writes with the resourceVersion that was read; a conflict means another
    /// candidate wrote first.
    async fn replace(
        &mut self,
        lease: &Lease,
        previous_holder: Option<String>,
    ) -> Result<Role, kube::Error> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(_) => {
                self.observed = None;
                Ok(Role::Leader)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Role::Follower {
                holder: previous_holder,
            }),
            Err(error) => Err(error),
        }
    }
}

/// Whether this replica may still write, as its leadership allows: writes
/// are fenced to a deadline shorter than the lease, so a replica that lost
/// the lease (or can no longer renew it) stops writing before another can
/// take it over. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Fence {
    until: std::sync::Arc<std::sync::RwLock<Holding>>,
}

#[derive(Debug, Clone, Copy)]
enum Holding {
    /// No leader election: the only replica always writes.
    Always,
    Until(Instant),
    Never,
}

impl Fence {
    /// For a daemon running without leader election.
    pub fn unfenced() -> Fence {
        Fence::with(Holding::Always)
    }

    /// Holding nothing until [`extend`](Fence::extend) is called.
    pub fn closed() -> Fence {
        Fence::with(Holding::Never)
    }

    fn with(holding: Holding) -> Fence {
        Fence {
            until: std::sync::Arc::new(std::sync::RwLock::new(holding)),
        }
    }

    /// Writes may go on until `deadline`.
    pub fn extend(&self, deadline: Instant) {
        *self
            .until
            .write()
            .expect("the fence lock is never poisoned") = Holding::Until(deadline);
    }

    pub fn revoke(&self) {
        *self
            .until
            .write()
            .expect("the fence lock is never poisoned") = Holding::Never;
    }

    /// How much longer writes may go on as the fence stands now: `None`
    /// without leader election, zero once it has closed.
    pub fn remaining(&self) -> Option<Duration> {
        match *self.until.read().expect("the fence lock is never poisoned") {
            Holding::Always => None,
            Holding::Until(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            Holding::Never => Some(Duration::ZERO),
        }
    }

    /// Runs `write` while the fence holds and gives it up (`None`) when the
    /// fence closes first: kube's client retries a throttled or unavailable
    /// server for minutes, and a retry sent after another replica took over
    /// could land a change nobody records. A request already sent when the
    /// fence closes is the API server's to finish.
    pub async fn bound<T>(&self, write: impl Future<Output = T>) -> Option<T> {
        let mut write = std::pin::pin!(write);
        loop {
            let Some(left) = self.remaining() else {
                return Some(write.await);
            };
            if left.is_zero() {
                return None;
            }
            // Renewed meanwhile, the fence holds longer: look again.
            if let Ok(done) = tokio::time::timeout(left, &mut write).await {
                return Some(done);
            }
        }
    }

    /// Whether a write may be made now.
    pub fn holds(&self) -> bool {
        match *self.until.read().expect("the fence lock is never poisoned") {
            Holding::Always => true,
            Holding::Until(deadline) => Instant::now() < deadline,
            Holding::Never => false,
        }
    }
}
