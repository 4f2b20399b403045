//! An HTTP server on loopback (axum) that records requests and answers with
//! canned responses, standing in for a model server.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header lines as sent, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub enum Reply {
    Json {
        status: u16,
        body: String,
    },
    /// A JSON answer with extra headers (Retry-After, say).
    WithHeaders {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Wait this long before answering.
    Slow {
        delay: Duration,
        body: String,
    },
    /// Send headers promising more body than is sent, then close.
    Truncated {
        body: String,
    },
}

pub struct Stub {
    pub address: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Stub {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

type Answer = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Starts a server answering every request through `reply`.
pub async fn serve(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Stub {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let answer: Answer = Arc::new(reply);
    let app = axum::Router::new()
        .fallback(respond)
        .with_state((requests.clone(), answer));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Stub { address, requests }
}

async fn respond(
    State((requests, answer)): State<(Arc<Mutex<Vec<Recorded>>>, Answer)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    value.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    requests.lock().unwrap().push(recorded.clone());
    let (status, body, headers) = match answer(&recorded) {
        Reply::Json { status, body } => (status, Body::from(body), Vec::new()),
        Reply::WithHeaders {
            status,
            body,
            headers,
        } => (status, Body::from(body), headers),
        Reply::Slow { delay, body } => {
            tokio::time::sleep(delay).await;
            (200, Body::from(body), Vec::new())
        }
        // The body breaks off: the connection ends before the response does.
        Reply::Truncated { body } => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from(body)),
                Err(std::io::Error::other("the stub cuts the reply short")),
            ];
            (
                200,
                Body::from_stream(futures::stream::iter(chunks)),
                Vec::new(),
            )
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    let response_headers = response.headers_mut();
    response_headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        response_headers.insert(
            HeaderName::try_from(name).unwrap(),
            HeaderValue::try_from(value).unwrap(),
        );
    }
    response
}

/// An Ollama server with one model, `llama2`, that answers every chat with
/// `content`.
pub fn ollama_answering(content: String) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |request| {
        match request.path.as_str() {
        "/api/tags" => Reply::Json {
            status: 200,
            body: serde_json::json!({"models": [{"name": "llama2:latest"}]}).to_string(),
        },
        "/api/show" => Reply::Json {
            status: 200,
            body: serde_json::json!({"model_info": {"llama.context_length": 8192}}).to_string(),
        },
        _ => Reply::Json {
            status: 200,
            body: serde_json::json!({"model": "llama2", "message": {"role": "assistant", "content": content}, "done": true}).to_string(),
        },
    }
    }
}

pub fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/snapshots")
        .join(name)
}

/// The real model servers share the machine's two cores with the tests and
/// answer one request at a time: one real-model test at a time keeps each
/// inside its timeout.
pub static REAL_MODEL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
