//! Plugin calls from async code run off the runtime's workers: with every
//! instance slot held by a plugin that spins until its deadline, and more
//! calls waiting for one, the health endpoint still answers and the leader
//! lease is still renewed — on a runtime with two workers, as on two cores.

use crate::fake_api;
use crate::realistic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubeskippy::core::wit::{Incident, Recommendation, ReviewContext};
use kubeskippy::host::{Limits, PluginError, PluginHost, PluginKind, PluginRunner};
use kubeskippy::operator::daemon::health::Health;
use kubeskippy::operator::leader::{Fence, LeaseLock, Timing, elect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const HOSTILE: &str = env!("KUBESKIPPY_PLUGIN_HOSTILE_PLUGIN");
/// How long each plugin call holds its slot: far longer than the probes below
/// may take, so they can only answer if the calls do not hold the workers.
const CALL_DEADLINE: Duration = Duration::from_secs(3);

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

fn renewals(fake: &fake_api::FakeApi) -> usize {
    fake.requests()
        .iter()
        .filter(|request| request.path.contains("/leases/") && request.method == "PUT")
        .count()
}

#[test]
fn the_health_endpoint_and_the_lease_answer_while_every_plugin_slot_is_busy() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host = Arc::new(PluginHost::with_cache_dir(None).unwrap());
        let runner = PluginRunner::new(host.clone());
        let looping = host
            .load_file(
                HOSTILE.as_ref(),
                PluginKind::Validator,
                Limits {
                    deadline: CALL_DEADLINE,
                    ..Limits::default()
                },
                BTreeMap::from([("mode".to_string(), "loop".to_string())]),
            )
            .unwrap();
        let incident: Incident =
            kubeskippy::core::wit::from_guest(&kubeskippy_plugin_sdk::sample::realistic_incident());
        let recommendation: Recommendation = realistic::recommendation();

        let health = Health::new(Duration::from_secs(60));
        health.ready();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(health.clone().serve(listener));

        let fake = fake_api::FakeApi::new();
        let lock = LeaseLock::new(
            Api::<Lease>::namespaced(fake.client(), "kubeskippy"),
            "kubeskippy-leader",
            "a",
            Duration::from_secs(15),
        );
        let (leading, _) = watch::channel(false);
        let (_stop, shutdown) = watch::channel(false);
        let timing = Timing {
            retry_period: Duration::from_millis(100),
            renew_deadline: Duration::from_secs(10),
        };
        tokio::spawn(elect(lock, timing, leading, Fence::unfenced(), shutdown));

        // Twice as many calls as there are slots: half hold one, half wait.
        let slots = host.slots().unwrap_or(16) as usize;
        let calls: Vec<_> = (0..slots * 2)
            .map(|_| {
                let (runner, plugin) = (runner.clone(), looping.clone());
                let (recommendation, incident) = (recommendation.clone(), incident.clone());
                let context = ReviewContext {
                    rank: 0,
                    allowed_so_far: 0,
                };
                tokio::spawn(async move {
                    runner
                        .validate(&plugin, &recommendation, &incident, context)
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;

        let before = renewals(&fake);
        let answered = tokio::time::timeout(CALL_DEADLINE / 4, get(address, "/healthz")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let renewed = renewals(&fake) - before;
        let still_busy = calls.iter().filter(|call| !call.is_finished()).count();

        assert!(
            answered
                .as_ref()
                .is_ok_and(|reply| reply.starts_with("HTTP/1.1 200")),
            "/healthz while the plugins run: {answered:?}"
        );
        assert!(
            renewed >= 2,
            "{renewed} lease renewals while the plugins ran"
        );
        assert_eq!(
            still_busy,
            slots * 2,
            "every call was still running or waiting while the probes answered"
        );
        for call in calls {
            assert!(matches!(
                call.await.unwrap(),
                Err(PluginError::Timeout { .. })
            ));
        }
    });
}
