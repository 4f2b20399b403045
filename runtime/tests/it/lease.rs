//! Leader election over a Lease in the in-memory API server, on tokio's paused
//! clock so lease expiry is exact.

use crate::fake_api;

use std::time::Duration;

use fake_api::FakeApi;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubeskippy::operator::leader::{LeaseLock, Role};

const LEASE: Duration = Duration::from_secs(15);

fn candidate(fake: &FakeApi, identity: &str) -> LeaseLock {
    let api: Api<Lease> = Api::namespaced(fake.client(), "kubeskippy-system");
    LeaseLock::new(api, "kubeskippy-leader", identity, LEASE)
}

fn follower_of(holder: &str) -> Role {
    Role::Follower {
        holder: Some(holder.to_string()),
    }
}

async fn lease(fake: &FakeApi) -> serde_json::Value {
    fake.get("/apis/coordination.k8s.io/v1/namespaces/kubeskippy-system/leases/kubeskippy-leader")
        .expect("the lease exists")
}

#[tokio::test(start_paused = true)]
async fn one_leader_and_failover_after_a_whole_lease_of_silence() {
    let fake = FakeApi::new();
    let mut a = candidate(&fake, "a");
    let mut b = candidate(&fake, "b");
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Role::Leader);
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), follower_of("a"));
    let created = lease(&fake).await;
    assert_eq!(created["spec"]["holderIdentity"], "a");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created["spec"]["leaseTransitions"], 0);

    // The leader renews: the follower's wait starts again.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Role::Leader);
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), follower_of("a"));
    // The leader goes silent: not yet a whole lease since the last renewal seen.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), follower_of("a"));
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Role::Leader);
    let taken = lease(&fake).await;
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    // The old leader comes back and finds it has lost the lease.
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), follower_of("b"));
}

#[tokio::test(start_paused = true)]
async fn of_two_candidates_taking_over_at_once_only_one_wins() {
    let fake = FakeApi::new();
    let mut gone = candidate(&fake, "gone");
    assert_eq!(gone.try_acquire_or_renew().await.unwrap(), Role::Leader);
    let mut b = candidate(&fake, "b");
    let mut c = candidate(&fake, "c");
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), follower_of("gone"));
    assert_eq!(c.try_acquire_or_renew().await.unwrap(), follower_of("gone"));
    tokio::time::advance(LEASE + Duration::from_secs(1)).await;
    let (b_role, c_role) = tokio::join!(b.try_acquire_or_renew(), c.try_acquire_or_renew());
    let roles = [b_role.unwrap(), c_role.unwrap()];
    assert_eq!(
        roles.iter().filter(|role| **role == Role::Leader).count(),
        1,
        "{roles:?}"
    );
    assert_eq!(lease(&fake).await["spec"]["leaseTransitions"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_over_at_once() {
    let fake = FakeApi::new();
    let mut a = candidate(&fake, "a");
    let mut b = candidate(&fake, "b");
    assert_eq!(a.try_acquire_or_renew().await.unwrap(), Role::Leader);
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), follower_of("a"));
    a.release().await.unwrap();
    assert_eq!(
        lease(&fake).await["spec"]["holderIdentity"],
        serde_json::Value::Null
    );
    // No lease duration has passed: only the release lets b in this soon.
    assert_eq!(b.try_acquire_or_renew().await.unwrap(), Role::Leader);
    // A release by a candidate that no longer holds the lease changes nothing.
    a.release().await.unwrap();
    assert_eq!(lease(&fake).await["spec"]["holderIdentity"], "b");
}

/// A client whose requests go to `fake` until `hang` is set, and then never
/// get an answer: a connection that stalled.
fn stalling_client(
    fake: &FakeApi,
    hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> kube::Client {
    let fake = fake.clone();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let hang = hang.clone();
        let fake = fake.clone();
        async move {
            if hang.load(std::sync::atomic::Ordering::SeqCst) {
                futures::future::pending::<()>().await;
            }
            Ok::<_, std::convert::Infallible>(fake.handle(request).await)
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_stall_stops_writing_before_its_lease_runs_out() {
    use kubeskippy::operator::leader::Fence;
    use kubeskippy::operator::leader::{Timing, elect};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let fake = FakeApi::new();
    let hang = Arc::new(AtomicBool::new(false));
    let api: Api<Lease> =
        Api::namespaced(stalling_client(&fake, hang.clone()), "kubeskippy-system");
    let lock = LeaseLock::new(api, "kubeskippy-leader", "a", LEASE);
    let timing = Timing {
        retry_period: LEASE / 3,
        renew_deadline: LEASE * 2 / 3,
    };
    let (leading_tx, leading) = tokio::sync::watch::channel(false);
    let (_shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let fence = Fence::closed();
    let election = tokio::spawn(elect(lock, timing, leading_tx, fence.clone(), shutdown));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(*leading.borrow() && fence.holds(), "acquired");

    // Every round from now on hangs.
    hang.store(true, Ordering::SeqCst);
    let stalled_at = tokio::time::Instant::now();
    while fence.holds() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held_for = stalled_at.elapsed();
    assert!(
        held_for <= timing.renew_deadline,
        "the fence closed {held_for:?} after the stall, within the renew deadline"
    );
    // The round that hung was given up on, and leadership with it.
    tokio::time::sleep(timing.renew_deadline + timing.retry_period).await;
    assert!(!*leading.borrow());
    election.abort();
}
