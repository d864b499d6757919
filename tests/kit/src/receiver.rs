//! A loopback HTTP receiver that records every request (method, path,
//! headers, body) and answers as the test tells it: the notifier's
//! webhooks, chat endpoints and forge commit-status APIs in the tests.
//!
//! It serves on its own thread with its own runtime, so a test that kills
//! and restarts processes, or blocks, never starves it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, …
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// How long to wait before answering.
    pub delay: Duration,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<Answer>,
}

/// A running receiver, stopped when dropped.
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Receiver {
    /// Starts a receiver answering 200 to everything (see [`Receiver::script`]).
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = inner.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let app = Router::new().fallback(record).with_state(shared);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Self {
            addr,
            inner,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:<port>` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The answers to the next requests, in order; after them, 200 at once.
    pub fn script(&self, answers: &[Answer]) {
        self.inner.lock().unwrap().script = answers.iter().copied().collect();
    }

    /// Every request so far (a request still waiting for its answer is
    /// already here).
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The requests so far whose path starts with `prefix`.
    pub fn received_at(&self, prefix: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits until `count` requests whose path starts with `prefix` came,
    /// and returns them; panics after `timeout`.
    pub fn wait_for(&self, prefix: &str, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received_at(prefix);
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} requests to {prefix} within {timeout:?}: {:?}",
                got.len(),
                self.received()
                    .iter()
                    .map(|r| r.path.clone())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let answer = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            method: method.to_string(),
            path: uri.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            at: Instant::now(),
        });
        inner.script.pop_front()
    };
    let answer = answer.unwrap_or(Answer {
        status: 200,
        delay: Duration::ZERO,
    });
    tokio::time::sleep(answer.delay).await;
    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK)
}
