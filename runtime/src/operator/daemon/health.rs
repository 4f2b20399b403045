//! `/healthz` (or `/livez`) and `/readyz`. Liveness fails when the control
//! loop has stopped ticking; readiness says why the daemon is not ready
//! (caches not synced, plugins not loaded) until it is. `/plugins` lists
//! the plugins this replica serves, for `kubeskippy plugin list`;
//! `/metrics` is the Prometheus scrape.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A probe's request is a few hundred bytes; a client that has not sent its
/// headers by then is dropped, so idle connections cannot pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the probes report, shared between the control loop and the server.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<State>>,
    /// A loop that has not ticked for this long is stuck.
    stall_after: Duration,
}

struct State {
    not_ready: Option<String>,
    last_tick: Instant,
    plugins: Option<Arc<crate::host::catalog::Catalog>>,
}

impl Health {
    pub fn new(stall_after: Duration) -> Health {
        Health {
            inner: Arc::new(Mutex::new(State {
                not_ready: Some("starting".into()),
                last_tick: Instant::now(),
                plugins: None,
            })),
            stall_after,
        }
    }

    pub fn ready(&self) {
        self.state().not_ready = None;
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        self.state().not_ready = Some(reason.into());
    }

    /// Where `/plugins` reads what this replica serves.
    pub fn set_plugins(&self, catalog: Arc<crate::host::catalog::Catalog>) {
        self.state().plugins = Some(catalog);
    }

    /// The control loop calls this every iteration.
    pub fn tick(&self) {
        self.state().last_tick = Instant::now();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// (status code, body) for a request path.
    pub fn answer(&self, path: &str) -> (u16, String) {
        if path == "/plugins" {
            // Listed outside the lock the control loop ticks through.
            let catalog = self.state().plugins.clone();
            return match catalog {
                Some(catalog) => (
                    200,
                    serde_json::to_string_pretty(&catalog.list())
                        .expect("plugin statuses serialise"),
                ),
                None => (503, "no plugins loaded yet\n".into()),
            };
        }
        let state = self.state();
        match path {
            "/healthz" | "/livez" => {
                let idle = state.last_tick.elapsed();
                if idle > self.stall_after {
                    (
                        500,
                        format!(
                            "control loop stalled: no iteration for {}s\n",
                            idle.as_secs()
                        ),
                    )
                } else {
                    (200, "ok\n".into())
                }
            }
            "/readyz" => match &state.not_ready {
                None => (200, "ok\n".into()),
                Some(reason) => (503, format!("not ready: {reason}\n")),
            },
            _ => (404, "not found\n".into()),
        }
    }

    /// Serves the probes until the listener fails.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let app = Router::new()
            .route("/healthz", get(probe))
            .route("/livez", get(probe))
            .route("/readyz", get(probe))
            .route("/plugins", get(probe))
            .route("/metrics", get(scrape))
            .with_state(self);
        loop {
            let (stream, _) = listener.accept().await?;
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(error) = served {
                    tracing::debug!(%error, "health probe connection failed");
                }
            });
        }
    }
}

async fn scrape() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    use crate::telemetry::metrics::{CONTENT_TYPE, metrics};
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics().encode(),
    )
}

async fn probe(Shared(health): Shared<Health>, uri: axum::http::Uri) -> (StatusCode, String) {
    let (code, body) = health.answer(uri.path());
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
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

    #[tokio::test]
    async fn readiness_follows_the_daemon_and_liveness_the_loop() {
        let health = Health::new(Duration::from_secs(60));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(health.clone().serve(listener));

        let starting = get(address, "/readyz").await;
        assert!(starting.starts_with("HTTP/1.1 503"), "{starting}");
        assert!(starting.ends_with("not ready: starting\n"), "{starting}");
        health.not_ready("caches not synced: pods");
        assert!(
            get(address, "/readyz")
                .await
                .ends_with("caches not synced: pods\n")
        );
        health.ready();
        assert!(get(address, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(address, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(address, "/nothing").await.starts_with("HTTP/1.1 404"));

        crate::telemetry::metrics::metrics().gate_held("max_concurrent");
        let scrape = get(address, "/metrics").await;
        assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
        assert!(
            scrape.contains("content-type: text/plain; version=0.0.4"),
            "{scrape}"
        );
        assert!(
            scrape.contains("# TYPE kubeskippy_gate_holds_total counter"),
            "{scrape}"
        );
        assert!(
            scrape.contains("kubeskippy_gate_holds_total{gate=\"max_concurrent\"}"),
            "{scrape}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_loop_fails_liveness() {
        let health = Health::new(Duration::from_secs(60));
        assert_eq!(health.answer("/healthz").0, 200);
        tokio::time::advance(Duration::from_secs(61)).await;
        let (status, body) = health.answer("/healthz");
        assert_eq!(status, 500);
        assert!(body.contains("no iteration for 61s"), "{body}");
        health.tick();
        assert_eq!(health.answer("/healthz").0, 200);
    }
}
