//! Runs the Lease lock round after round and publishes whether this replica
//! may act. Leadership is dropped as soon as renewal has failed for longer
//! than the renew deadline, before another candidate can take the lease over,
//! and the [`Fence`] every write checks closes at that deadline on its own,
//! even while a round hangs.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::operator::leader::{Fence, LeaseLock, Role};

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often a round runs: a fraction of the lease duration.
    pub retry_period: Duration,
    /// Stop leading when the last successful renewal is older than this; it
    /// must be shorter than the lease duration.
    pub renew_deadline: Duration,
}

/// Until `shutdown` turns true; then releases the lease if this replica holds it.
pub async fn elect(
    mut lock: LeaseLock,
    timing: Timing,
    leading: watch::Sender<bool>,
    fence: Fence,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_renewal: Option<Instant> = None;
    loop {
        let started = Instant::now();
        // A round that hangs (a stalled connection) must not outlive the
        // time the lease leaves this replica.
        let round = tokio::time::timeout(timing.renew_deadline, lock.try_acquire_or_renew()).await;
        match round {
            Ok(Ok(Role::Leader)) => {
                if !*leading.borrow() {
                    tracing::info!("acquired the leader lease; acting");
                }
                // Measured from the round's start: the lease was renewed no
                // earlier than that.
                last_renewal = Some(started);
                fence.extend(started + timing.renew_deadline);
                leading.send_replace(true);
            }
            Ok(Ok(Role::Follower { holder })) => {
                if *leading.borrow() {
                    tracing::warn!(?holder, "lost the leader lease; standing by");
                }
                last_renewal = None;
                fence.revoke();
                leading.send_replace(false);
            }
            failed => {
                match failed {
                    Ok(Err(error)) => tracing::warn!(%error, "leader lease round failed"),
                    _ => tracing::warn!(
                        "leader lease round timed out after {:?}",
                        timing.renew_deadline
                    ),
                }
                let expired = last_renewal.is_none_or(|at| at.elapsed() > timing.renew_deadline);
                if expired && *leading.borrow() {
                    tracing::warn!("leader lease not renewed within the deadline; standing by");
                    fence.revoke();
                    leading.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.retry_period) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if *leading.borrow() {
        fence.revoke();
        leading.send_replace(false);
        if let Err(error) = lock.release().await {
            tracing::warn!(%error, "could not release the leader lease; a standby takes over when it expires");
        }
    }
}
